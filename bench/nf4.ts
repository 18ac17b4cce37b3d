// NF4 / QLoRA benchmark: resident bytes per base weight with an NF4 base, the NF4 GEMM
// (fused dequantise-in-packing, native) against the fp32 GEMM of the same shape, and QLoRA
// against LoRA training (tokens/s, eval loss) on a small LLaMA fine-tuned on State of the
// Union text (bytes as tokens). Run: node dist/bench/nf4.js [--threads N] [--steps N]
import { backward } from "../src/core/autograd.js";
import { noGrad } from "../src/core/engine.js";
import { crossEntropy, linear, reshape } from "../src/core/ops/index.js";
import { Rng, randNormal } from "../src/core/rng.js";
import type { Tensor } from "../src/core/tensor.js";
import { tensor } from "../src/core/tensor.js";
import { sotuText } from "../src/data/corpora.js";
import { loadAddon } from "../src/kernels/native/loader.js";
import { selectBackend } from "../src/kernels/select.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { AdamW } from "../src/optim/adamw.js";
import { loraConfig } from "../src/peft/config.js";
import { getPeftModel } from "../src/peft/model.js";
import { Linear4bit, nf4ComputePath } from "../src/quant/linear4bit.js";
import { linear4bitModules, quantizeModel } from "../src/quant/model.js";

const argv = process.argv.slice(2);
const arg = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const { backend } = await selectBackend();
const loaded = loadAddon();
if ("addon" in loaded && argv.includes("--threads")) loaded.addon.setThreads(arg("threads", 2));
console.log(`backend ${backend.name}, NF4 path ${nf4ComputePath()}`);

function time(fn: () => void, minMs = 400): number {
  fn();
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < minMs) {
    fn();
    n++;
  }
  return (performance.now() - t0) / n;
}

// 1. resident bytes per parameter
{
  const l = Linear4bit.fromWeight(randNormal(new Rng(1), [4096, 4096], 0, 0.02));
  console.log(
    `resident bytes/param (4096×4096, NF4 + double-quantised absmax): ${(l.residentBytes() / 4096 ** 2).toFixed(4)} (target ≤ 0.52)`,
  );
  const l2 = Linear4bit.fromWeight(randNormal(new Rng(1), [4096, 4096], 0, 0.02), null, {
    doubleQuant: false,
  });
  console.log(
    `resident bytes/param without double quantisation: ${(l2.residentBytes() / 4096 ** 2).toFixed(4)}`,
  );
}

// 2. NF4 GEMM vs fp32 GEMM
const shapes: [number, number, number][] = [
  [512, 2048, 2048],
  [1024, 1024, 2816],
  [256, 4096, 4096],
];
for (const [N, C, O] of shapes) {
  const rng = new Rng(2);
  const w = randNormal(rng, [O, C], 0, 0.02);
  const x = randNormal(rng, [N, C]);
  const l4 = Linear4bit.fromWeight(w);
  const flops = 2 * N * C * O;
  noGrad(() => {
    const tF = time(() => linear(x, w).dispose());
    const tQ = time(() => (l4.forward(x) as Tensor).dispose());
    const g = (t: number) => (flops / t / 1e6).toFixed(1);
    console.log(
      `GEMM ${N}×${C}·(${O}×${C})ᵀ: fp32 ${g(tF)} GFLOP/s, NF4 fused ${g(tQ)} GFLOP/s (${(tF / tQ).toFixed(2)}× fp32; target ≥ 0.8)`,
    );
  });
}

// 3. QLoRA vs LoRA on a small model and State of the Union text
const steps = arg("steps", 30);
const B = 8;
const S = 128;
const text = new TextEncoder().encode(sotuText({ years: [2010, 2011, 2012, 2013, 2014, 2015] }));
const nValid = 4 * B * (S + 1);
const trainBytes = text.subarray(0, text.length - nValid);
const validBytes = text.subarray(text.length - nValid);
function batch(src: Uint8Array, i: number): { ids: Tensor; tgt: Tensor } {
  const ids = new Int32Array(B * S);
  const tgt = new Int32Array(B * S);
  for (let b = 0; b < B; b++) {
    const off = ((i * B + b) * (S + 1) * 7919) % (src.length - S - 1);
    for (let t = 0; t < S; t++) {
      ids[b * S + t] = src[off + t];
      tgt[b * S + t] = src[off + t + 1];
    }
  }
  return { ids: tensor(ids, [B, S], "i32"), tgt: tensor(tgt, [B * S], "i32") };
}
function run(q: boolean): { tps: number; evalBefore: number; evalAfter: number; bytes: number } {
  const cfg = parseLlamaConfig({
    model_type: "llama",
    vocab_size: 256,
    hidden_size: 256,
    intermediate_size: 704,
    num_hidden_layers: 4,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-5,
  });
  const model = new LlamaForCausalLM(cfg, { rng: new Rng(0) });
  for (const p of model.parameters()) p.requiresGrad = false;
  if (q) quantizeModel(model);
  let bytes = 0;
  for (const [, l] of linear4bitModules(model)) bytes += l.residentBytes();
  getPeftModel(model, loraConfig({ r: 16, loraAlpha: 32, targetModules: "all-linear" }));
  const opt = new AdamW(model.trainableParameters(), { lr: 3e-3 });
  const evalLoss = () =>
    noGrad(() => {
      let s = 0;
      for (let i = 0; i < 4; i++) {
        const { ids, tgt } = batch(validBytes, i);
        const lg = model.forward(ids);
        s += crossEntropy(reshape(lg, [-1, 256]), tgt).item();
      }
      return s / 4;
    });
  const evalBefore = evalLoss();
  model.train();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    const { ids, tgt } = batch(trainBytes, i);
    const loss = crossEntropy(reshape(model.forward(ids), [-1, 256]), tgt);
    backward(loss);
    opt.step();
    opt.zeroGrad();
  }
  const secs = (performance.now() - t0) / 1000;
  model.eval();
  return { tps: (steps * B * S) / secs, evalBefore, evalAfter: evalLoss(), bytes };
}
for (const q of [false, true]) {
  const r = run(q);
  console.log(
    `${q ? "QLoRA" : "LoRA "} (4 layers, hidden 256, r 16 all-linear, ${steps} steps of ${B}×${S}): ${r.tps.toFixed(0)} tokens/s, eval loss ${r.evalBefore.toFixed(4)} → ${r.evalAfter.toFixed(4)}${q ? `, NF4 linears ${(r.bytes / 1024).toFixed(0)} KiB` : ""}`,
  );
}
