// Checkpoint resume, LoRA+ grouping, clipping behaviour and error messages of src/optim.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Tensor } from "../../src/core/index.js";
import { fromArray, tensor } from "../../src/core/index.js";
import type { OptimizerStateDict } from "../../src/optim/index.js";
import {
  AdamW,
  clipGradNorm,
  cosineScheduleWithWarmup,
  createLoraPlusOptimizer,
  LrScheduler,
  linearScheduleWithWarmup,
  loraPlusGroupOf,
  OptimizerError,
  SGD,
  scheduleByName,
} from "../../src/optim/index.js";
import type { Arr } from "./fixture.js";
import { build, doStep, fixture } from "./fixture.js";

function snapshot(params: Tensor[]): Arr[] {
  return params.map((p) => ({ shape: [...p.shape], data: Array.from(p.data as Float32Array) }));
}

/** The state dict as it would come back from a JSON checkpoint (typed arrays as number lists). */
function viaJson(sd: OptimizerStateDict): OptimizerStateDict {
  return JSON.parse(
    JSON.stringify(sd, (_k, v) =>
      v instanceof Float32Array || v instanceof Float64Array ? Array.from(v) : v,
    ),
  );
}

describe("stateDict / loadStateDict resume exactly", () => {
  for (const run of fixture.runs) {
    for (const transport of ["structuredClone", "JSON"] as const) {
      test(`${run.name}: 10 steps, save, new optimizer, load, 10 more == 20 straight (${transport})`, () => {
        const straight = build(run);
        for (let k = 0; k < 20; k++) doStep(run, k, straight.params, straight.opt, straight.sched);

        const first = build(run);
        for (let k = 0; k < 10; k++) doStep(run, k, first.params, first.opt, first.sched);
        const optState = first.opt.stateDict();
        const schedState = first.sched.stateDict();
        const saved = snapshot(first.params);
        // The saved state is a copy: more steps on the old optimizer do not change it.
        doStep(run, 10, first.params, first.opt, first.sched);

        const second = build(run, saved);
        second.opt.loadStateDict(transport === "JSON" ? viaJson(optState) : structuredClone(optState));
        second.sched.loadStateDict(structuredClone(schedState));
        for (let k = 10; k < 20; k++) doStep(run, k, second.params, second.opt, second.sched);

        for (const [i, p] of second.params.entries())
          assert.deepEqual(Array.from(p.data), Array.from(straight.params[i].data), `param ${i}`);
        assert.deepEqual(second.opt.stateDict(), straight.opt.stateDict());
        assert.deepEqual(second.sched.stateDict(), straight.sched.stateDict());
      });
    }
  }

  test("the state dict maps parameters by index in group order and holds group hyperparameters", () => {
    const a = tensor([1, 2]).setRequiresGrad();
    const b = tensor([3]).setRequiresGrad();
    const c = tensor([4, 5, 6]).setRequiresGrad();
    const opt = new AdamW([
      { params: [a, b], lr: 0.1, name: "first" },
      { params: [c], weightDecay: 0, betas: [0.8, 0.9] },
    ]);
    c.grad = tensor([1, 1, 1]);
    opt.step();
    const sd = opt.stateDict();
    assert.deepEqual(Object.keys(sd.state), ["2"]);
    assert.equal(sd.state[2].step, 1);
    assert.ok(sd.state[2].m instanceof Float32Array);
    assert.deepEqual(sd.paramGroups, [
      { params: [0, 1], lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01, name: "first" },
      { params: [2], lr: 1e-3, betas: [0.8, 0.9], eps: 1e-8, weightDecay: 0 },
    ]);
  });

  test("loading restores group hyperparameters", () => {
    const p = tensor([1, 2]).setRequiresGrad();
    const src = new AdamW([p], { lr: 0.5, weightDecay: 0.2, betas: [0.5, 0.6], eps: 1e-3 });
    const dst = new AdamW([tensor([0, 0]).setRequiresGrad()]);
    dst.loadStateDict(src.stateDict());
    assert.deepEqual(dst.paramGroups[0].betas, [0.5, 0.6]);
    assert.equal(dst.getLr(0), 0.5);
    assert.equal(dst.paramGroups[0].weightDecay, 0.2);
    assert.equal(dst.paramGroups[0].eps, 1e-3);
  });
});

