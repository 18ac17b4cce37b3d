// The model call of one serving step, without HTTP: LlamaForCausalLM.step over a continuous
// batch of decode rows (each its own KV cache), on bench/serve's model shape (hidden 256,
// 4 layers, random weights). The batch holds 40–63 rows, changing from step to step as a
// server's does when requests finish and arrive. Prints wall and CPU milliseconds per step
// (CPU time of the whole process, every thread) and tokens per second of each; best of 3
// rounds. On a host shared with other work the CPU figures are the steadier ones.
// --adapters 1,64: LoRA adapters (r = 8 on q,k,v,o, as bench/serve) with the rows spread over
// that many of them (row i on adapter i mod N, through batchStep as the server calls it); each
// count runs its rounds in turns with the others, and the table adds each one's ratio to the
// first. Without it the model has no LoRA layers.
// --prefill N: each step also prefills N prompt chunks of 20 tokens (sequences of their own,
// each on the next adapter after the decode rows'), as a server's steps carry new requests'
// prompts beside the decoding ones (bench/serve: ~20 prompt tokens a request); 0 by default.
//
//   npm run build && node dist/bench/serve-step.js [--steps 60] [--threads N] [--hidden 256]
//     [--layers 4] [--adapters 1,8,64] [--prefill 2] [--json]
import { getPeftModel, noGrad, Rng, tidy } from "../src/index.js";
import { loadAddon } from "../src/kernels/native/loader.js";
import { selectBackend } from "../src/kernels/select.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { KVCache } from "../src/models/llama/kv-cache.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { batchStep } from "../src/serve/batch-step.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const STEPS = opt("steps", 60);
const hidden = opt("hidden", 256);
const layers = opt("layers", 4);
const { backend } = await selectBackend();
if (argv.includes("--threads")) {
  const loaded = loadAddon();
  if ("addon" in loaded) loaded.addon.setThreads(opt("threads", 1));
}
const cfg = parseLlamaConfig({
  model_type: "llama",
  vocab_size: 300,
  hidden_size: hidden,
  intermediate_size: Math.round((hidden * 8) / 3),
  num_hidden_layers: layers,
  num_attention_heads: hidden / 32,
  num_key_value_heads: hidden / 64,
  max_position_embeddings: 2048,
});
const model = new LlamaForCausalLM(cfg, { rng: new Rng(0) });
model.eval();
const aIdx = argv.indexOf("--adapters");
const adapterCounts = aIdx >= 0 ? argv[aIdx + 1].split(",").map(Number) : [];
if (adapterCounts.some((n) => !Number.isInteger(n) || n < 1))
  throw new Error("--adapters takes adapter counts ≥ 1, e.g. 1,8,64");
const loraConfig = { r: 8, loraAlpha: 16, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"] };
const loraLayers = (() => {
  if (adapterCounts.length === 0) return [];
  const pm = getPeftModel(model, loraConfig, "ad-0", { seed: 1 });
  for (let a = 1; a < Math.max(...adapterCounts); a++) pm.addAdapter(`ad-${a}`, loraConfig, { seed: a + 1 });
  return [...pm.loraLayers()].map(([, l]) => l);
})();
const rng = new Rng(1);
const PROMPT = 8;
const PREFILL_ROWS = opt("prefill", 0);
const CHUNK = 20;
const capacity = PROMPT + STEPS + 1;

interface Round {
  wallMs: number;
  cpuMs: number;
  tokens: number;
}

function round(adapters: number): Round {
  const caches = Array.from(
    { length: 64 },
    () => new KVCache(cfg.numHiddenLayers, 1, capacity, cfg.numKeyValueHeads, cfg.headDim),
  );
  // Prompt chunks' sequences: their caches are emptied after each step.
  const prefillCaches = Array.from(
    { length: PREFILL_ROWS },
    () => new KVCache(cfg.numHiddenLayers, 1, CHUNK, cfg.numKeyValueHeads, cfg.headDim),
  );
  // Row i's adapter (none without --adapters).
  const adapterOf = (i: number) => `ad-${i % Math.max(1, adapters)}`;
  const run = (tokens: number[][], rows: KVCache[]) => {
    if (loraLayers.length === 0) {
      noGrad(() => tidy(() => void model.step(tokens, rows).data));
      return;
    }
    batchStep(
      model,
      loraLayers,
      rows.map((cache, i) => ({ tokens: tokens[i], cache, adapter: adapterOf(i) })),
    );
  };
  // Every sequence's prompt first (not timed).
  run(
    caches.map(() => Array.from({ length: PROMPT }, () => rng.int(300))),
    caches,
  );
  let tokens = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let s = 0; s < STEPS; s++) {
    const rows = caches.slice(0, 40 + ((s * 7) % 24));
    tokens += rows.length;
    for (const c of prefillCaches) c.reset();
    run(
      [
        ...rows.map(() => [rng.int(300)]),
        ...prefillCaches.map(() => Array.from({ length: CHUNK }, () => rng.int(300))),
      ],
      [...rows, ...prefillCaches],
    );
  }
  const c = process.cpuUsage(c0);
  return { wallMs: (performance.now() - t0) / STEPS, cpuMs: (c.user + c.system) / 1000 / STEPS, tokens };
}

// Three rounds of each adapter count, the counts in turns.
const counts = adapterCounts.length > 0 ? adapterCounts : [0];
const rounds = new Map<number, Round[]>(counts.map((n) => [n, []]));
for (let r = 0; r < 3; r++) for (const n of counts) rounds.get(n)!.push(round(n));
const results = counts.map((n) => {
  const rs = rounds.get(n)!;
  const best = (k: "wallMs" | "cpuMs") => Math.min(...rs.map((x) => x[k]));
  const perStep = rs[0].tokens / STEPS;
  return {
    backend: backend.name,
    hidden,
    layers,
    adapters: n,
    steps: STEPS,
    rows_per_step: perStep,
    wall_ms_per_step: best("wallMs"),
    cpu_ms_per_step: best("cpuMs"),
    tokens_per_second: (perStep * 1000) / best("wallMs"),
    tokens_per_cpu_second: (perStep * 1000) / best("cpuMs"),
  };
});
for (const out of results) {
  if (argv.includes("--json")) {
    console.log(JSON.stringify(out));
    continue;
  }
  const first = results[0];
  const who = out.adapters === 0 ? "no adapters" : `${out.adapters} adapter${out.adapters > 1 ? "s" : ""}`;
  const vs =
    out === first || out.adapters === 0
      ? ""
      : `; ×${(out.tokens_per_second / first.tokens_per_second).toFixed(2)} wall, ×${(out.tokens_per_cpu_second / first.tokens_per_cpu_second).toFixed(2)} CPU against ${first.adapters}`;
  console.log(
    `serving step (hidden ${hidden}, ${layers} layers, ${who}, ${out.rows_per_step.toFixed(1)} decode rows${PREFILL_ROWS ? ` and ${PREFILL_ROWS} prompt chunks of ${CHUNK} tokens` : ""} per step, backend ${out.backend}): ` +
      `${out.wall_ms_per_step.toFixed(2)} ms wall, ${out.cpu_ms_per_step.toFixed(2)} ms CPU per step; ` +
      `${out.tokens_per_second.toFixed(0)} tokens/s, ${out.tokens_per_cpu_second.toFixed(0)} tokens per CPU-second${vs}`,
  );
}
