// Inference benchmark: prefill and decode tokens/s of a LLaMA-shaped model (random weights,
// built in memory) with f32, bf16 and NF4 weights, next to the machine's own limits measured
// in the same run: decode reads every weight once per token, so it is reported as GB/s and as
// a fraction of this machine's streaming read bandwidth (readBandwidth); the prefill as a
// fraction of the FMA peak (fmaPeak). The prefill is the prompt's forward as generate runs it
// (KV cache filled, logits of the last position only: the FLOPs counted are the decoder's
// linear layers for every token and the output layer once); the all-logits forward is eval's
// (every position's logits, the output layer counted for each). Best of 3 each. The read
// bandwidth a decode is held against is probed right before and after that engine's decode
// runs (the better of the two): on a shared host it drifts by a third within minutes, and one
// probe at the start of the run made a later engine's share look low or high by as much. The
// FMA peak a prefill and an all-logits forward are held against is probed the same way, right
// before and after them (it read 479–544 GFLOP/s within an hour on one 2-core host).
// llama.cpp runs the same f32 weights through lorakit's
// GGUF export (bench/llama-cpp-peer.ts); the TypeScript reference backend is the other peer.
//
//   npm run build && node dist/bench/inference.js [--shape 125m|qwen2.5-0.5b] [--prompt 128]
//     [--new 32] [--threads N] [--ref] [--no-llama-cpp] [--json]
//     [--kv-dtype f32|bf16] [--decode-context 8]  (decode starts after that many prompt tokens)
//     [--no-prepack]  (frozen weights stay row-major: the path before prepacking, for comparison)
//     [--interleave-prepack R]  (each native engine R times row-major, R times prepacked, in
//                               turns in this process: medians of each, under the same load)
//     [--decode-split R]  (f32 and bf16, prepacked: one decode step's weight products recorded,
//                          then R rounds of decoding and of replaying those products alone, in
//                          turns: what a token costs beyond streaming its weights)
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import type { Backend, PackedGemmParams } from "../src/core/backend.js";
import { setWeightPacking } from "../src/core/engine.js";
import { noGrad, Rng, setBackend, tensor, tidy } from "../src/index.js";
import { loadAddon } from "../src/kernels/native/loader.js";
import { refBackend } from "../src/kernels/ref/index.js";
import { availableBackends } from "../src/kernels/select.js";
import { type GenerationStats, generate, generationRates } from "../src/models/generate.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { KVCache, kvDType } from "../src/models/llama/kv-cache.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { Linear } from "../src/nn/layers.js";
import { Linear4bit } from "../src/quant/linear4bit.js";
import { quantizeModel } from "../src/quant/model.js";
import { llamaCppPeer } from "./llama-cpp-peer.js";
import { benchShapeConfig } from "./scale/shapes.js";
import { perCpuSecond } from "./thread-cpu.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const shapeArg = (() => {
  const i = argv.indexOf("--shape");
  return i >= 0 ? argv[i + 1] : "125m";
})();
const PROMPT = opt("prompt", 128);
const NEW = opt("new", 32);
const THREADS = opt("threads", cpus().length);
const KV_DTYPE = kvDType(
  argv.includes("--kv-dtype") ? argv[argv.indexOf("--kv-dtype") + 1] : "f32",
  "--kv-dtype",
);
const DECODE_CONTEXT = opt("decode-context", 8);
const PREPACK = !argv.includes("--no-prepack");
const INTERLEAVE = opt("interleave-prepack", 0);
const DECODE_SPLIT = opt("decode-split", 0);
setWeightPacking(PREPACK);

const cfg = parseLlamaConfig(benchShapeConfig(shapeArg));
const model = new LlamaForCausalLM(cfg, { rng: new Rng(0) });
model.eval();
let params = 0;
for (const p of model.parameters()) params += p.size;
const rng = new Rng(1);
const prompt = Array.from({ length: Math.max(PROMPT, DECODE_CONTEXT) }, () => rng.int(cfg.vocabSize));
/** The decode's KV cache (generate allocates the same: context + new tokens). */
const kvBytes =
  new KVCache(1, 1, DECODE_CONTEXT + NEW + 1, cfg.numKeyValueHeads, cfg.headDim, {
    dtype: KV_DTYPE,
  }).bytes * cfg.numHiddenLayers;

