// KV cache dtype at long contexts: the bytes of an f32 and a bf16 cache, the attention kernel
// alone (one decode query over the context, one layer of the 125M shape), and decode tokens/s
// after a long prompt with either cache — the two dtypes interleaved run by run, so that a
// shared, noisy host treats them alike; medians are printed beside every run.
//
//   npm run build && node dist/bench/kv-cache.js [--context 1024] [--new 16] [--reps 3] [--json]
import type { Backend } from "../src/core/backend.js";
import { f32ToBf16 } from "../src/core/dtype.js";
import { Rng, setBackend } from "../src/index.js";
import { availableBackends } from "../src/kernels/select.js";
import { type GenerationStats, generate, generationRates } from "../src/models/generate.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { KV_DTYPES, KVCache, type KVDType } from "../src/models/llama/kv-cache.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { BENCH_125M_CONFIG } from "./scale/shapes.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const CTX = opt("context", 1024);
const NEW = opt("new", 16);
const REPS = opt("reps", 3);

const cfg = parseLlamaConfig({
  ...BENCH_125M_CONFIG,
  max_position_embeddings: Math.max(2048, CTX + NEW + 1),
});
const found = (await availableBackends()).find((b) => b.name === "native") as Backend | undefined;
if (!found) throw new Error("bench/kv-cache: the native addon is not built (npm run build:native)");
const be: Backend = found;
setBackend(be);
const median = (a: number[]) => a.slice().sort((x, y) => x - y)[a.length >> 1];

/** µs per attention call: one decode query (T=1) over CTX keys of one layer, k/v in `dtype`. */
function attentionMicros(): Record<KVDType, number> {
  const r = new Rng(3);
  const { numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: D } = cfg;
  const cap = CTX + NEW;
  const rand = (n: number) => Float32Array.from({ length: n }, () => r.uniform() * 2 - 1);
  const k32 = rand(cap * Hkv * D);
  const v32 = rand(cap * Hkv * D);
  const kv = {
    f32: [k32, v32],
    bf16: [Uint16Array.from(k32, f32ToBf16), Uint16Array.from(v32, f32ToBf16)],
  } as const;
  const q = rand(H * D);
  const out = new Float32Array(H * D);
  const lse = new Float32Array(H);
  const p = {
    q,
    B: 1,
    T: 1,
    S: CTX,
    H,
    Hkv,
    D,
    kvCapacity: cap,
    scale: 1 / Math.sqrt(D),
    offset: CTX - 1,
    causal: true,
  };
  const runs: Record<KVDType, number[]> = { f32: [], bf16: [] };
  const calls = 1000;
  for (let rep = 0; rep < 5; rep++)
    for (const dt of KV_DTYPES) {
      const [k, v] = kv[dt];
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) be.attention({ ...p, k, v }, out, lse);
      runs[dt].push(((performance.now() - t0) * 1000) / calls);
    }
  return { f32: median(runs.f32), bf16: median(runs.bf16) };
}

const micros = attentionMicros();
const model = new LlamaForCausalLM(cfg, { rng: new Rng(0) });
model.eval();
const rng = new Rng(1);
const prompt = Array.from({ length: CTX }, () => rng.int(cfg.vocabSize));
const decode: Record<KVDType, number[]> = { f32: [], bf16: [] };
const tokens: Partial<Record<KVDType, number[]>> = {};
for (let rep = 0; rep < REPS; rep++)
  for (const dt of KV_DTYPES) {
    const stats = {} as GenerationStats;
    tokens[dt] = generate(model, prompt, { maxNewTokens: NEW + 1, stats, kvDtype: dt });
    decode[dt].push(generationRates(stats).decode);
  }
const rows = KV_DTYPES.map((dt) => ({
  kv_dtype: dt,
  context: CTX,
  kv_cache_bytes: new KVCache(cfg.numHiddenLayers, 1, CTX + NEW + 1, cfg.numKeyValueHeads, cfg.headDim, {
    dtype: dt,
  }).bytes,
  attention_micros_per_layer: micros[dt],
  decode_tokens_per_second: decode[dt],
  decode_tokens_per_second_median: median(decode[dt]),
}));
const same = JSON.stringify(tokens.f32) === JSON.stringify(tokens.bf16);
if (argv.includes("--json"))
  for (const r of rows) console.log(JSON.stringify({ ...r, same_greedy_tokens: same }));
else {
  console.log(
    `125M shape (heads 12/4, head dim 64, 12 layers), f32 weights; decode ${NEW} tokens after ${CTX}`,
  );
  for (const r of rows)
    console.log(
      `${r.kv_dtype.padEnd(4)} KV cache ${(r.kv_cache_bytes / 2 ** 20).toFixed(1)} MiB | attention ${r.attention_micros_per_layer.toFixed(0)} µs per layer | decode tok/s ${r.decode_tokens_per_second.map((x) => x.toFixed(1)).join(", ")} (median ${r.decode_tokens_per_second_median.toFixed(1)})`,
    );
  console.log(`greedy tokens of the two caches ${same ? "equal" : "differ"}`);
}
