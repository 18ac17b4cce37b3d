// Where a prompt's prefill spends its time: the 125M LLaMA shape (random weights, prepacked
// f32 or bf16), a 128-token prompt through generate, every backend call timed by op. Then, in
// turns with the prefills, the same prefill's weight products replayed alone: the products'
// share of the FMA peak next to the whole prefill's, and what the rest (attention, norms,
// RoPE, SiLU·mul, residual adds, copies, the JavaScript of each op) costs, and the same
// products each timed right after a first run of itself (its weights hot in the caches where
// they fit): what reading the weights from memory costs the products in the prefill's order.
//
//   npm run build && node dist/bench/prefill-split.js [--rounds 5] [--prompt 128]
//     [--threads N] [--bf16] [--shape 125m|qwen2.5-0.5b] [--json]
//
// Times are wall ms per prefill (medians over the rounds) and CPU ms of this process (all
// threads): on a shared host the CPU figures are the steadier ones.
import { cpus } from "node:os";
import type { Backend, PackedGemmParams } from "../src/core/backend.js";
import { setWeightPacking } from "../src/core/engine.js";
import { noGrad, Rng, setBackend, tensor, tidy } from "../src/index.js";
import { loadAddon } from "../src/kernels/native/loader.js";
import { availableBackends } from "../src/kernels/select.js";
import { type GenerationStats, generate } from "../src/models/generate.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { Linear } from "../src/nn/layers.js";
import { benchShapeConfig } from "./scale/shapes.js";
import { perCpuSecond } from "./thread-cpu.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const shapeArg = argv.includes("--shape") ? argv[argv.indexOf("--shape") + 1] : "125m";
const PROMPT = opt("prompt", 128);
const ROUNDS = opt("rounds", 5);
const THREADS = opt("threads", cpus().length);
const BF16 = argv.includes("--bf16");

const loaded = loadAddon();
if (!("addon" in loaded))
  throw new Error("prefill-split: the native addon is not built (npm run build:native)");
const addon = loaded.addon as typeof loaded.addon & { fmaPeak(threads: number, ms: number): number };
addon.setThreads(THREADS);
const native = (await availableBackends()).find((b) => b.name === "native");
if (!native) throw new Error("prefill-split: no native backend on this host");

const cfg = parseLlamaConfig(benchShapeConfig(shapeArg));
const model = new LlamaForCausalLM(cfg, { rng: new Rng(0) });
model.eval();
if (BF16)
  for (const [, m] of model.namedModules())
    if (m instanceof Linear && m.weight.dtype === "f32") m.setParam("weight", m.weight.to("bf16"));
const rng = new Rng(1);
const ids = Array.from({ length: PROMPT }, () => rng.int(cfg.vocabSize));

setWeightPacking(true);
setBackend(native);
noGrad(() => tidy(() => void model.forward(tensor([ids.slice(0, 8)], [1, 8], "i32")))); // packs the weights

// Every backend function timed by name while `timing` is on; products recorded while `recording`.
const opMs = new Map<string, { ms: number; calls: number }>();
let timing = false;
let recording = false;
let productFma = 0;
/** Each recorded product call, into its own output arrays (the prefill's come from the warm buffer pool). */
const replays: (() => void)[] = [];
const copy = (p: PackedGemmParams, a = p.a.slice()): PackedGemmParams => ({
  ...p,
  a,
  c: new Float32Array(p.c.length),
});
const timed: Record<string, unknown> = {};
for (const [name, value] of Object.entries(native) as [string, unknown][]) {
  if (typeof value !== "function") {
    timed[name] = value;
    continue;
  }
  const fn = (value as (...args: unknown[]) => unknown).bind(native);
  timed[name] = (...args: unknown[]) => {
    if (recording && name === "gemmPacked") {
      const p = args[0] as PackedGemmParams;
      const q = copy(p);
      productFma += p.m * p.w.rows * p.w.cols;
      replays.push(() => native.gemmPacked?.(q));
    } else if (recording && name === "gemmPackedShared") {
      const ps = args[0] as PackedGemmParams[];
      const a = ps[0].a.slice();
      const qs = ps.map((p) => copy(p, a));
      for (const p of ps) productFma += p.m * p.w.rows * p.w.cols;
      replays.push(() => native.gemmPackedShared?.(qs));
    }
    if (!timing) return fn(...args);
    const t0 = performance.now();
    const r = fn(...args);
    const e = opMs.get(name) ?? { ms: 0, calls: 0 };
    e.ms += performance.now() - t0;
    e.calls++;
    opMs.set(name, e);
    return r;
  };
}
const wrapped = timed as unknown as Backend;

/** One prefill (generate's step 0) with `on` set during it; returns its wall and CPU ms. */
function prefill(set: (on: boolean) => void): { wall: number; cpu: number } {
  const s = {} as GenerationStats;
  set(true);
  const c0 = process.cpuUsage();
  let cpu = 0;
  generate(model, ids, {
    maxNewTokens: 1,
    stats: s,
    onToken: () => {
      const c = process.cpuUsage(c0);
      cpu = (c.user + c.system) / 1000;
      set(false);
    },
  });
  return { wall: s.prefillSeconds * 1000, cpu };
}