const loaded = loadAddon();
const addon =
  "addon" in loaded
    ? (loaded.addon as typeof loaded.addon & {
        readBandwidth(threads: number, mib: number): number;
        fmaPeak(threads: number, ms: number): number;
      })
    : null;
addon?.setThreads(THREADS);

/** Bytes one decode step reads: every linear weight (the output layer included) once. */
function bytesPerToken(m: LlamaForCausalLM): number {
  let bytes = 0;
  for (const [, mod] of m.namedModules()) {
    if (mod instanceof Linear4bit) bytes += mod.residentBytes();
    else if (mod instanceof Linear) {
      const w = mod.weight;
      bytes += w.size * (w.dtype === "f32" ? 4 : 2) + (mod.bias ? mod.bias.size * 4 : 0);
    }
  }
  return bytes;
}

/** Multiply-adds of one token through the decoder's linear layers (attention's are small at this length). */
function decoderFmaPerToken(m: LlamaForCausalLM): number {
  let n = 0;
  for (const [name, mod] of m.namedModules())
    if ((mod instanceof Linear || mod instanceof Linear4bit) && name !== "lm_head")
      n += mod.inFeatures * mod.outFeatures;
  return n;
}

/** Multiply-adds of the output layer for one position. */
function headFma(m: LlamaForCausalLM): number {
  return m.config.hiddenSize * m.config.vocabSize;
}

interface Row {
  engine: string;
  weights_mb: number;
  /** The prompt's forward as generation runs it: KV cache filled, logits of the last position only. */
  prefill_tokens_per_second: number;
  decode_tokens_per_second: number;
  decode_gb_per_second?: number;
  /** The streaming read probed next to this engine's decode (GB/s) and the decode's share of it. */
  read_gb_per_second_at_decode?: number;
  decode_fraction_of_bandwidth?: number;
  /** The FMA peak probed right before and after this engine's prefills and forwards (the better), GFLOP/s. */
  fma_peak_gflops_at_prefill?: number;
  /** FLOPs the prefill does (decoder linears for every token, the output layer once) / time / that peak. */
  prefill_fraction_of_fma_peak?: number;
  /** The same FLOPs per CPU-second of the prefill / the FMA chains' GFLOP per CPU-second. */
  prefill_fraction_of_fma_peak_cpu_time?: number;
  /** One forward over the prompt with every position's logits (as eval runs it). */
  forward_tokens_per_second: number;
  forward_fraction_of_fma_peak?: number;
}

/** The best of `n` timings of fn, in seconds. */
function bestOf(n: number, fn: () => number): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < n; i++) best = Math.min(best, fn());
  return best;
}

interface Rates {
  /** Wall and CPU seconds of the best of 3 prefills (generate's own timing). */
  prefillSeconds: number;
  prefillCpuSeconds: number;
  /** Seconds of the best of 3 all-logits forwards. */
  forwardSeconds: number;
  /** Tokens per second of the best of 3 decodes. */
  decode: number;
  /** GB/s of the streaming read probed next to those decodes (the better of before and after); 0 without the addon. */
  decodeBandwidth: number;
  /** The FMA peak probed next to the prefills and forwards (the better of before and after), GFLOP/s and GFLOP per CPU-second; 0 without the addon. */
  prefillPeak: number;
  prefillPeakPerCpuSecond: number;
}

