// bench/scale: lorakit on checkpoints of the published shapes (random bf16 weights, sharded
// as the originals; made by bench/scale/make-checkpoint.ts), run exactly as a user runs it:
// each row is a fresh `lorakit` process, so its peak RSS is the whole command's (loading
// included). Per shape and method it reports peak RSS, the planner's estimate, s/step,
// tokens/s and MFU (model FLOPs of a step — forward + input gradients of the frozen base,
// the LoRA products, attention; recomputation not counted — over the FMA peak measured in
// this run), and the PyTorch 1.13 peer (bench/py/train_torch.py, same shape, batch, rank and
// threads) where it fits.
//
//   npm run build && node dist/bench/scale/run.js [--shapes qwen2.5-0.5b,llama-2-7b]
//     [--rows ROWIDS] [--dir /tmp/scale] [--steps 3] [--threads 2] [--no-torch] [--json]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { mobyDickText } from "../../src/data/corpora.js";
import { loadAddon } from "../../src/kernels/native/loader.js";
import { parseLlamaConfig } from "../../src/models/llama/config.js";
import { linearDims } from "../../src/train/memory-plan.js";
import { torchPeerEnv } from "../torch-peer.js";
import { makeScaleCheckpoint } from "./make-checkpoint.js";
import { scaleShape } from "./shapes.js";

const argv = process.argv.slice(2);
const flag = (n: string) => argv.includes(`--${n}`);
const opt = (n: string, d: string) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? argv[i + 1] : d;
};
const threads = Number(opt("threads", "2"));
const steps = Number(opt("steps", "3"));
const root = opt("dir", "/tmp/scale");
const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, "..", "..", "src", "cli", "main.js");

interface Row {
  id: string;
  shape: string;
  label: string;
  /** `lorakit train` flags besides model/data/out/steps/threads. */
  flags: string[];
  /** Run the PyTorch peer at this row's shape. */
  torch?: boolean;
  steps?: number;
}

const ALL_LINEAR = ["--target-modules", "all-linear", "--r", "16", "--lora-alpha", "32"];
const QV = ["--target-modules", "q_proj,v_proj", "--r", "16", "--lora-alpha", "32"];
const ROWS: Row[] = [
  {
    id: "smol-lora",
    shape: "smollm2-135m",
    label: "LoRA 2×256",
    flags: [...ALL_LINEAR, "--batch-size", "2", "--seq-len", "256"],
    torch: true,
  },
  {
    id: "smol-lora-ck",
    shape: "smollm2-135m",
    label: "LoRA 2×256, checkpointing",
    flags: [...ALL_LINEAR, "--batch-size", "2", "--seq-len", "256", "--gradient-checkpointing", "on"],
  },
  {
    id: "smol-qlora",
    shape: "smollm2-135m",
    label: "QLoRA 2×256",
    flags: [...ALL_LINEAR, "--batch-size", "2", "--seq-len", "256", "--quantize", "nf4"],
  },
  {
    id: "qwen-lora",
    shape: "qwen2.5-0.5b",
    label: "LoRA 2×256",
    flags: [...ALL_LINEAR, "--batch-size", "2", "--seq-len", "256"],
    torch: true,
  },
  {
    id: "qwen-lora-ck",
    shape: "qwen2.5-0.5b",
    label: "LoRA 2×256, checkpointing",
    flags: [...ALL_LINEAR, "--batch-size", "2", "--seq-len", "256", "--gradient-checkpointing", "on"],
  },
  {
    id: "qwen-qlora",
    shape: "qwen2.5-0.5b",
    label: "QLoRA 2×256",
    flags: [...ALL_LINEAR, "--batch-size", "2", "--seq-len", "256", "--quantize", "nf4"],
  },
  {
    id: "qwen-4x1024",
    shape: "qwen2.5-0.5b",
    label: "LoRA 4×1024, --max-memory 4GiB",
    flags: [...ALL_LINEAR, "--batch-size", "4", "--seq-len", "1024", "--max-memory", "4GiB"],
    steps: 2,
  },
  {
    id: "qwen-1x4096",
    shape: "qwen2.5-0.5b",
    label: "LoRA 1×4096, --max-memory 3GiB (1 step)",
    flags: [...ALL_LINEAR, "--batch-size", "1", "--seq-len", "4096", "--max-memory", "3GiB"],
    steps: 1,
  },
  {
    id: "llama1b-lora",
    shape: "llama-3.2-1b",
    label: "LoRA 2×256",
    flags: [...ALL_LINEAR, "--batch-size", "2", "--seq-len", "256"],
    torch: true,
    steps: 2,
  },
  {
    id: "llama1b-qlora",
    shape: "llama-3.2-1b",
    label: "QLoRA 2×256",
    flags: [...ALL_LINEAR, "--batch-size", "2", "--seq-len", "256", "--quantize", "nf4"],
    steps: 2,
  },
  {
    id: "llama7b-qlora",
    shape: "llama-2-7b",
    label: "QLoRA q,v 1×512, --max-memory 6GiB",
    flags: [...QV, "--batch-size", "1", "--seq-len", "512", "--quantize", "nf4", "--max-memory", "6GiB"],
    steps: 1,
  },
];

/** Model FLOPs of one LoRA training step (frozen base: forward + input gradient). */
function stepFlops(
  cfg: ReturnType<typeof parseLlamaConfig>,
  r: number,
  targets: string[],
  B: number,
  T: number,
): number {
  const C = cfg.hiddenSize;
  const dims = linearDims(cfg);
  let base = 0;
  let lora = 0;
  for (const [n, [i, o]] of Object.entries(dims)) {
    base += i * o;
    if (targets.includes(n)) lora += r * (i + o);
  }
  const L = cfg.numHiddenLayers;
  const N = B * T;
  const linear = N * (4 * (L * base + C * cfg.vocabSize) + 6 * L * lora);
  const attn = L * B * cfg.numAttentionHeads * T * T * cfg.headDim * 2 * 2 * 3; // causal, fwd + bwd
  return linear + attn / 2;
}