setBackend(wrapped);
prefill((on) => {
  recording = on;
});
const productCalls = replays.length;
const opRounds: Map<string, number>[] = [];
const opCalls = new Map<string, number>();
const prefillWall: number[] = [];
const prefillCpu: number[] = [];
const productsWall: number[] = [];
const productsCpu: number[] = [];
const hotWall: number[] = [];
const opWall: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  // An untimed prefill (the op timers cost a little), the products alone, a timed prefill.
  const plain = prefill(() => {});
  prefillWall.push(plain.wall);
  prefillCpu.push(plain.cpu);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (const f of replays) f();
  productsWall.push(performance.now() - t0);
  const c = process.cpuUsage(c0);
  productsCpu.push((c.user + c.system) / 1000);
  let hot = 0;
  for (const f of replays) {
    f();
    const t1 = performance.now();
    f();
    hot += performance.now() - t1;
  }
  hotWall.push(hot);
  opMs.clear();
  const t = prefill((on) => {
    timing = on;
  });
  opWall.push(t.wall);
  opRounds.push(new Map([...opMs].map(([k, v]) => [k, v.ms])));
  for (const [k, v] of opMs) opCalls.set(k, v.calls);
}
setBackend(native);

const peak = addon.fmaPeak(THREADS, 300);
const peakPerCpuSecond = perCpuSecond(() => addon.fmaPeak(THREADS, 300))[1];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
// The prefill's counted FLOPs as bench/inference.ts counts them: the recorded products
// (decoder linears for every token; the output layer runs on the last position only).
const flops = 2 * productFma;
const pctOf = (ms: number, perCpu: boolean) =>
  (flops / (ms / 1000) / 1e9 / (perCpu ? peakPerCpuSecond : peak)) * 100;
const summary = {
  shape: shapeArg,
  weights: BF16 ? "bf16" : "f32",
  prompt: PROMPT,
  threads: THREADS,
  rounds: ROUNDS,
  fma_peak_gflops: peak,
  fma_peak_gflops_per_cpu_second: peakPerCpuSecond,
  product_calls: productCalls,
  product_gflop: flops / 1e9,
  prefill_ms: median(prefillWall),
  prefill_cpu_ms: median(prefillCpu),
  products_ms: median(productsWall),
  products_cpu_ms: median(productsCpu),
  prefill_pct_peak: pctOf(median(prefillWall), false),
  prefill_pct_peak_cpu: pctOf(median(prefillCpu), true),
  products_pct_peak: pctOf(median(productsWall), false),
  products_pct_peak_cpu: pctOf(median(productsCpu), true),
  /** The same products, each timed right after a run of itself: its weights as hot as the caches allow. */
  products_hot_ms: median(hotWall),
  products_hot_pct_peak: pctOf(median(hotWall), false),
  ops_ms: Object.fromEntries(
    [...new Set(opRounds.flatMap((m) => [...m.keys()]))]
      .map((k) => [k, median(opRounds.map((m) => m.get(k) ?? 0))] as const)
      .sort((a, b) => b[1] - a[1]),
  ),
  ops_calls: Object.fromEntries(opCalls),
  timed_prefill_ms: median(opWall),
};

if (argv.includes("--json")) console.log(JSON.stringify(summary));
else {
  const f1 = (x: number) => x.toFixed(1);
  console.log(
    `${shapeArg} shape, ${summary.weights} weights prepacked, prompt ${PROMPT}, ${THREADS} threads, medians of ${ROUNDS} rounds; FMA peak ${f1(peak)} GFLOP/s, ${f1(peakPerCpuSecond)} per CPU-second`,
  );
  console.log(
    `prefill: ${f1(summary.prefill_ms)} ms (${f1(summary.prefill_pct_peak)} % of peak), ${f1(summary.prefill_cpu_ms)} CPU ms (${f1(summary.prefill_pct_peak_cpu)} %)`,
  );
  console.log(
    `its ${productCalls} weight-product calls alone (${f1(summary.product_gflop)} GFLOP): ${f1(summary.products_ms)} ms (${f1(summary.products_pct_peak)} %), ${f1(summary.products_cpu_ms)} CPU ms (${f1(summary.products_pct_peak_cpu)} %)`,
  );
  console.log(
    `the same, each right after a run of itself (weights hot where the caches hold them): ${f1(summary.products_hot_ms)} ms (${f1(summary.products_hot_pct_peak)} %)`,
  );
  console.log(
    `\nbackend calls in a timed prefill (${f1(summary.timed_prefill_ms)} ms): calls, wall ms, share`,
  );
  let sum = 0;
  for (const [k, v] of Object.entries(summary.ops_ms)) {
    sum += v;
    console.log(
      `  ${k.padEnd(20)} ${String(opCalls.get(k) ?? 0).padStart(5)} ${v.toFixed(2).padStart(8)}  ${f1((100 * v) / summary.timed_prefill_ms).padStart(5)} %`,
    );
  }
  const rest = summary.timed_prefill_ms - sum;
  console.log(
    `  ${"(outside calls: JS)".padEnd(20)} ${"".padStart(5)} ${rest.toFixed(2).padStart(8)}  ${f1((100 * rest) / summary.timed_prefill_ms).padStart(5)} %`,
  );
}