describe("AdamW and SGD behaviour", () => {
  test("parameters without a gradient are skipped (no state, unchanged)", () => {
    const a = tensor([1, 2]).setRequiresGrad();
    const b = tensor([3, 4]).setRequiresGrad();
    const opt = new AdamW([a, b], { lr: 0.1 });
    a.grad = tensor([0.5, -0.5]);
    opt.step();
    assert.deepEqual(b.toArray(), [3, 4]);
    assert.equal(opt.state.has(b), false);
    assert.equal(opt.state.get(a)?.step, 1);
    // First step of Adam moves each coordinate by ≈ lr·sign(g) (plus decay).
    assert.ok(Math.abs(a.toArray()[0] - (1 * (1 - 0.1 * 0.01) - 0.1)) < 1e-6);
    opt.zeroGrad();
    assert.equal(a.grad, null);
  });

  test("f64 parameters keep f64 state", () => {
    const p = fromArray(new Float64Array([1, -1]), [2]).setRequiresGrad();
    const opt = new AdamW([p], { lr: 0.1, weightDecay: 0 });
    p.grad = fromArray(new Float64Array([2, -2]), [2]);
    opt.step();
    assert.ok(opt.state.get(p)?.m instanceof Float64Array);
    // step 1: m̂ = g, v̂ = g², update = lr·g/(|g| + eps)
    assert.ok(Math.abs((p.data[0] as number) - (1 - (0.1 * 2) / (2 + 1e-8))) < 1e-15);
  });

  test("SGD with momentum matches the hand-written recurrence", () => {
    const p = tensor([1]).setRequiresGrad();
    const opt = new SGD([p], { lr: 0.1, momentum: 0.9, dampening: 0.5, weightDecay: 0.1 });
    let x = 1;
    let buf = 0;
    for (let k = 0; k < 3; k++) {
      const g = 0.5 * (k + 1);
      p.grad = tensor([g]);
      opt.step();
      const d = g + 0.1 * x;
      buf = k === 0 ? d : 0.9 * buf + 0.5 * d;
      x -= 0.1 * buf;
      assert.ok(Math.abs(p.toArray()[0] - x) < 1e-6, `step ${k}`);
    }
  });

  test("setLr changes one group; LrScheduler sets base·λ(step)", () => {
    const opt = new AdamW([
      { params: [tensor([1]).setRequiresGrad()], lr: 1 },
      { params: [tensor([1]).setRequiresGrad()], lr: 2 },
    ]);
    opt.setLr(1, 0.25);
    assert.deepEqual(
      opt.paramGroups.map((g) => g.lr),
      [1, 0.25],
    );
    const sched = new LrScheduler(opt, linearScheduleWithWarmup({ numWarmupSteps: 2, numTrainingSteps: 4 }));
    assert.deepEqual(sched.lastLrs(), [0, 0]);
    sched.step();
    assert.deepEqual(sched.lastLrs(), [0.5, 0.125]);
    sched.step();
    assert.deepEqual(sched.lastLrs(), [1, 0.25]);
    assert.ok(
      Math.abs(scheduleByName("cosine", { numWarmupSteps: 0, numTrainingSteps: 10 })(5) - 0.5) < 1e-15,
    );
  });
});

