// What sampling costs a decode step: sampleToken alone on rows of logits of the 125M and
// Qwen2.5-0.5B vocabularies (32,000 and 151,936), and generate's decode tokens/s with
// temperature, top-p and top-k next to greedy decoding of the same model in the same run
// (bf16 weights, prepacked, the shape's random weights; best of --rounds each).
//
//   npm run build && node dist/bench/sampling.js [--shape 125m|qwen2.5-0.5b] [--rounds 3] [--json]
import { setWeightPacking } from "../src/core/engine.js";
import { Rng, setBackend } from "../src/index.js";
import { availableBackends } from "../src/kernels/select.js";
import { type GenerateOptions, type GenerationStats, generate, sampleToken } from "../src/models/generate.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { Linear } from "../src/nn/layers.js";
import { benchShapeConfig } from "./scale/shapes.js";

const argv = process.argv.slice(2);
const shape = argv.includes("--shape") ? argv[argv.indexOf("--shape") + 1] : "125m";
const ROUNDS = argv.includes("--rounds") ? Number(argv[argv.indexOf("--rounds") + 1]) : 3;

const MODES: [string, Partial<GenerateOptions>][] = [
  ["greedy", {}],
  ["T 0.8", { temperature: 0.8 }],
  ["T 0.8, top-p 0.95", { temperature: 0.8, topP: 0.95 }],
  ["T 0.8, top-k 40", { temperature: 0.8, topK: 40 }],
];

// sampleToken alone: logits ~ N(0, sd²) (sd 2: a flat row, a wide top-p set; sd 4: a peaked one).
const alone: Record<string, number | string>[] = [];
for (const V of [32000, 151936])
  for (const sd of [2, 4]) {
    const g = new Rng(V + sd);
    const logits = Float32Array.from({ length: V }, () => g.normal() * sd);
    const row: Record<string, number | string> = { vocab: V, logit_sd: sd };
    for (const [name, o] of MODES.slice(1)) {
      const rng = new Rng(1);
      const opts = { maxNewTokens: 1, ...o };
      sampleToken(logits, opts, rng);
      const n = 20;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) sampleToken(logits, opts, rng);
      row[name] = (performance.now() - t0) / n;
    }
    alone.push(row);
  }

// generate with each mode, decode tokens/s.
const native = (await availableBackends()).find((b) => b.name === "native");
if (native) setBackend(native);
const cfg = parseLlamaConfig(benchShapeConfig(shape));
const model = new LlamaForCausalLM(cfg, { rng: new Rng(0) });
model.eval();
for (const [, m] of model.namedModules())
  if (m instanceof Linear && m.weight.dtype === "f32") m.setParam("weight", m.weight.to("bf16"));
setWeightPacking(true);
const prompt = [1, 2, 3, 4, 5, 6, 7, 8];
const decode: Record<string, number> = {};
for (let r = 0; r < ROUNDS; r++)
  for (const [name, o] of MODES) {
    const stats = {} as GenerationStats;
    generate(model, prompt, { maxNewTokens: 33, stats, seed: r, ...o });
    decode[name] = Math.max(decode[name] ?? 0, stats.decodeSteps / stats.decodeSeconds);
  }

if (argv.includes("--json"))
  console.log(JSON.stringify({ shape, backend: native?.name ?? "ref", alone, decode }));
else {
  console.log("sampleToken alone, ms per token (one row of logits ~ N(0, sd²)):");
  console.log(
    `vocab   | sd | ${MODES.slice(1)
      .map(([n]) => n.padStart(17))
      .join(" | ")}`,
  );
  for (const r of alone)
    console.log(
      `${String(r.vocab).padEnd(7)} | ${String(r.logit_sd).padStart(2)} | ${MODES.slice(1)
        .map(([n]) => (r[n] as number).toFixed(2).padStart(17))
        .join(" | ")}`,
    );
  console.log(
    `\n${shape} shape, bf16 weights, ${native?.name ?? "ref"} backend: decode tokens/s (best of ${ROUNDS}) and ÷ greedy`,
  );
  for (const [name] of MODES)
    console.log(
      `${name.padEnd(18)} ${decode[name].toFixed(1).padStart(8)}  ${(decode[name] / decode.greedy).toFixed(2)}×`,
    );
}
