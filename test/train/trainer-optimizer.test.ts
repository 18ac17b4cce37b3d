// The Trainer is typed on the Optimizer base, not on AdamW: any optimizer drives it. With
// SGD (no momentum, no clipping) one step moves every trained parameter by −lr·grad, and a
// resumed trainer restores SGD's state through the same checkpoint path as AdamW's.
import assert from "node:assert/strict";
import { test } from "node:test";
import { backward } from "../../src/core/autograd.js";
import { constantScheduleWithWarmup, LrScheduler } from "../../src/optim/schedule.js";
import { SGD } from "../../src/optim/sgd.js";
import { getPeftModel } from "../../src/peft/model.js";
import type { Batch, Batcher } from "../../src/train/data.js";
import { batchLoss, Trainer } from "../../src/train/trainer.js";
import { tinyModel } from "../util/tiny-model.js";

const BATCH: Batch = {
  inputs: Int32Array.from([3, 7, 11, 2, 5, 9]),
  targets: Int32Array.from([7, 11, 2, 5, 9, 4]),
  batchSize: 1,
  seqLen: 6,
  lengths: Int32Array.from([6]),
  tokens: 6,
  epoch: 0,
};
const stub = { next: () => BATCH, getState: () => ({}), setState: () => {} } as unknown as Batcher;

function adapted() {
  return getPeftModel(tinyModel(2), { r: 2, initLoraWeights: false, targetModules: ["q_proj", "v_proj"] });
}

test("Trainer with SGD: one step is p − lr·grad for every trained parameter", () => {
  const lr = 0.1;
  // The expected update, from the same model's gradient taken by hand.
  const ref = adapted();
  backward(batchLoss(ref, BATCH));
  const want = ref.trainableParameters().map((p) => {
    const g = p.grad!.data as Float32Array;
    return Array.from(p.data as Float32Array, (v, i) => Math.fround(v - Math.fround(lr * g[i])));
  });

  const pm = adapted();
  const opt = new SGD(pm.trainableParameters(), { lr });
  const trainer = new Trainer(pm, stub, opt, new LrScheduler(opt, constantScheduleWithWarmup()), {
    steps: 1,
    maxGradNorm: 0,
  });
  for (const _ of trainer.run());
  const got = pm.trainableParameters().map((p) => Array.from(p.data as Float32Array));
  assert.equal(got.length, want.length);
  for (let k = 0; k < got.length; k++)
    for (let i = 0; i < got[k].length; i++)
      assert.ok(Math.abs(got[k][i] - want[k][i]) <= 1e-6, `param ${k}[${i}]: ${got[k][i]} vs ${want[k][i]}`);
});

test("Trainer with SGD momentum: state() → restore() carries the momentum buffers", () => {
  const run = (steps: number) => {
    const pm = adapted();
    const opt = new SGD(pm.trainableParameters(), { lr: 0.05, momentum: 0.9 });
    const t = new Trainer(pm, stub, opt, new LrScheduler(opt, constantScheduleWithWarmup()), { steps });
    return { pm, opt, t };
  };
  const whole = run(3);
  for (const _ of whole.t.run());

  const first = run(3);
  const it = first.t.run();
  let snap = null;
  for (const ev of it)
    if (ev.type === "step" && ev.step === 2) {
      snap = first.t.state();
      break;
    }
  assert.ok(snap);
  const resumed = run(3);
  const live = resumed.pm.trainableParameters();
  const saved = first.pm.trainableParameters();
  for (let i = 0; i < live.length; i++) (live[i].data as Float32Array).set(saved[i].data as Float32Array);
  resumed.t.restore(snap);
  for (const _ of resumed.t.run());
  assert.deepEqual(
    resumed.pm.trainableParameters().map((p) => Array.from(p.data as Float32Array)),
    whole.pm.trainableParameters().map((p) => Array.from(p.data as Float32Array)),
  );
});
