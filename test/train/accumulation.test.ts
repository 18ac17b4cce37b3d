// Gradient accumulation skips micro-batches with no trained token and averages the rest.
import assert from "node:assert/strict";
import { test } from "node:test";
import { noGrad, tidy } from "../../src/core/index.js";
import { AdamW } from "../../src/optim/adamw.js";
import { constantScheduleWithWarmup, LrScheduler } from "../../src/optim/schedule.js";
import { getPeftModel } from "../../src/peft/model.js";
import type { Batch, Batcher } from "../../src/train/data.js";
import { batchLoss, Trainer } from "../../src/train/trainer.js";
import { tinyModel } from "../util/tiny-model.js";

function batch(targets: number[]): Batch {
  return {
    inputs: Int32Array.from([3, 7, 11, 2]),
    targets: Int32Array.from(targets),
    batchSize: 1,
    seqLen: 4,
    lengths: Int32Array.from([4]),
    tokens: targets.filter((t) => t !== -100).length,
    epoch: 0,
  };
}

test("an empty micro-batch neither dilutes the loss nor the gradient", () => {
  const full = batch([7, 11, 2, 9]);
  const empty = batch([-100, -100, -100, -100]);
  const list = [full, empty];
  let i = 0;
  const stub = { next: () => list[i++ % 2], getState: () => ({}), setState: () => {} } as unknown as Batcher;
  const pm = getPeftModel(tinyModel(8), { r: 2, initLoraWeights: false });
  const want = noGrad(() => tidy(() => batchLoss(pm, full).item()));
  const opt = new AdamW(pm.trainableParameters(), { lr: 0 });
  const trainer = new Trainer(pm, stub, opt, new LrScheduler(opt, constantScheduleWithWarmup()), {
    steps: 1,
    gradAccumulation: 2,
  });
  let loss = Number.NaN;
  for (const ev of trainer.run()) if (ev.type === "step") loss = ev.loss;
  assert.ok(Math.abs(loss - want) < 1e-6, `${loss} vs ${want}`);
});
