// NF4 against bf16 decode (and prefill), interleaved: the same LLaMA-shaped model (random
// weights) once with every linear in bf16 (prepacked), once with the decoder linears in NF4 and
// the output layer in bf16 (QLoRA's base), run in turns in one process so both see the same
// load: bf16, NF4 prepacked (Backend.nf4Pack), NF4 on the bitsandbytes codes (nf4Gemm, the
// path before prepacking). Reports the median and range of each over the rounds, and whether
// the two NF4 paths chose the same greedy ids.
//
//   npm run build && node dist/bench/nf4-decode.js [--shape 125m|qwen2.5-0.5b] [--rounds 3]
//     [--prompt 64] [--new 16] [--threads N]
import { cpus } from "node:os";
import { setWeightPacking } from "../src/core/engine.js";
import { Rng } from "../src/core/rng.js";
import { loadAddon } from "../src/kernels/native/loader.js";
import { selectBackend } from "../src/kernels/select.js";
import { type GenerationStats, generate, generationRates } from "../src/models/generate.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { Linear } from "../src/nn/layers.js";
import { linear4bitModules, quantizeModel } from "../src/quant/model.js";
import { benchShapeConfig } from "./scale/shapes.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const shapeArg = argv.includes("--shape") ? argv[argv.indexOf("--shape") + 1] : "125m";
const ROUNDS = opt("rounds", 3);
const PROMPT = opt("prompt", 64);
const NEW = opt("new", 16);
const THREADS = opt("threads", cpus().length);

const cfg = parseLlamaConfig(benchShapeConfig(shapeArg));
const { backend } = await selectBackend();
if (backend.name !== "native" || !backend.nf4Pack)
  throw new Error("needs the native backend with packed NF4 kernels");
const loaded = loadAddon();
if ("addon" in loaded) loaded.addon.setThreads(THREADS);

/** The model with every linear weight in bf16; `nf4`: the decoder linears then quantised to NF4. */
function build(nf4: boolean): LlamaForCausalLM {
  const m = new LlamaForCausalLM(cfg, { rng: new Rng(0) });
  m.eval();
  for (const p of m.parameters()) p.requiresGrad = false;
  for (const [, mod] of m.namedModules())
    if (mod instanceof Linear && mod.weight.dtype === "f32") mod.setParam("weight", mod.weight.to("bf16"));
  if (nf4) quantizeModel(m);
  return m;
}
const bf16 = build(false);
const nf4 = build(true);
const rng = new Rng(1);
const prompt = Array.from({ length: PROMPT }, () => rng.int(cfg.vocabSize));

interface Run {
  prefill: number;
  decode: number;
  /** CPU milliseconds of this process (all threads) per generated token: steadier than wall time on a shared host. */
  cpuMsPerToken: number;
  ids: number[];
}
function once(m: LlamaForCausalLM, packed: boolean): Run {
  setWeightPacking(packed);
  // The bitsandbytes path: reading q restores the codes (and drops the packed form).
  if (!packed) for (const [, l] of linear4bitModules(m)) void l.q;
  generate(m, prompt.slice(0, 8), { maxNewTokens: 2 }); // warm-up (packs when packing is on)
  const cpu = (fn: () => void) => {
    const c0 = process.cpuUsage();
    fn();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1000;
  };
  // CPU time of the decode: a full generate's less that of a prefill with one new token.
  const cpuPrefill = cpu(() => generate(m, prompt, { maxNewTokens: 1 }));
  const s = {} as GenerationStats;
  let ids: number[] = [];
  const cpuAll = cpu(() => {
    ids = generate(m, prompt, { maxNewTokens: NEW + 1, stats: s });
  });
  const r = generationRates(s);
  return { prefill: r.prefill, decode: r.decode, cpuMsPerToken: (cpuAll - cpuPrefill) / NEW, ids };
}

const engines = [
  { name: "bf16 weights (prepacked)", model: bf16, packed: true },
  { name: "NF4 prepacked + bf16 head", model: nf4, packed: true },
  { name: "NF4 bitsandbytes codes (nf4Gemm) + bf16 head", model: nf4, packed: false },
];
const runs: Run[][] = engines.map(() => []);
for (let r = 0; r < ROUNDS; r++)
  for (const [i, e] of engines.entries()) runs[i].push(once(e.model, e.packed));
setWeightPacking(true);

const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const range = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
console.log(
  `${shapeArg} shape (hidden ${cfg.hiddenSize}, ${cfg.numHiddenLayers} layers, intermediate ${cfg.intermediateSize}, vocab ${cfg.vocabSize}); prompt ${PROMPT}, ${NEW} new tokens, ${THREADS} threads, ${ROUNDS} interleaved rounds (median, range)`,
);
console.log(
  "engine                                        | prefill tok/s       | decode tok/s        | decode CPU ms/token",
);
for (const [i, e] of engines.entries()) {
  const p = runs[i].map((x) => x.prefill);
  const d = runs[i].map((x) => x.decode);
  const cpuMs = runs[i].map((x) => x.cpuMsPerToken);
  console.log(
    `${e.name.padEnd(45)} | ${med(p).toFixed(1).padStart(6)} (${range(p)}) | ${med(d).toFixed(1).padStart(6)} (${range(d)}) | ${med(cpuMs).toFixed(1)} (${range(cpuMs)})`,
  );
}
const dec = (i: number) => runs[i].map((x) => x.decode);
const ratios = dec(1).map((d, r) => d / dec(0)[r]);
console.log(`NF4 prepacked / bf16 decode, per round: ${ratios.map((x) => x.toFixed(2)).join(", ")}`);
const same = runs[1].every((x, r) => JSON.stringify(x.ids) === JSON.stringify(runs[2][r].ids));
console.log(`greedy ids: NF4 prepacked ${same ? "=" : "≠"} NF4 on the bitsandbytes codes`);
