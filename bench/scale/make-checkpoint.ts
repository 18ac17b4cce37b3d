// A random bf16 checkpoint of a published shape (bench/scale/shapes.ts), in Hugging Face
// layout, for benchmarks at real sizes without downloading weights:
//
//   npm run build && node dist/bench/scale/make-checkpoint.js --shape qwen2.5-0.5b --out DIR \
//     [--seed N] [--layers N] [--json]
//
// DIR gets config.json (the published one; --layers overrides num_hidden_layers, for tests),
// the weights (model.safetensors, or shards + index as the original), and the demo base
// model's tokenizer.json / tokenizer_config.json (a smaller vocabulary than the model's, which
// is fine: models pad their vocabulary). Weights are written through
// streamShardedSafetensors, one tensor at a time into one reused buffer, so the process holds
// about one tensor: the largest (an embedding, 0.26 GB for Llama-2-7B, 0.53 GB for
// Llama-3.2-1B) plus node itself, whatever the checkpoint's size.
//
// Each tensor draws from its own Rng seeded by (seed, tensor name), so a tensor's values do
// not depend on the write order, the shard layout or the number of layers.
//
// DIR keeps a marker (.lorakit-scale.json: shape, seed, layers, and every file's size),
// written last; a run finding a marker that matches, with every file at its size, does
// nothing, so benchmarks can call it to reuse /tmp copies.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { demoBaseDir } from "../../src/cli/demo/paths.js";
import { Rng } from "../../src/core/rng.js";
import { streamShardedSafetensors } from "../../src/io/node/index.js";
import { parseLlamaConfig } from "../../src/models/llama/config.js";
import { fillNormalBf16 } from "./normal-bf16.js";
import { type ScaleTensorSpec, scaleShape, scaleTensorSpecs } from "./shapes.js";

/** The marker's file name and the version of what this script writes (bump on changes). */
export const MARKER_FILE = ".lorakit-scale.json";
const FORMAT = 1;
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json"];
const BF16_ONE = 0x3f80;

