// The model call of one serving step, without HTTP: LlamaForCausalLM.step over a continuous
// batch of decode rows (each its own KV cache), on bench/serve's model shape (hidden 256,
// 4 layers, random weights). The batch holds 40–63 rows, changing from step to step as a
// server's does when requests finish and arrive. Prints wall and CPU milliseconds per step
// (CPU time of the whole process, every thread) and tokens per second of each; best of 3
// rounds. On a host shared with other work the CPU figures are the steadier ones.
//
//   npm run build && node dist/bench/serve-step.js [--steps 60] [--threads N] [--hidden 256]
//     [--layers 4] [--json]
import { noGrad, Rng, tidy } from "../src/index.js";
import { loadAddon } from "../src/kernels/native/loader.js";
import { selectBackend } from "../src/kernels/select.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { KVCache } from "../src/models/llama/kv-cache.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";

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
const rng = new Rng(1);
const PROMPT = 8;
const capacity = PROMPT + STEPS + 1;

interface Round {
  wallMs: number;
  cpuMs: number;
  tokens: number;
}

function round(): Round {
  const caches = Array.from(
    { length: 64 },
    () => new KVCache(cfg.numHiddenLayers, 1, capacity, cfg.numKeyValueHeads, cfg.headDim),
  );
  // Every sequence's prompt first (not timed).
  noGrad(() =>
    tidy(
      () =>
        void model.step(
          caches.map(() => Array.from({ length: PROMPT }, () => rng.int(300))),
          caches,
        ),
    ),
  );
  let tokens = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let s = 0; s < STEPS; s++) {
    const rows = caches.slice(0, 40 + ((s * 7) % 24));
    tokens += rows.length;
    noGrad(() =>
      tidy(
        () =>
          void model.step(
            rows.map(() => [rng.int(300)]),
            rows,
          ).data,
      ),
    );
  }
  const c = process.cpuUsage(c0);
  return { wallMs: (performance.now() - t0) / STEPS, cpuMs: (c.user + c.system) / 1000 / STEPS, tokens };
}

const rounds = [round(), round(), round()];
const best = (k: "wallMs" | "cpuMs") => Math.min(...rounds.map((r) => r[k]));
const perStep = rounds[0].tokens / STEPS;
const out = {
  backend: backend.name,
  hidden,
  layers,
  steps: STEPS,
  rows_per_step: perStep,
  wall_ms_per_step: best("wallMs"),
  cpu_ms_per_step: best("cpuMs"),
  tokens_per_second: (perStep * 1000) / best("wallMs"),
  tokens_per_cpu_second: (perStep * 1000) / best("cpuMs"),
};
if (argv.includes("--json")) console.log(JSON.stringify(out));
else
  console.log(
    `serving step (hidden ${hidden}, ${layers} layers, ${perStep.toFixed(1)} decode rows per step, backend ${backend.name}): ` +
      `${out.wall_ms_per_step.toFixed(2)} ms wall, ${out.cpu_ms_per_step.toFixed(2)} ms CPU per step; ` +
      `${out.tokens_per_second.toFixed(0)} tokens/s, ${out.tokens_per_cpu_second.toFixed(0)} tokens per CPU-second`,
  );