describe("LoRA+ groups (PEFT create_loraplus_optimizer)", () => {
  const L = "base_model.model.model.layers.0.self_attn.q_proj";
  const t = (shape: number[], trainable = true) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return fromArray(new Float32Array(n), shape, "f32").setRequiresGrad(trainable);
  };
  const named: [string, Tensor][] = [
    [`${L}.base_layer.weight`, t([8, 8], false)],
    [`${L}.base_layer.bias`, t([8])],
    [`${L}.lora_A.default.weight`, t([2, 8])],
    [`${L}.lora_B.default.weight`, t([8, 2])],
    [`${L}.lora_magnitude_vector.default.weight`, t([8])],
    ["base_model.model.model.embed_tokens.lora_embedding_A.default", t([2, 16])],
    ["base_model.model.model.embed_tokens.lora_embedding_B.default", t([8, 2])],
    ["base_model.model.model.layers.0.input_layernorm.weight", t([8])],
    ["base_model.model.lm_head.modules_to_save.default.weight", t([16, 8])],
  ];

  test("each name lands in PEFT's group", () => {
    const got = named.map(([n, p]) => loraPlusGroupOf(n, p));
    assert.deepEqual(got, [
      null,
      "groupB_no_decay",
      "groupA",
      "groupB",
      "groupB",
      "embedding",
      "embedding",
      "groupB_no_decay",
      "groupA",
    ]);
  });

  test("B gets lr × ratio (the higher rate), A gets lr, embeddings loraPlusLrEmbedding", () => {
    const tied = named[2];
    const opt = createLoraPlusOptimizer([...named, tied], { lr: 1e-4, weightDecay: 0.05, eps: 1e-7 });
    const byName = Object.fromEntries(opt.paramGroups.map((g) => [g.name, g]));
    assert.deepEqual(
      opt.paramGroups.map((g) => g.name),
      ["groupA", "embedding", "groupB", "groupB_no_decay"],
    );
    assert.equal(byName.groupA.lr, 1e-4);
    assert.equal(byName.groupB.lr, 1e-4 * 16);
    assert.equal(byName.groupB_no_decay.lr, 1e-4 * 16);
    assert.ok(byName.groupB.lr > byName.groupA.lr);
    assert.equal(byName.embedding.lr, 1e-6);
    assert.deepEqual(
      opt.paramGroups.map((g) => g.weightDecay),
      [0.05, 0.05, 0.05, 0],
    );
    assert.deepEqual(
      opt.paramGroups.map((g) => g.params.length),
      [2, 2, 2, 2],
    );
    assert.equal(byName.groupB.params[0], named[3][1]);
    assert.equal(opt.paramGroups[0].eps, 1e-7);
    assert.equal(opt.paramGroups[0].betas[0], 0.9);
  });

  test("custom ratio and embedding lr; no trainable parameter is an error", () => {
    const opt = createLoraPlusOptimizer(named, { lr: 2e-4, loraPlusLrRatio: 4, loraPlusLrEmbedding: 3e-5 });
    assert.deepEqual(
      opt.paramGroups.map((g) => g.lr),
      [2e-4, 3e-5, 8e-4, 8e-4],
    );
    assert.throws(
      () => createLoraPlusOptimizer([named[0]], { lr: 1e-4 }),
      (e: Error) => e instanceof OptimizerError && /no parameter has requiresGrad/.test(e.message),
    );
    assert.throws(
      () => createLoraPlusOptimizer(named, { lr: 1e-4, loraPlusLrRatio: 0 }),
      /loraPlusLrRatio must be a finite number > 0, got 0/,
    );
  });
});

describe("clipGradNorm", () => {
  test("returns the total norm and scales to maxNorm", () => {
    const a = tensor([0, 0]).setRequiresGrad();
    const b = tensor([0]).setRequiresGrad();
    a.grad = tensor([3, 0]);
    b.grad = tensor([4]);
    const n = clipGradNorm([a, b], 1);
    assert.equal(n, 5);
    const c = 1 / (5 + 1e-6);
    assert.ok(Math.abs(a.grad.toArray()[0] - 3 * c) < 1e-7);
    assert.ok(Math.abs(b.grad.toArray()[0] - 4 * c) < 1e-7);
  });

  test("leaves gradients under maxNorm alone; no grads gives 0", () => {
    const a = tensor([0, 0]).setRequiresGrad();
    a.grad = tensor([0.3, 0.4]);
    assert.ok(Math.abs(clipGradNorm([a], 1) - 0.5) < 1e-7);
    assert.deepEqual(a.grad.toArray(), [Math.fround(0.3), Math.fround(0.4)]);
    assert.equal(clipGradNorm([tensor([1]).setRequiresGrad()], 1), 0);
  });

  test("a non-finite norm is returned as is and the gradients are left untouched", () => {
    const a = tensor([0, 0]).setRequiresGrad();
    a.grad = tensor([Number.POSITIVE_INFINITY, 1]);
    assert.equal(clipGradNorm([a], 1), Number.POSITIVE_INFINITY);
    assert.deepEqual(a.grad.toArray(), [Number.POSITIVE_INFINITY, 1]);
    a.grad = tensor([Number.NaN, 100]);
    assert.ok(Number.isNaN(clipGradNorm([a], 1)));
    assert.ok(Number.isNaN(clipGradNorm([a], 1, Number.POSITIVE_INFINITY)));
    assert.equal(a.grad.toArray()[1], 100);
  });
});

