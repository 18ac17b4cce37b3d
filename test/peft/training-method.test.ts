// prepareTraining (peft/training-method.ts): each method wraps the model as the direct calls
// do (same adapters, same seeds, dropout RNG from seed + 1), full fine-tuning unfreezes
// everything, AdaLoRA brings its Trainer hooks, and adaLoraResumeState puts the allocator's
// state and mask back into a fresh model.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { noGrad } from "../../src/core/engine.js";
import { tidy } from "../../src/core/memory.js";
import { Rng } from "../../src/core/rng.js";
import { fromArray } from "../../src/core/tensor.js";
import { AdamW } from "../../src/optim/adamw.js";
import { constantScheduleWithWarmup, LrScheduler } from "../../src/optim/schedule.js";
import type { AdaLoraModel } from "../../src/peft/adalora/model.js";
import { goraInit } from "../../src/peft/gora/gora.js";
import { getPeftModel } from "../../src/peft/model.js";
import type { TrainingMethodSpec } from "../../src/peft/training-method.js";
import { adaLoraAsLora, finalRanks, prepareTraining } from "../../src/peft/training-method.js";
import type { Batch, Batcher } from "../../src/train/data.js";
import { batchLoss, Trainer } from "../../src/train/trainer.js";
import { tinyModel } from "../util/tiny-model.js";

function batch(seed: number): Batch {
  const rng = new Rng(seed);
  const ids = Array.from({ length: 2 * 6 }, () => Math.floor(rng.uniform() * 48));
  return {
    inputs: Int32Array.from(ids),
    targets: Int32Array.from(ids.map((_, i) => ids[(i + 1) % ids.length])),
    batchSize: 2,
    seqLen: 6,
    lengths: Int32Array.from([6, 6]),
    tokens: 12,
    epoch: 0,
  };
}

/** A batcher that repeats a few fixed batches (the Trainer needs only next() and state). */
function repeating(batches: Batch[]): Batcher {
  let i = 0;
  return {
    next: () => batches[i++ % batches.length],
    getState: () => ({}),
    setState: () => {},
  } as unknown as Batcher;
}

/** Every parameter by name, as plain arrays. */
function values(m: { namedParameters(): IterableIterator<[string, { data: ArrayLike<number> }]> }) {
  return Object.fromEntries([...m.namedParameters()].map(([n, p]) => [n, Array.from(p.data)]));
}

const LORA = { r: 2, loraAlpha: 4, targetModules: ["q_proj", "v_proj"] };
const ADALORA = {
  initR: 4,
  targetR: 1,
  tinit: 0,
  tfinal: 0,
  deltaT: 1,
  totalStep: 6,
  targetModules: ["q_proj", "v_proj"],
};