/** Prefill, forward and decode timings of one run (the warm-up forward packs the weights when packing is on). */
function rates(): Rates {
  const ids = prompt.slice(0, PROMPT);
  noGrad(() => tidy(() => void model.forward(tensor([prompt.slice(0, 8)], [1, 8], "i32")))); // warm up
  const probePeak = () => (addon ? perCpuSecond(() => addon.fmaPeak(THREADS, 200)) : [0, 0]);
  const peakBefore = probePeak();
  // Prefill: the prompt through generate (timed by generate itself), best of 3.
  let prefillCpuSeconds = Number.POSITIVE_INFINITY;
  const prefillSeconds = bestOf(3, () => {
    const s = {} as GenerationStats;
    const c0 = process.cpuUsage();
    generate(model, ids, { maxNewTokens: 1, stats: s, kvDtype: KV_DTYPE });
    const c = process.cpuUsage(c0);
    prefillCpuSeconds = Math.min(prefillCpuSeconds, (c.user + c.system) / 1e6);
    return s.prefillSeconds;
  });
  // Every position's logits (eval's forward), best of 3.
  const forwardSeconds = bestOf(3, () => {
    const t0 = performance.now();
    noGrad(() => tidy(() => void model.forward(tensor([ids], [1, PROMPT], "i32"))));
    return (performance.now() - t0) / 1000;
  });
  const peakAfter = probePeak();
  const prefillPeak = Math.max(peakBefore[0], peakAfter[0]);
  const prefillPeakPerCpuSecond = Math.max(peakBefore[1], peakAfter[1]);
  // Decode: greedy with the KV cache, timed by generate itself (the prompt's prefill apart),
  // best of 3, between two probes of the read bandwidth.
  const probe = () => (addon ? addon.readBandwidth(THREADS, 1024) : 0);
  const before = probe();
  let decode = 0;
  for (let i = 0; i < 3; i++) {
    const stats = {} as GenerationStats;
    generate(model, prompt.slice(0, DECODE_CONTEXT), { maxNewTokens: NEW + 1, stats, kvDtype: KV_DTYPE });
    decode = Math.max(decode, generationRates(stats).decode);
  }
  const decodeBandwidth = Math.max(before, probe());
  return {
    prefillSeconds,
    prefillCpuSeconds,
    forwardSeconds,
    decode,
    decodeBandwidth,
    prefillPeak,
    prefillPeakPerCpuSecond,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** The median of each timing over runs. */
function medianRates(runs: Rates[]): Rates {
  return {
    prefillSeconds: median(runs.map((r) => r.prefillSeconds)),
    prefillCpuSeconds: median(runs.map((r) => r.prefillCpuSeconds)),
    forwardSeconds: median(runs.map((r) => r.forwardSeconds)),
    decode: median(runs.map((r) => r.decode)),
    decodeBandwidth: median(runs.map((r) => r.decodeBandwidth)),
    prefillPeak: median(runs.map((r) => r.prefillPeak)),
    prefillPeakPerCpuSecond: median(runs.map((r) => r.prefillPeakPerCpuSecond)),
  };
}

/** The native engine row-major and prepacked in turns, INTERLEAVE times each: [row-major, prepacked]. */
function measureInterleaved(be: Backend, label: string): Row[] {
  setBackend(be);
  const runs: Record<"row" | "packed", Rates[]> = { row: [], packed: [] };
  for (let r = 0; r < INTERLEAVE; r++)
    for (const packed of [false, true]) {
      setWeightPacking(packed);
      // Back to row-major: reading a packed weight's data unpacks it.
      if (!packed) for (const p of model.parameters()) if (p.packedWeight) void p.data;
      runs[packed ? "packed" : "row"].push(rates());
    }
  setWeightPacking(PREPACK);
  return (["row", "packed"] as const).map((k) =>
    toRow(be, `${label}${k === "row" ? " row-major" : ""}`, medianRates(runs[k])),
  );
}

function measure(be: Backend, label: string): Row[] {
  if (INTERLEAVE > 0 && be.name === "native") return measureInterleaved(be, label);
  setBackend(be);
  return [toRow(be, label, rates())];
}

function toRow(be: Backend, label: string, r: Rates): Row {
  const { prefillSeconds, prefillCpuSeconds, forwardSeconds, decode, decodeBandwidth, prefillPeak } = r;
  const bytes = bytesPerToken(model);
  const row: Row = {
    engine: label,
    weights_mb: bytes / 2 ** 20,
    prefill_tokens_per_second: PROMPT / prefillSeconds,
    decode_tokens_per_second: decode,
    forward_tokens_per_second: PROMPT / forwardSeconds,
  };
  if (be.name === "native") {
    row.decode_gb_per_second = (decode * bytes) / 1e9;
    if (decodeBandwidth > 0) {
      row.read_gb_per_second_at_decode = decodeBandwidth;
      row.decode_fraction_of_bandwidth = row.decode_gb_per_second / decodeBandwidth;
    }
    if (prefillPeak > 0) {
      const dec = decoderFmaPerToken(model);
      const head = headFma(model);
      row.fma_peak_gflops_at_prefill = prefillPeak;
      row.prefill_fraction_of_fma_peak = (2 * (PROMPT * dec + head)) / prefillSeconds / 1e9 / prefillPeak;
      if (r.prefillPeakPerCpuSecond > 0)
        row.prefill_fraction_of_fma_peak_cpu_time =
          (2 * (PROMPT * dec + head)) / prefillCpuSeconds / 1e9 / r.prefillPeakPerCpuSecond;
      row.forward_fraction_of_fma_peak = (2 * PROMPT * (dec + head)) / forwardSeconds / 1e9 / prefillPeak;
    }
  }
  return row;
}

interface DecodeSplit {
  engine: string;
  /** Wall ms of one decode step (generate's own timing), median of the rounds. */
  decode_ms_per_token: number;
  /** Wall ms of the same step's weight products replayed alone, back to back, median. */
  products_ms_per_token: number;
  /** The same two in CPU ms of this process (all threads; with --threads 1, steady on a loaded host). */
  decode_cpu_ms_per_token: number;
  products_cpu_ms_per_token: number;
  /**
   * CPU ms per token of decode steps whose weight products are skipped (outputs zeroed): the
   * rest of a step measured alone, not as a difference of two larger numbers. With --threads 1
   * it holds still on a loaded host, where the wall-clock columns do not.
   */
  skipped_cpu_ms_per_token: number;
  /** Backend product calls in one decode step. */
  product_calls: number;
  /** The weight products alone as GB/s (every weight byte once per replayed step). */
  products_gb_per_second: number;
}

/**
 * --decode-split: where a decode step's time goes. One step's prepacked products (their
 * inputs copied) are recorded through a wrapping backend; then, in turns, NEW decode steps
 * and NEW replays of those products alone. decode − products is the fixed cost per token:
 * attention over the cache, norms, RoPE, SiLU·mul, residual adds, sampling, the JS of each op.
 */
function decodeSplit(be: Backend, label: string): DecodeSplit {
  const replays: (() => void)[] = [];
  let recording = false;
  // The inputs copied (a shared call's products keep one input), fresh outputs.
  const copy = (p: PackedGemmParams, a = p.a.slice()): PackedGemmParams => ({
    ...p,
    a,
    c: new Float32Array(p.c.length),
  });
  const packed = be.gemmPacked?.bind(be);
  const shared = be.gemmPackedShared?.bind(be);
  const recorder: Backend = {
    ...be,
    gemmPacked:
      packed &&
      ((p) => {
        if (recording) {
          const q = copy(p);
          replays.push(() => packed(q));
        }
        packed(p);
      }),
    gemmPackedShared:
      shared &&
      ((ps) => {
        if (recording) {
          const a = ps[0].a.slice();
          const qs = ps.map((p) => copy(p, a));
          replays.push(() => shared(qs));
        }
        shared(ps);
      }),
  };
  setBackend(recorder);
  let steps = 0;
  // Step 0 is the prefill; step 1, the first decode step, is the one recorded.
  generate(model, prompt.slice(0, DECODE_CONTEXT), {
    maxNewTokens: 2,
    kvDtype: KV_DTYPE,
    onToken: () => {
      recording = ++steps === 1;
    },
  });
  setBackend(be);
  // The same backend with every weight product skipped: its output zeroed where it is not
  // accumulated into (so the logits stay finite), nothing streamed.
  const zeroed = (p: PackedGemmParams) => {
    if (p.beta === 0) p.c.fill(0, 0, p.m * p.w.rows);
  };
  const skipping: Backend = {
    ...be,
    gemmPacked: packed && zeroed,
    gemmPackedShared: shared && ((ps) => ps.forEach(zeroed)),
  };
  const decode: number[] = [];
  const products: number[] = [];
  const decodeCpu: number[] = [];
  const productsCpu: number[] = [];
  const skippedCpu: number[] = [];
  const cpuMs = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;
  for (let r = 0; r < DECODE_SPLIT; r++) {
    const stats = {} as GenerationStats;
    // CPU time from the first token (the prefill's) to the last: the NEW decode steps.
    let c0 = process.cpuUsage();
    let tokens = 0;
    generate(model, prompt.slice(0, DECODE_CONTEXT), {
      maxNewTokens: NEW + 1,
      stats,
      kvDtype: KV_DTYPE,
      onToken: () => {
        if (++tokens === 1) c0 = process.cpuUsage();
      },
    });
    decodeCpu.push(cpuMs(process.cpuUsage(c0)) / NEW);
    decode.push((stats.decodeSeconds * 1000) / stats.decodeSteps);
    const c1 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < NEW; i++) for (const f of replays) f();
    products.push((performance.now() - t0) / NEW);
    productsCpu.push(cpuMs(process.cpuUsage(c1)) / NEW);
    setBackend(skipping);
    let c2 = process.cpuUsage();
    let skippedTokens = 0;
    generate(model, prompt.slice(0, DECODE_CONTEXT), {
      maxNewTokens: NEW + 1,
      kvDtype: KV_DTYPE,
      onToken: () => {
        if (++skippedTokens === 1) c2 = process.cpuUsage();
      },
    });
    skippedCpu.push(cpuMs(process.cpuUsage(c2)) / NEW);
    setBackend(be);
  }
  const productsMs = median(products);
  return {
    engine: label,
    decode_ms_per_token: median(decode),
    products_ms_per_token: productsMs,
    decode_cpu_ms_per_token: median(decodeCpu),
    products_cpu_ms_per_token: median(productsCpu),
    skipped_cpu_ms_per_token: median(skippedCpu),
    product_calls: replays.length,
    products_gb_per_second: bytesPerToken(model) / productsMs / 1e6,
  };
}

// The machine's limits, measured now (the best of two probes around the runs counts).
let bandwidth = addon ? addon.readBandwidth(THREADS, 1024) : 0;
const peak = addon ? addon.fmaPeak(THREADS, 300) : 0;
/**
 * The same FMA chains timed in CPU seconds of this process (all threads): GFLOP per CPU-second.
 * On a host shared with other work, wall-clock rates fall with whatever else runs; CPU time
 * does much less, so the prefill's share of this figure is the steadier one.
 */
const peakPerCpuSecond = addon ? perCpuSecond(() => addon.fmaPeak(THREADS, 300))[1] : 0;

const rows: Row[] = [];
const splits: DecodeSplit[] = [];
const native = (await availableBackends()).find((b) => b.name === "native");
if (native) rows.push(...measure(native, "native f32"));
if (native && DECODE_SPLIT > 0 && PREPACK) splits.push(decodeSplit(native, "native f32, prepacked"));
if (argv.includes("--ref")) rows.push(...measure(refBackend, "ref (TypeScript) f32"));
if (!argv.includes("--no-llama-cpp")) {
  // The demo model's tokenizer, padded to this vocabulary: the prompt is token ids anyway.
  const tokDir = fileURLToPath(new URL("../../models/demo-base", import.meta.url));
  const peer = await llamaCppPeer(model, tokDir, prompt.slice(0, PROMPT), NEW, THREADS);
  if (peer) {
    const row = peer as unknown as Row;
    // The same f32 weights: the same bytes per token.
    row.weights_mb = bytesPerToken(model) / 2 ** 20;
    row.decode_gb_per_second = (row.decode_tokens_per_second * bytesPerToken(model)) / 1e9;
    rows.push(row);
  }
}
if (native) {
  // Every linear weight stored as bf16 (the output layer too): read at half the bytes.
  for (const [, m] of model.namedModules())
    if (m instanceof Linear && m.weight.dtype === "f32") m.setParam("weight", m.weight.to("bf16"));
  rows.push(...measure(native, "native bf16 weights"));
  if (DECODE_SPLIT > 0 && PREPACK) splits.push(decodeSplit(native, "native bf16, prepacked"));
  // QLoRA's base: the decoder linears in NF4 (the output layer stays bf16).
  quantizeModel(model);
  rows.push(...measure(native, "native NF4 + bf16 head"));
  if (addon) bandwidth = Math.max(bandwidth, addon.readBandwidth(THREADS, 1024));
  // llama.cpp's decode (run between the f32 and bf16 engines) against the best probe of the engines'.
  for (const r of rows)
    if (r.decode_gb_per_second !== undefined && r.read_gb_per_second_at_decode === undefined) {
      const near = Math.max(...rows.map((x) => x.read_gb_per_second_at_decode ?? 0));
      r.read_gb_per_second_at_decode = near > 0 ? near : bandwidth;
      r.decode_fraction_of_bandwidth = r.decode_gb_per_second / r.read_gb_per_second_at_decode;
    }
}

const where = `${shapeArg} shape (hidden ${cfg.hiddenSize}, ${cfg.numHiddenLayers} layers, intermediate ${cfg.intermediateSize}, vocab ${cfg.vocabSize}, heads ${cfg.numAttentionHeads}/${cfg.numKeyValueHeads}), ${(params / 1e6).toFixed(0)}M parameters; prompt ${PROMPT}, ${NEW} new tokens after ${DECODE_CONTEXT} with a ${KV_DTYPE} KV cache of ${(kvBytes / 2 ** 20).toFixed(1)} MiB, ${THREADS} threads, weights ${INTERLEAVE > 0 ? `row-major and prepacked in turns (medians of ${INTERLEAVE})` : PREPACK ? "prepacked" : "row-major (--no-prepack)"}`;
if (argv.includes("--json"))
  for (const r of rows)
    console.log(
      JSON.stringify({
        ...r,
        shape: shapeArg,
        params,
        prompt: PROMPT,
        new_tokens: NEW,
        decode_context: DECODE_CONTEXT,
        kv_dtype: KV_DTYPE,
        kv_cache_bytes: kvBytes,
        prepacked_weights: PREPACK,
        threads: THREADS,
        read_gb_per_second: bandwidth,
        fma_peak_gflops: peak,
        fma_peak_gflops_per_cpu_second: peakPerCpuSecond,
      }),
    );
if (argv.includes("--json"))
  for (const d of splits)
    console.log(
      JSON.stringify({ decode_split: d, shape: shapeArg, threads: THREADS, read_gb_per_second: bandwidth }),
    );
else {
  console.log(where);
  console.log(
    `machine: streaming read ${bandwidth.toFixed(1)} GB/s, FMA peak ${peak.toFixed(0)} GFLOP/s, ${peakPerCpuSecond.toFixed(0)} GFLOP per CPU-second (measured at the start; each engine's prefill and forward % are of the peak probed right before and after them)`,
  );
  console.log(
    "engine                 | MB read/token | prefill tok/s | % FMA peak | (CPU time) | all-logits forward tok/s | % FMA peak | decode tok/s | decode GB/s | % of read GB/s probed next to it",
  );
  const pct = (x: number | undefined) => (x === undefined ? "" : `${(100 * x).toFixed(0)} %`);
  for (const r of rows)
    console.log(
      `${String(r.engine).padEnd(22)} | ${r.weights_mb.toFixed(0).padStart(13)} | ${r.prefill_tokens_per_second.toFixed(1).padStart(13)} | ${pct(r.prefill_fraction_of_fma_peak).padStart(10)} | ${pct(r.prefill_fraction_of_fma_peak_cpu_time).padStart(10)} | ${(r.forward_tokens_per_second?.toFixed(1) ?? "").padStart(24)} | ${pct(r.forward_fraction_of_fma_peak).padStart(10)} | ${r.decode_tokens_per_second.toFixed(1).padStart(12)} | ${(r.decode_gb_per_second?.toFixed(1) ?? "").padStart(11)} | ${`${pct(r.decode_fraction_of_bandwidth)}${r.read_gb_per_second_at_decode ? ` of ${r.read_gb_per_second_at_decode.toFixed(1)}` : ""}`.padStart(16)}`,
    );
  if (splits.length > 0) {
    console.log(
      `\ndecode split (--decode-split ${DECODE_SPLIT}: one decode step's weight products replayed alone vs the whole step, medians)`,
    );
    console.log(
      "engine                 | product calls/token | decode ms/token | products alone ms/token (GB/s, % read bandwidth) | rest ms/token (% of the step) | CPU ms/token: decode, products, rest | rest alone (products skipped), CPU ms/token",
    );
    for (const d of splits) {
      const rest = d.decode_ms_per_token - d.products_ms_per_token;
      const cpuRest = d.decode_cpu_ms_per_token - d.products_cpu_ms_per_token;
      console.log(
        `${d.engine.padEnd(22)} | ${String(d.product_calls).padStart(19)} | ${d.decode_ms_per_token.toFixed(2).padStart(15)} | ${`${d.products_ms_per_token.toFixed(2)} (${d.products_gb_per_second.toFixed(1)}, ${((100 * d.products_gb_per_second) / bandwidth).toFixed(0)} %)`.padStart(48)} | ${`${rest.toFixed(2)} (${((100 * rest) / d.decode_ms_per_token).toFixed(0)} %)`.padStart(29)} | ${`${d.decode_cpu_ms_per_token.toFixed(2)}, ${d.products_cpu_ms_per_token.toFixed(2)}, ${cpuRest.toFixed(2)}`.padEnd(36)} | ${d.skipped_cpu_ms_per_token.toFixed(2)}`,
      );
    }
  }
}