describe("errors name the thing and the value", () => {
  const p = () => tensor([1, 2]).setRequiresGrad();
  const cases: [string, () => unknown, RegExp][] = [
    [
      "AdamW negative lr",
      () => new AdamW([p()], { lr: -1 }),
      /AdamW: lr must be a finite number ≥ 0, got -1 \(group 0\)/,
    ],
    [
      "AdamW group lr NaN names the group",
      () => new AdamW([{ params: [p()] }, { params: [p()], lr: Number.NaN, name: "groupB" }]),
      /lr must be a finite number ≥ 0, got NaN \(group 1 \("groupB"\)\)/,
    ],
    ["AdamW beta2 = 1", () => new AdamW([p()], { betas: [0.9, 1] }), /betas\[1\] must be in \[0, 1\), got 1/],
    [
      "AdamW negative eps",
      () => new AdamW([p()], { eps: -1e-8 }),
      /eps must be a finite number ≥ 0, got -1e-8/,
    ],
    [
      "AdamW negative weight decay",
      () => new AdamW([p()], { weightDecay: -0.1 }),
      /weightDecay must be a finite number ≥ 0, got -0.1/,
    ],
    ["empty parameter list", () => new AdamW([]), /AdamW: got an empty parameter list/],
    [
      "a parameter twice",
      () => {
        const x = p();
        return new AdamW([{ params: [x] }, { params: [x] }]);
      },
      /appears more than once \(again in group 1\)/,
    ],
    [
      "mixed tensors and groups",
      () => new AdamW([p(), { params: [p()] }] as unknown as Tensor[]),
      /mixes tensors and \{params: \[\.\.\.\]\} groups/,
    ],
    [
      "integer parameter",
      () => new AdamW([tensor([1, 2], [2], "i32")]),
      /is i32; only f32\/f64 tensors can be optimized/,
    ],
    [
      "SGD nesterov without momentum",
      () => new SGD([p()], { lr: 0.1, nesterov: true }),
      /Nesterov momentum requires momentum > 0 and dampening = 0, got momentum 0/,
    ],
    ["SGD negative momentum", () => new SGD([p()], { momentum: -0.9 }), /SGD: momentum must be .* got -0.9/],
    [
      "gradient of the wrong size",
      () => {
        const x = p();
        const o = new AdamW([x]);
        x.grad = tensor([1, 2, 3]);
        o.step();
      },
      /the gradient of #\d+ in group 0 has 3 elements but the parameter has 2/,
    ],
    [
      "gradient of another dtype",
      () => {
        const x = p();
        const o = new SGD([x]);
        x.grad = fromArray(new Float64Array(2), [2]);
        o.step();
      },
      /gradient of #\d+ in group 0 is f64 but the parameter is f32/,
    ],
    ["setLr negative", () => new AdamW([p()]).setLr(0, -1e-3), /lr must be a finite number ≥ 0, got -0.001/],
    ["setLr missing group", () => new AdamW([p()]).setLr(3, 1e-3), /there is no parameter group 3; it has 1/],
    [
      "loadStateDict with other groups",
      () => new AdamW([p()]).loadStateDict(new AdamW([{ params: [p()] }, { params: [p()] }]).stateDict()),
      /the state dict has 2 parameter groups but this optimizer has 1/,
    ],
    [
      "loadStateDict with other shapes",
      () => {
        const x = tensor([1, 2, 3]).setRequiresGrad();
        const o = new AdamW([x]);
        x.grad = tensor([1, 1, 1]);
        o.step();
        new AdamW([p()]).loadStateDict(o.stateDict());
      },
      /"m" of parameter index 0 has 3 elements but the parameter #\d+ has 2/,
    ],
    [
      "scheduler lambdas per group",
      () => new LrScheduler(new AdamW([p()]), [() => 1, () => 1]),
      /got 2 lr lambdas for 1 parameter groups/,
    ],
    [
      "schedule with negative warm-up",
      () => cosineScheduleWithWarmup({ numWarmupSteps: -1, numTrainingSteps: 10 }),
      /cosineScheduleWithWarmup: numWarmupSteps must be an integer ≥ 0, got -1/,
    ],
    [
      "unknown schedule",
      () => scheduleByName("poly" as "linear", { numTrainingSteps: 1 }),
      /unknown schedule "poly"; choose one of constant, linear, cosine/,
    ],
    ["clip negative maxNorm", () => clipGradNorm([p()], -1), /maxNorm must be a number ≥ 0, got -1/],
    ["clip normType 0", () => clipGradNorm([p()], 1, 0), /normType must be a number > 0 or Infinity, got 0/],
  ];
  for (const [name, fn, re] of cases)
    test(name, () => {
      assert.throws(fn, (e: Error) => {
        assert.ok(e instanceof OptimizerError, `${name}: ${e.name} is not an OptimizerError: ${e.message}`);
        assert.match(e.message, re);
        return true;
      });
    });
});
