// Decode kernels on prepacked weights against the row-major path (micro benchmark): every
// linear weight of a model shape (the 125M shape or a published one, random values, f32 and
// bf16) multiplied by 1, 4 and 8 rows in turn — one decode step's weight traffic — through
//   row-major  Backend.gemm on W as stored (gemv_avx2.cc: 8 rows of W transposed in registers)
//   packed     gemmPacked on the panels (prepack_avx2.cc)
// interleaved round by round, next to the machine's streaming read bandwidth probed before
// and after (readBandwidth). GB/s = weight bytes / median time of a step.
//
//   npm run build && node dist/bench/prepack.js [--shape 125m|qwen2.5-0.5b|smollm2-135m] [--threads N] [--rounds 7]
//     [--cpu-time]  (with --threads 1: time the process's CPU time instead of the wall clock, so
//                    a loaded host's run queue does not count; memory contention still does)
//     [--against FILE]  (another build's lorakit_native.node, e.g. a copy of main's: its packed
//                    kernels run in the same interleaved rounds, a third column and its ratio)
//     [--resident]  (one 128×512 weight multiplied 85 times per step instead of the shape's
//                    weights: it stays in L2, so GB/s is what the kernel itself can process,
//                    the ceiling it would reach if memory were never the bound)
//     [--prefill 128]  (the decoder layers' products with that many rows, a prompt's prefill
//                    products: % of the FMA peak measured in the same run instead of GB/s)
import { createRequire } from "node:module";
import { cpus } from "node:os";
import { resolve } from "node:path";
import { alignedArrays } from "../src/kernels/native/aligned.js";
import { loadAddon } from "../src/kernels/native/loader.js";
import { prepackAddonOf } from "../src/kernels/native/prepack.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { benchShapeConfig } from "./scale/shapes.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: string) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? argv[i + 1] : d;
};
const shape = opt("shape", "125m");
const THREADS = Number(opt("threads", String(cpus().length)));
const ROUNDS = Number(opt("rounds", "7"));
const CPU_TIME = argv.includes("--cpu-time");
const RESIDENT = argv.includes("--resident");
const AGAINST = argv.includes("--against") ? opt("against", "") : null;
const PREFILL = argv.includes("--prefill") ? Number(opt("prefill", "128")) : 0;
if (argv.includes("--prefill") && !(Number.isInteger(PREFILL) && PREFILL > 8))
  throw new Error("--prefill takes a row count above 8 (a decode step has at most 8)");
if (CPU_TIME && THREADS !== 1)
  throw new Error("--cpu-time needs --threads 1 (CPU time adds up over threads)");
/** Milliseconds now, of the wall clock or of this process's CPU time. */
const now = () => {
  if (!CPU_TIME) return performance.now();
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const loaded = loadAddon();
if (!("addon" in loaded)) throw new Error("bench/prepack needs the native addon (npm run build:native)");
const addon = loaded.addon as typeof loaded.addon & {
  readBandwidth(threads: number, mib: number): number;
  fmaPeak(threads: number, ms: number): number;
};
const pack = prepackAddonOf(addon);
if (!pack) throw new Error("this CPU has no prepacked kernels (AVX2+FMA or AVX-512 needed)");
addon.setThreads(THREADS);
const otherRaw = AGAINST ? (createRequire(import.meta.url)(resolve(AGAINST)) as typeof addon) : null;
const other = otherRaw ? prepackAddonOf(otherRaw) : null;
if (AGAINST && !other) throw new Error(`--against ${AGAINST}: that addon has no prepacked kernels here`);
otherRaw?.setThreads(THREADS);

const cfg = parseLlamaConfig(benchShapeConfig(shape));
const H = cfg.hiddenSize;
const kv = cfg.numKeyValueHeads * cfg.headDim;
const q = cfg.numAttentionHeads * cfg.headDim;
const I = cfg.intermediateSize;
/** [out, in] of every linear weight of one decode step. */
const shapes: [number, number][] = [];
for (let l = 0; l < cfg.numHiddenLayers; l++)
  shapes.push([q, H], [kv, H], [kv, H], [H, q], [I, H], [I, H], [H, I]);
// A prefill runs the output layer on its last position only: --prefill leaves it out.
if (!PREFILL) shapes.push([cfg.vocabSize, H]);
// --resident: as many products, all of one small weight (128 KiB bf16, 256 KiB f32).
if (RESIDENT) shapes.splice(0, shapes.length, ...shapes.map((): [number, number] => [128, 512]));

let seed = 1;
const rand = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
};

