// The memory model against what a training step really allocates, and the planner's choices.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { backward } from "../../src/core/autograd.js";
import { resetPeakTensorBytes, tensorBytes, tidy } from "../../src/core/memory.js";
import { Rng } from "../../src/core/rng.js";
import { fromArray } from "../../src/core/tensor.js";
import { parseLlamaConfig } from "../../src/models/llama/config.js";
import { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { getPeftModel } from "../../src/peft/model.js";
import type { LinearName, TrainingShape } from "../../src/train/memory-plan.js";
import {
  estimateTrainingMemory,
  LINEAR_NAMES,
  loraParamCount,
  PLAN_HEADROOM,
  parseByteSize,
  planTraining,
} from "../../src/train/memory-plan.js";

interface Case {
  C: number;
  I: number;
  H: number;
  Hkv: number;
  L: number;
  V: number;
  B: number;
  T: number;
  r: number;
  targets: LinearName[];
  dropout: number;
  ck: number;
  full?: boolean;
  chunk: number;
}

/** Peak tensor bytes of one forward + backward above what existed before, and the model's prediction. */
function measure(k: Case): { measured: number; predicted: number } {
  const cfg = parseLlamaConfig({
    model_type: "llama",
    vocab_size: k.V,
    hidden_size: k.C,
    intermediate_size: k.I,
    num_hidden_layers: k.L,
    num_attention_heads: k.H,
    num_key_value_heads: k.Hkv,
    max_position_embeddings: 1024,
    tie_word_embeddings: false,
  });
  const model = new LlamaForCausalLM(cfg, { rng: new Rng(1) });
  for (const p of model.parameters()) p.requiresGrad = Boolean(k.full);
  const tm = k.full
    ? model
    : getPeftModel(model, { r: k.r, loraAlpha: 2 * k.r, targetModules: k.targets, loraDropout: k.dropout });
  if (k.ck) model.gradientCheckpointingEnable(k.ck);
  model.lossChunkTokens = k.chunk;
  tm.train(true);
  const N = k.B * k.T;
  const ids = fromArray(
    Int32Array.from({ length: N }, (_, i) => (i * 7) % k.V),
    [k.B, k.T],
  );
  const tg = fromArray(
    Int32Array.from({ length: N }, (_, i) => (i * 11) % k.V),
    [N],
  );
  const P = [...tm.namedParameters()].filter(([, p]) => p.requiresGrad).reduce((a, [, p]) => a + p.size, 0);
  const before = tensorBytes().live;
  resetPeakTensorBytes();
  tidy(() => backward(tm.loss(ids, tg)));
  const measured = tensorBytes().peak - before;
  const shape: TrainingShape = {
    config: cfg,
    method: k.full ? "full" : "lora",
    weightBytes: 0,
    trainableParams: P,
    r: k.r,
    targets: k.targets,
    dropout: k.dropout > 0,
    batchSize: k.B,
    seqLen: k.T,
    checkpointLayers: k.ck,
    lossChunkTokens: k.chunk,
  };
  // Gradients of the trained parameters are made during the step too.
  return { measured, predicted: estimateTrainingMemory(shape).detail.tensorPeak + 4 * P };
}

const ALL = [...LINEAR_NAMES];
const base = { H: 4, Hkv: 2, B: 2, dropout: 0, ck: 0, chunk: 64 };

describe("the training memory model", () => {
  const cases: [string, Case][] = [
    ["LoRA all-linear", { ...base, C: 64, I: 160, L: 3, V: 300, T: 24, r: 4, targets: ALL }],
    ["LoRA with dropout", { ...base, C: 64, I: 160, L: 3, V: 300, T: 24, r: 4, targets: ALL, dropout: 0.1 }],
    ["LoRA q,v", { ...base, C: 96, I: 256, L: 3, V: 500, T: 32, r: 8, targets: ["q_proj", "v_proj"] }],
    [
      "every layer checkpointed",
      { ...base, C: 128, I: 352, L: 4, V: 1000, T: 64, r: 8, targets: ALL, ck: 4 },
    ],
    [
      "2 of 4 layers checkpointed",
      { ...base, C: 128, I: 352, L: 4, V: 1000, T: 64, r: 8, targets: ALL, ck: 2 },
    ],
    [
      "a loss in many chunks",
      { ...base, C: 128, I: 352, L: 2, V: 4000, T: 64, r: 8, targets: ALL, chunk: 16 },
    ],
    ["full fine-tuning", { ...base, C: 128, I: 352, L: 3, V: 1000, T: 64, r: 8, targets: [], full: true }],
  ];
  for (const [name, k] of cases)
    test(`predicts a step's peak tensor bytes within 10 %: ${name}`, () => {
      const { measured, predicted } = measure(k);
      const err = predicted / measured - 1;
      assert.ok(
        Math.abs(err) < 0.1,
        `predicted ${predicted}, measured ${measured} (${(100 * err).toFixed(1)} %)`,
      );
    });
});

describe("the planner", () => {
  const config = parseLlamaConfig({
    model_type: "qwen2",
    vocab_size: 151936,
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    max_position_embeddings: 32768,
    tie_word_embeddings: true,
  });
  const shape = {
    config,
    method: "lora" as const,
    weightBytes: 988_208_640,
    trainableParams: loraParamCount(config, 16, ALL),
    r: 16,
    targets: ALL,
    dropout: false,
    batchSize: 4,
    seqLen: 1024,
  };

  test("a run that fits as it is pays for nothing", () => {
    const p = planTraining(shape, 64 * 2 ** 30);
    assert.ok(p.fits);
    assert.equal(p.checkpointLayers, 0);
  });

  test("a tight budget checkpoints the fewest layers that fit; fewer would not", () => {
    const budget = 4 * 2 ** 30;
    const p = planTraining(shape, budget);
    assert.ok(p.fits);
    assert.ok(p.checkpointLayers > 0 && p.checkpointLayers <= 24);
    assert.ok(p.memory.total <= budget * PLAN_HEADROOM);
    const fewer = estimateTrainingMemory({
      ...shape,
      checkpointLayers: p.checkpointLayers - 1,
      lossChunkTokens: p.lossChunkTokens,
    });
    assert.ok(fewer.total > budget * PLAN_HEADROOM);
  });

  test("nothing fits: no plan, and every suggestion fits the budget", () => {
    const budget = 2 * 2 ** 30;
    const p = planTraining(shape, budget, { qloraWeightBytes: 300e6 });
    assert.equal(p.fits, false);
    if (p.fits) return;
    assert.ok(p.suggestions.length > 0);
    for (const sgg of p.suggestions) {
      const b = /--batch-size (\d+)/.exec(sgg);
      const t = /--seq-len (\d+)/.exec(sgg);
      const q = sgg.includes("--quantize nf4");
      const patched = {
        ...shape,
        batchSize: b ? Number(b[1]) : shape.batchSize,
        seqLen: t ? Number(t[1]) : shape.seqLen,
        ...(q ? { method: "qlora" as const, weightBytes: 300e6 } : {}),
      };
      const again = planTraining(patched, budget, { qloraWeightBytes: 300e6 });
      assert.ok(again.fits, `suggestion "${sgg}" does not fit`);
    }
  });

  test("a smaller batch with gradient accumulation keeps the sequences per step exactly", () => {
    for (const [batchSize, gradAccum] of [
      [65536, 1],
      [12, 3],
      [97, 1],
    ]) {
      const p = planTraining({ ...shape, batchSize }, 2 * 2 ** 30, { gradAccum });
      assert.equal(p.fits, false);
      if (p.fits) return;
      const m = /--batch-size (\d+) --grad-accum (\d+) \(the same (\d+) sequences per step\)/.exec(
        p.suggestions[0],
      );
      assert.ok(m, p.suggestions[0]);
      const [b, k, n] = m.slice(1).map(Number);
      assert.equal(b * k, batchSize * gradAccum);
      assert.equal(n, batchSize * gradAccum);
      assert.ok(planTraining({ ...shape, batchSize: b }, 2 * 2 ** 30).fits);
    }
  });

  test("--gradient-checkpointing off/on is obeyed", () => {
    const big = 64 * 2 ** 30;
    const on = planTraining(shape, big, { checkpointing: "on" });
    assert.ok(on.fits && on.checkpointLayers === 24);
    const off = planTraining(shape, 3 * 2 ** 30, { checkpointing: "off" });
    assert.equal(off.fits, false);
    if (!off.fits) assert.match(off.suggestions[0], /--gradient-checkpointing auto/);
  });

  test("sizes", () => {
    assert.equal(parseByteSize("4GiB"), 4 * 2 ** 30);
    assert.equal(parseByteSize("6000MB"), 6e9);
    assert.equal(parseByteSize("512 MiB"), 512 * 2 ** 20);
    assert.equal(parseByteSize("1234"), 1234);
    assert.throws(() => parseByteSize("lots"), /cannot read "lots" as a size/);
    assert.throws(() => parseByteSize("0GiB"), /must be positive/);
  });
});