function torchPeer(cfg: ReturnType<typeof parseLlamaConfig>, B: number, T: number): number | null {
  let script = join(here, "..", "py", "train_torch.py");
  if (!existsSync(script)) script = join(here, "..", "..", "..", "bench", "py", "train_torch.py");
  const env = torchPeerEnv(threads);
  const shape = {
    hidden: cfg.hiddenSize,
    layers: cfg.numHiddenLayers,
    intermediate: cfg.intermediateSize,
    vocab: cfg.vocabSize,
    heads: cfg.numAttentionHeads,
    kv_heads: cfg.numKeyValueHeads,
    batch: B,
    seq: T,
    r: 16,
    alpha: 32,
    threads,
    steps,
    warmup: 1,
  };
  const r = spawnSync("/usr/bin/python3", [script, JSON.stringify(shape)], { env, encoding: "utf8" });
  if (r.status !== 0) return null;
  return JSON.parse(r.stdout.trim().split("\n").pop()!).tokens_per_second;
}

const wanted = opt("shapes", "");
const rowIds = opt("rows", "");
const rows = ROWS.filter(
  (r) => (!wanted || wanted.split(",").includes(r.shape)) && (!rowIds || rowIds.split(",").includes(r.id)),
);
mkdirSync(root, { recursive: true });
const dataFile = join(root, "moby-dick.txt");
if (!existsSync(dataFile)) writeFileSync(dataFile, mobyDickText());
const addon = loadAddon();
const peak = "addon" in addon ? addon.addon.fmaPeak(threads, 300) : Number.NaN;
const results: Record<string, unknown>[] = [];
for (const row of rows) {
  const dir = join(root, row.shape);
  makeScaleCheckpoint({ shape: row.shape, out: dir });
  const cfg = parseLlamaConfig(scaleShape(row.shape).config);
  const n = row.steps ?? steps;
  const outDir = join(root, "runs", row.id);
  const args = [
    main,
    "train",
    "--model",
    dir,
    "--data",
    dataFile,
    "--out",
    outDir,
    "--steps",
    String(n),
    "--threads",
    String(threads),
    "--valid-fraction",
    "0",
    "--lr",
    "1e-4",
    "--json",
    ...row.flags,
  ];
  const t0 = performance.now();
  const p = spawnSync(process.execPath, args, { encoding: "utf8", maxBuffer: 1 << 26 });
  const wall = (performance.now() - t0) / 1000;
  if (p.status !== 0) {
    const err = (p.stderr || "").trim().split("\n").pop();
    results.push({ id: row.id, shape: row.shape, label: row.label, error: err ?? `exit ${p.status}` });
    console.error(`${row.id}: failed: ${err}`);
    continue;
  }
  const s = JSON.parse(p.stdout.trim().split("\n").pop()!);
  const B = Number(row.flags[row.flags.indexOf("--batch-size") + 1]);
  const T = Number(row.flags[row.flags.indexOf("--seq-len") + 1]);
  const targets = row.flags.includes("all-linear")
    ? ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    : ["q_proj", "v_proj"];
  const secondsPerStep = (B * T) / s.tokens_per_second;
  const torchTps = row.torch && !flag("no-torch") ? torchPeer(cfg, B, T) : null;
  const res = {
    id: row.id,
    shape: row.shape,
    label: row.label,
    peak_rss: s.memory.peak_rss,
    estimate: s.memory.estimate,
    estimate_error: s.memory.estimate / s.memory.peak_rss - 1,
    checkpointed_layers: s.memory.checkpointed_layers,
    seconds_per_step: secondsPerStep,
    tokens_per_second: s.tokens_per_second,
    mfu: stepFlops(cfg, 16, targets, B, T) / secondsPerStep / 1e9 / peak,
    torch_tokens_per_second: torchTps,
    vs_torch: torchTps ? s.tokens_per_second / torchTps : null,
    wall_seconds: wall,
  };
  results.push(res);
  console.error(`${row.id}: ${JSON.stringify(res)}`);
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
if (flag("json")) for (const r of results) console.log(JSON.stringify({ ...r, threads, peak_gflops: peak }));
else {
  console.log(
    `bench/scale: ${threads} thread(s), FMA peak ${peak.toFixed(0)} GFLOP/s, ${steps} steps unless noted`,
  );
  console.log(
    "| shape | run | peak RSS | planner | error | ckpt layers | s/step | tokens/s | MFU | PyTorch 1.13 tokens/s | vs PyTorch |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  // biome-ignore lint/suspicious/noExplicitAny: rows are either a result or an error
  for (const r of results as Record<string, any>[]) {
    if (r.error) {
      console.log(`| ${r.shape} | ${r.label} | failed: ${r.error} |||||||||`);
      continue;
    }
    console.log(
      `| ${r.shape} | ${r.label} | ${gib(r.peak_rss)} | ${gib(r.estimate)} | ${(100 * r.estimate_error).toFixed(0)} % | ${r.checkpointed_layers} | ${r.seconds_per_step.toFixed(2)} | ${r.tokens_per_second.toFixed(0)} | ${(100 * r.mfu).toFixed(0)} % | ${r.torch_tokens_per_second ? Number(r.torch_tokens_per_second).toFixed(0) : "—"} | ${r.vs_torch ? `${Number(r.vs_torch).toFixed(2)}×` : "—"} |`,
    );
  }
}