export interface MakeCheckpointOptions {
  /** A shape id of SCALE_SHAPES ("smollm2-135m", "qwen2.5-0.5b", "llama-3.2-1b", "llama-2-7b"). */
  shape: string;
  /** The folder to write (created if missing). */
  out: string;
  /** Default 0. */
  seed?: number;
  /** Overrides num_hidden_layers (tests write a 2-layer model of a real width). */
  layers?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface MakeCheckpointResult {
  /** True when `out` already held this checkpoint and nothing was written. */
  readonly skipped: boolean;
  readonly dir: string;
  /** The safetensors files (and index) of the checkpoint. */
  readonly weightFiles: readonly string[];
  readonly tensors: number;
  /** Parameters (elements) written. */
  readonly params: number;
  /** Bytes of tensor data. */
  readonly bytes: number;
  /** Wall time of the whole run. */
  readonly seconds: number;
  /** Wall time spent generating values (the rest is writing and fsync). */
  readonly generateSeconds: number;
  /**
   * CPU time (user + system) of this process spent generating: the throughput measure that
   * other processes on a shared machine do not skew.
   */
  readonly generateCpuSeconds: number;
}

interface Marker {
  format: number;
  shape: string;
  seed: number;
  layers: number;
  files: Record<string, number>;
}

/** FNV-1a of the name mixed with the seed: each tensor's own stream. */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return (h ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function readMarker(dir: string): Marker | null {
  try {
    return JSON.parse(readFileSync(join(dir, MARKER_FILE), "utf8")) as Marker;
  } catch {
    return null;
  }
}

function isComplete(dir: string, want: Omit<Marker, "files">): boolean {
  const m = readMarker(dir);
  if (
    m === null ||
    m.format !== want.format ||
    m.shape !== want.shape ||
    m.seed !== want.seed ||
    m.layers !== want.layers ||
    typeof m.files !== "object" ||
    m.files === null
  )
    return false;
  return Object.entries(m.files).every(([f, size]) => {
    const p = join(dir, f);
    return existsSync(p) && statSync(p).size === size;
  });
}

/**
 * Writes (or finds) a random bf16 checkpoint of a published shape. See the file header.
 *
 * @example
 * const r = makeScaleCheckpoint({ shape: "llama-2-7b", out: "/tmp/scale/llama-2-7b" });
 * if (!r.skipped) console.log(`${r.bytes / r.seconds / 1e6} MB/s`);
 */
export function makeScaleCheckpoint(opts: MakeCheckpointOptions): MakeCheckpointResult {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1)
    throw new Error("make-checkpoint writes the host's Uint16Array bytes and needs a little-endian host");
  const t0 = performance.now();
  const log = opts.log ?? (() => {});
  const shape = scaleShape(opts.shape);
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${seed}`);
  const config: Record<string, unknown> = { ...shape.config };
  if (opts.layers !== undefined) {
    if (!Number.isInteger(opts.layers) || opts.layers <= 0)
      throw new Error(`--layers must be a positive integer, got ${opts.layers}`);
    config.num_hidden_layers = opts.layers;
  }
  const cfg = parseLlamaConfig(config);
  const specs = scaleTensorSpecs(cfg);
  const params = specs.reduce((a, s) => a + numel(s.shape), 0);
  const want = { format: FORMAT, shape: shape.id, seed, layers: cfg.numHiddenLayers };
  const dir = opts.out;
  let generateMs = 0;
  let generateCpuUs = 0;
  const summary = (skipped: boolean, weightFiles: string[]): MakeCheckpointResult => ({
    skipped,
    dir,
    weightFiles,
    tensors: specs.length,
    params,
    bytes: params * 2,
    seconds: (performance.now() - t0) / 1000,
    generateSeconds: generateMs / 1000,
    generateCpuSeconds: generateCpuUs / 1e6,
  });
  if (isComplete(dir, want)) {
    const files = Object.keys(readMarker(dir)!.files).filter((f) => f.includes(".safetensors"));
    log(`${dir} already holds ${shape.id} (seed ${seed}, ${cfg.numHiddenLayers} layers): nothing to do`);
    return summary(true, files);
  }

  mkdirSync(dir, { recursive: true });
  // Gone before anything changes, so an interrupted run is never taken for a complete one.
  rmSync(join(dir, MARKER_FILE), { force: true });
  writeFileSync(join(dir, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
  for (const f of TOKENIZER_FILES) copyFileSync(join(demoBaseDir(), f), join(dir, f));

  const init = new Map<string, ScaleTensorSpec>(specs.map((s) => [s.name, s]));
  const std = typeof config.initializer_range === "number" ? config.initializer_range : 0.02;
  // One buffer for every tensor: streamShardedSafetensors writes each before asking for the next.
  const scratch = new Uint16Array(Math.max(...specs.map((s) => numel(s.shape))));
  let doneBytes = 0;
  let lastLog = performance.now();
  log(
    `${shape.id}: ${specs.length} tensors, ${(params / 1e9).toFixed(3)}e9 params, ${((params * 2) / 1e9).toFixed(2)} GB bf16 → ${dir}`,
  );
  const res = streamShardedSafetensors(
    dir,
    specs,
    (name) => {
      const s = init.get(name)!;
      const n = numel(s.shape);
      const view = scratch.subarray(0, n);
      const g = performance.now();
      const c = process.cpuUsage();
      if (s.init === "ones") view.fill(BF16_ONE);
      else fillNormalBf16(new Rng(tensorSeed(seed, name)), view, std);
      const cpu = process.cpuUsage(c);
      generateCpuUs += cpu.user + cpu.system;
      const now = performance.now();
      generateMs += now - g;
      doneBytes += 2 * n;
      if (now - lastLog > 10_000) {
        lastLog = now;
        log(`  ${(doneBytes / 1e9).toFixed(2)} / ${((params * 2) / 1e9).toFixed(2)} GB`);
      }
      return new Uint8Array(scratch.buffer, 0, 2 * n);
    },
    { maxShardSize: shape.maxShardSize },
  );
  const names = [
    "config.json",
    ...TOKENIZER_FILES,
    ...res.files.map((f) => f.slice(dir.length + 1)),
    ...(res.index ? ["model.safetensors.index.json"] : []),
  ];
  const marker: Marker = {
    ...want,
    files: Object.fromEntries(names.map((f) => [f, statSync(join(dir, f)).size])),
  };
  writeFileSync(join(dir, MARKER_FILE), `${JSON.stringify(marker, null, 2)}\n`);
  return summary(
    false,
    names.filter((f) => f.includes(".safetensors")),
  );
}

function main(argv: string[]): void {
  const usage =
    "usage: node dist/bench/scale/make-checkpoint.js --shape ID --out DIR [--seed N] [--layers N] [--json]\n" +
    "shapes: smollm2-135m, qwen2.5-0.5b, llama-3.2-1b, llama-2-7b";
  const value = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    if (i < 0) return undefined;
    if (i + 1 >= argv.length) throw new Error(`${flag} needs a value\n${usage}`);
    return argv[i + 1];
  };
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(usage);
    return;
  }
  const shape = value("--shape");
  const out = value("--out");
  if (!shape || !out) throw new Error(usage);
  const seed = value("--seed");
  const layers = value("--layers");
  const json = argv.includes("--json");
  const r = makeScaleCheckpoint({
    shape,
    out,
    seed: seed === undefined ? undefined : Number(seed),
    layers: layers === undefined ? undefined : Number(layers),
    log: (line) => console.error(line),
  });
  if (json) {
    console.log(JSON.stringify(r));
    return;
  }
  if (r.skipped) console.log(`${r.dir}: complete already (${r.weightFiles.join(", ")})`);
  else
    console.log(
      `${r.dir}: ${r.tensors} tensors, ${(r.bytes / 1e9).toFixed(2)} GB in ${r.seconds.toFixed(1)} s ` +
        `(generation ${r.generateSeconds.toFixed(1)} s wall, ${r.generateCpuSeconds.toFixed(1)} s CPU = ` +
        `${(r.params / r.generateCpuSeconds / 1e6).toFixed(0)} M values per CPU second; ` +
        `files ${r.weightFiles.join(", ")})`,
    );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exit(1);
  }
}
