// The LoRA training step the benchmarks time: random weights of `cfg`, r on every linear
// layer, random token windows of B×T, AdamW with gradient clipping; the median of `steps`
// timed steps after one warm-up, and the loss of the last.
import type { Backend } from "../src/core/backend.js";
import {
  backward,
  clipGradNorm,
  crossEntropy,
  fromArray,
  Rng,
  reshape,
  setBackend,
  tidy,
} from "../src/index.js";
import type { LlamaConfig } from "../src/models/llama/config.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { AdamW } from "../src/optim/adamw.js";
import { getPeftModel } from "../src/peft/model.js";

export interface LoraStepOptions {
  r: number;
  alpha: number;
  lr: number;
  batch: number;
  seq: number;
  steps: number;
}

export function timeLoraSteps(
  be: Backend,
  cfg: LlamaConfig,
  o: LoraStepOptions,
): { seconds: number; loss: number } {
  setBackend(be);
  const { batch: B, seq: T } = o;
  const V = cfg.vocabSize;
  const model = new LlamaForCausalLM(cfg, { rng: new Rng(0) });
  const pm = getPeftModel(model, { r: o.r, loraAlpha: o.alpha, targetModules: "all-linear" });
  const params = pm.trainableParameters();
  const optim = new AdamW(params, { lr: o.lr, weightDecay: 0 });
  const rng = new Rng(1);
  const ids = new Int32Array(B * (T + 1)).map(() => rng.int(V));
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      inputs[b * T + t] = ids[b * (T + 1) + t];
      targets[b * T + t] = ids[b * (T + 1) + t + 1];
    }
  const one = (): number =>
    tidy(() => {
      pm.train(true);
      const logits = pm.forward(fromArray(inputs, [B, T]));
      const loss = crossEntropy(reshape(logits, [-1, V]), fromArray(targets, [B * T]));
      const value = loss.item();
      backward(loss);
      clipGradNorm(params, 1);
      optim.step();
      optim.zeroGrad();
      return value;
    });
  one();
  const times: number[] = [];
  let loss = Number.NaN;
  for (let i = 0; i < o.steps; i++) {
    const t0 = performance.now();
    loss = one();
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return { seconds: times[Math.floor(times.length / 2)], loss };
}