describe("prepareTraining", () => {
  test("full: every parameter trains, no adapter, no dropout RNG", () => {
    const model = tinyModel(1);
    const t = prepareTraining(model, { method: "full" }, { seed: 3 });
    assert.equal(t.trainable, model);
    assert.ok([...model.parameters()].every((p) => p.requiresGrad));
    assert.deepEqual([t.peft, t.adalora, t.gora, t.trainerOptions.rng], [null, null, null, null]);
    assert.equal(finalRanks(t), null);
  });

  test("lora: the adapter getPeftModel makes with the same seed; dropout RNG from seed + 1", () => {
    const t = prepareTraining(tinyModel(1), { method: "lora", config: LORA }, { seed: 3 });
    const direct = getPeftModel(tinyModel(1), LORA, "default", { seed: 3 });
    assert.ok(t.peft);
    assert.equal(t.trainable, t.peft);
    assert.deepEqual(values(t.peft), values(direct));
    assert.deepEqual(t.trainerOptions.rng?.getState(), new Rng(4).getState());
    assert.equal(t.trainerOptions.extraLoss, undefined);
    assert.equal(finalRanks(t), null);
  });

  test("gora: ranks and init of goraInit over the given batches, seeded like the adapter", () => {
    const batches = [batch(1), batch(2)];
    const model = tinyModel(1);
    const spec: TrainingMethodSpec<Batch> = {
      method: "gora",
      config: LORA,
      gora: { minRank: 1, maxRank: 4, gamma: 0.02 },
      batches,
      lossOf: (b) => batchLoss(model, b),
    };
    const t = prepareTraining(model, spec, { seed: 5 });
    const base = tinyModel(1);
    const g = goraInit(base, batches, (b) => batchLoss(base, b), LORA, {
      minRank: 1,
      maxRank: 4,
      gamma: 0.02,
      seed: 5,
    });
    const direct = getPeftModel(base, g.config, "default", { seed: 5, initFor: g.init.initFor });
    assert.ok(t.gora && t.peft);
    assert.deepEqual(t.gora.ranks, g.ranks);
    assert.deepEqual(values(t.peft), values(direct));
    assert.deepEqual(finalRanks(t), Object.fromEntries(g.ranks));
  });

  test("adalora: the Trainer hooks prune to the target budget; the LoRA conversion keeps the outputs", () => {
    const t = prepareTraining(tinyModel(1), { method: "adalora", config: ADALORA }, { seed: 0 });
    const ada = t.adalora as AdaLoraModel;
    assert.ok(
      ada && t.trainerOptions.extraLoss && t.trainerOptions.afterOptimizerStep && t.trainerOptions.extraState,
    );
    assert.equal(t.trainerOptions.rng, ada.rng);
    const opt = new AdamW(ada.trainableParameters(), { lr: 3e-2 });
    const trainer = new Trainer(
      ada,
      repeating([batch(1), batch(2)]),
      opt,
      new LrScheduler(opt, constantScheduleWithWarmup()),
      { steps: 6, ...t.trainerOptions },
    );
    for (const _ of trainer.run());
    const ranks = finalRanks(t)!;
    // targetR 1 over 4 modules (2 layers × q, v): a budget of 4 triplets in all.
    assert.equal(
      Object.values(ranks).reduce((a, b) => a + b, 0),
      4,
    );
    const ids = fromArray(batch(3).inputs, [2, 6]);
    const before = noGrad(() => tidy(() => Array.from(ada.forward(ids).data)));
    const lora = adaLoraAsLora(ada);
    const after = noGrad(() => tidy(() => Array.from(lora.forward(ids).data)));
    for (let i = 0; i < before.length; i++) assert.ok(Math.abs(before[i] - after[i]) < 1e-4, `${i}`);
  });
});

describe("adaLoraResumeState", () => {
  test("save → JSON → load into a fresh model restores the rank pattern, the allocator and the mask", () => {
    const a = prepareTraining(tinyModel(1), { method: "adalora", config: ADALORA }, { seed: 0 });
    const adaA = a.adalora!;
    const opt = new AdamW(adaA.trainableParameters(), { lr: 3e-2 });
    const trainer = new Trainer(
      adaA,
      repeating([batch(1)]),
      opt,
      new LrScheduler(opt, constantScheduleWithWarmup()),
      { steps: 4, ...a.trainerOptions },
    );
    for (const _ of trainer.run());
    const saved = JSON.parse(JSON.stringify(a.trainerOptions.extraState!.save()));

    const b = prepareTraining(tinyModel(1), { method: "adalora", config: ADALORA }, { seed: 0 });
    const adaB = b.adalora!;
    // Non-zero E everywhere, so the mask's zeros show.
    for (const [n, p] of adaB.namedParameters()) if (n.includes("lora_E")) (p.data as Float32Array).fill(1);
    b.trainerOptions.extraState!.load(saved);

    assert.deepEqual(
      adaB.peftConfig.get("default")?.rankPattern,
      adaA.peftConfig.get("default")?.rankPattern,
    );
    assert.deepEqual(adaB.ranks(), adaA.ranks());
    for (const k of ["ipt", "expAvgIpt", "expAvgUnc"] as const)
      assert.deepEqual(adaB.rankAllocator![k], adaA.rankAllocator![k], k);
    const pruned = [...adaA.ranks().values()].reduce((s, r) => s + (4 - r), 0);
    assert.ok(pruned > 0, "the run pruned nothing; the test would not show the mask");
    let zeros = 0;
    for (const [n, p] of adaB.namedParameters())
      if (n.includes("lora_E")) zeros += Array.from(p.data).filter((v) => v === 0).length;
    assert.equal(zeros, pruned);
  });
});