const bw0 = addon.readBandwidth(THREADS, 1024);
const peak = PREFILL ? addon.fmaPeak(THREADS, 300) : 0;
const rows: string[] = [];
for (const bf16 of [false, true]) {
  // Filled in place: TypedArray.from lists its source first, which runs out of heap on an
  // output layer of 136M values (Qwen2.5-0.5B).
  const made = (n: number, k: number) => {
    const f = new Float32Array(n * k);
    for (let i = 0; i < f.length; i++) f[i] = rand();
    if (!bf16) return f;
    const u = new Uint32Array(f.buffer);
    const h = new Uint16Array(f.length);
    for (let i = 0; i < h.length; i++) h[i] = u[i] >>> 16;
    return h;
  };
  const one = RESIDENT ? made(128, 512) : null;
  const ws = shapes.map(([n, k]) => one ?? made(n, k));
  // Panels allocated as the backend's packWeight allocates them (64-byte aligned where the
  // build has alignOffset; a build from before it gets plain, 16-byte aligned arrays).
  const packOf = (w: Float32Array | Uint16Array, n: number, k: number, by = pack) => {
    const arrays = alignedArrays(by);
    const p = bf16 ? arrays.u16(by.packedElements(n, k)) : arrays.f32(by.packedElements(n, k));
    by.prepackWeight(w, n, k, p);
    return p;
  };
  const onePacked = one ? packOf(one, 128, 512) : null;
  const ps = ws.map((w, i) => onePacked ?? packOf(w, shapes[i][0], shapes[i][1]));
  const oneOther = one && other ? packOf(one, 128, 512, other) : null;
  const po = other ? ws.map((w, i) => oneOther ?? packOf(w, shapes[i][0], shapes[i][1], other)) : [];
  const bytes = ws.reduce((s, w) => s + w.byteLength, 0);
  const maxIn = Math.max(...shapes.map(([, k]) => k));
  const maxOut = Math.max(...shapes.map(([n]) => n));
  const a = Float32Array.from({ length: 8 * maxIn }, rand);
  const c = new Float32Array(8 * maxOut);
  // A prefill's products each read activations and write outputs of their own (m·k and m·n
  // values, written or read by the ops around them, not L2-hot): one pair per product.
  const ins = PREFILL ? shapes.map(([, k]) => Float32Array.from({ length: PREFILL * k }, rand)) : [];
  const outs = PREFILL ? shapes.map(([n]) => new Float32Array(PREFILL * n)) : [];
  for (const m of PREFILL ? [PREFILL] : [1, 4, 8]) {
    const step = (path: "row" | "packed" | "against") => {
      const t0 = now();
      for (let i = 0; i < shapes.length; i++) {
        const [n, k] = shapes[i];
        const [x, y] = PREFILL ? [ins[i], outs[i]] : [a, c];
        if (path === "packed") pack.gemmPacked(m, n, k, x, ps[i], y, 1, 0);
        else if (path === "against") other?.gemmPacked(m, n, k, x, po[i], y, 1, 0);
        else addon.gemm(false, true, m, n, k, 1, x, 0, ws[i], 0, y, 0, 1, 0);
      }
      return now() - t0;
    };
    const paths = other ? (["row", "packed", "against"] as const) : (["row", "packed"] as const);
    for (const p of paths) step(p);
    const t: Record<"row" | "packed" | "against", number[]> = { row: [], packed: [], against: [] };
    for (let r = 0; r < ROUNDS; r++) for (const p of paths) t[p].push(step(p));
    const med = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1];
    // Decode: weight GB/s; prefill: % of the FMA peak (2·m·n·k per product).
    const flop = 2 * m * shapes.reduce((s, [n, k]) => s + n * k, 0);
    const gbs = (ms: number) => (PREFILL ? (flop / ms / 1e6 / peak) * 100 : bytes / ms / 1e6);
    const [tr, tp] = [med(t.row), med(t.packed)];
    const vs = other
      ? ` | ${gbs(med(t.against)).toFixed(1).padStart(19)} | ${(med(t.against) / tp).toFixed(2)}×`
      : "";
    rows.push(
      `${bf16 ? "bf16" : "f32 "} | ${String(m).padStart(4)} | ${(bytes / 2 ** 20).toFixed(0).padStart(6)} | ${gbs(tr).toFixed(1).padStart(14)} | ${gbs(tp).toFixed(1).padStart(11)} | ${(tr / tp).toFixed(2)}×${vs}`,
    );
  }
}
const bw1 = addon.readBandwidth(THREADS, 1024);
console.log(
  `${RESIDENT ? "one L2-resident 128×512 weight" : `${shape} shape`}, ${shapes.length} linear weights per step, ${THREADS} threads, median of ${ROUNDS} interleaved rounds${CPU_TIME ? " (CPU time)" : ""}`,
);
console.log(`streaming read bandwidth: ${bw0.toFixed(1)} GB/s before, ${bw1.toFixed(1)} GB/s after`);
const unit = PREFILL ? "% peak" : "GB/s";
if (PREFILL) console.log(`FMA peak ${peak.toFixed(0)} GFLOP/s (before the rounds)`);
console.log(
  `W    | rows | MiB/step | row-major ${unit} | packed ${unit} | speed-up${other ? ` | --against packed ${unit} | this build ×` : ""}`,
);
for (const r of rows) console.log(r);
