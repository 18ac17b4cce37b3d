// GoRA against scripts/fixtures/make_adalora_gora_fixtures.py (a PyTorch restatement of the
// official gora.py: compute_importance, get_allocated_rank, grad_compress_init), then
// goraInit end to end on a small model: the mean gradient of the frozen weights, the
// allocation, B from the gradient, and a LoRA adapter built from the result.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { add, mul, sum } from "../../src/core/ops/index.js";
import { Rng, randNormal } from "../../src/core/rng.js";
import type { Tensor } from "../../src/core/tensor.js";
import { Linear } from "../../src/nn/layers.js";
import { Module } from "../../src/nn/module.js";
import { allocateRanks, roundHalfEven } from "../../src/peft/gora/allocate.js";
import { goraInit } from "../../src/peft/gora/gora.js";
import type { GoraImportanceType } from "../../src/peft/gora/importance.js";
import { goraImportance } from "../../src/peft/gora/importance.js";
import { goraInitB } from "../../src/peft/gora/init.js";
import { getPeftModel } from "../../src/peft/model.js";

const FIX = JSON.parse(
  readFileSync(new URL("../../../test/fixtures/adalora/gora.json", import.meta.url), "utf8"),
);

interface FixLayer {
  in: number;
  out: number;
  W: number[];
  grads: number[][];
  A: number[];
  B: number[];
  r: number;
}
const LAYERS = FIX.layers as Record<string, FixLayer>;

function meanGrad(l: FixLayer): Float32Array {
  // torch: (g1 + g2) / 2 in f32
  return Float32Array.from(l.grads[0], (g, i) => Math.fround(Math.fround(g + l.grads[1][i]) / 2));
}

function close(
  actual: ArrayLike<number>,
  expected: readonly number[],
  what: string,
  rtol = 1e-5,
  atol = 1e-8,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++)
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= atol + rtol * Math.abs(expected[i]),
      `${what}[${i}]: ${actual[i]} vs ${expected[i]}`,
    );
}

test("roundHalfEven is Python's round", () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, 0, 2, 3]);
});

for (const type of ["union_frobenius_norm", "union_mean"] as GoraImportanceType[]) {
  test(`GoRA importance (${type}) and allocation equal the reference`, () => {
    const ref = FIX[type];
    const infos = Object.entries(LAYERS).map(([name, l]) => {
      const imp = goraImportance(l.W, meanGrad(l), type);
      close([imp], [ref.importance[name]], `importance ${name}`, 1e-5);
      return { name, importance: imp, inFeatures: l.in, outFeatures: l.out };
    });
    const a = allocateRanks(infos, { refRank: FIX.lora_rank, minRank: FIX.min_rank, maxRank: FIX.max_rank });
    assert.deepEqual(Object.fromEntries(a.ranks), ref.ranks);
    assert.equal(a.totalBudget, ref.total_budget);
    assert.equal(a.actualTrainable, ref.actual_trainable);
  });
}

test("GoRA B = G·Aᵀ·(A·Aᵀ)⁻¹·γ/α equals the reference's grad_compress_init", () => {
  for (const [name, l] of Object.entries(LAYERS)) {
    const B = goraInitB(l.A, meanGrad(l), l.r, l.in, l.out, FIX.gamma, FIX.alpha);
    close(B, l.B, `B ${name}`, 1e-4, 1e-8);
  }
});

class Node extends Module {
  add(name: string, m: Module): this {
    this.addModule(name, m);
    return this;
  }
}

/** Two "layers" with q_proj and v_proj; forward sums the projections of x. */
class Tiny extends Module {
  readonly config = { modelType: "tiny" };
  constructor() {
    super();
    const rng = new Rng(11);
    const layers = new Node();
    for (let i = 0; i < 2; i++)
      layers.add(
        String(i),
        new Node().add("q_proj", new Linear(6, 6, { rng })).add("v_proj", new Linear(6, 6, { rng })),
      );
    this.addModule("layers", layers);
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (let i = 0; i < 2; i++) {
      const q = this.getSubmodule(`layers.${i}.q_proj`) as Linear;
      const v = this.getSubmodule(`layers.${i}.v_proj`) as Linear;
      h = add(q.forward(h), v.forward(h));
    }
    return h;
  }
}

test("goraInit: mean gradient of the frozen weights, allocation, B from it; flags restored", () => {
  const model = new Tiny();
  const rng = new Rng(4);
  const batches = [0, 1, 2].map(() => randNormal(rng, [3, 6]));
  const c = randNormal(new Rng(9), [3, 6]);
  const lossOf = (x: Tensor) => sum(mul(model.forward(x), c));
  const before = model.parameters().map((p) => p.requiresGrad);
  const g = goraInit(
    model,
    batches,
    lossOf,
    { r: 2, loraAlpha: 4, targetModules: ["q_proj", "v_proj"] },
    { seed: 1 },
  );
  assert.deepEqual(
    model.parameters().map((p) => p.requiresGrad),
    before,
  );
  assert.ok(model.parameters().every((p) => p.grad === null));
  // The last layer's v_proj: dL/dW = cᵀ·h_in, mean over the 3 batches — check via importance grad_mean by finite differences of the mean loss.
  const W = (model.getSubmodule("layers.1.v_proj") as Linear).weight;
  const meanLoss = () => batches.reduce((a, x) => a + lossOf(x).item(), 0) / batches.length;
  const eps = 1e-2;
  const w = W.data as Float32Array;
  const fd = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const o = w[i];
    w[i] = o + eps;
    const lp = meanLoss();
    w[i] = o - eps;
    const lm = meanLoss();
    w[i] = o;
    fd[i] = (lp - lm) / (2 * eps);
  }
  const imp = g.importances.get("layers.1.v_proj")!;
  close(
    [imp],
    [goraImportance(w, fd, "union_frobenius_norm")],
    "importance from the accumulated gradient",
    2e-3,
  );
  const infos = [...g.importances].map(([name, importance]) => ({
    name,
    importance,
    inFeatures: 6,
    outFeatures: 6,
  }));
  assert.deepEqual(g.ranks, allocateRanks(infos, { refRank: 2 }).ranks);
  assert.equal(g.totalBudget, 4 * 12 * 2);
  const peft = getPeftModel(model, g.config, "default", g.init);
  for (const [path, l] of peft.loraLayers()) {
    const r = g.ranks.get(path)!;
    assert.equal(l.r.get("default"), r);
    // every layer keeps the reference scale α/r_ref
    assert.ok(Math.abs(l.scaling.get("default")! - 4 / 2) < 1e-12);
  }
  // B came from the gradient: B·A ≈ G·(γ/α) projected on A's rows, so it is not zero.
  const l0 = [...peft.loraLayers()][0][1];
  assert.ok((l0.lora_B.get("default")!.weight.data as Float32Array).some((v) => v !== 0));
  const out = peft.forward(batches[0]);
  assert.ok((out.data as Float32Array).every(Number.isFinite));
});
