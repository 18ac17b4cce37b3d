// DoRA and PiSSA against PyTorch (scripts/fixtures/make_dora_pissa_fixtures.py, which
// writes PEFT's formulas out on plain tensors): DoRA's forward, gradients and merge; PiSSA's
// factors (up to the sign of each singular pair) and residual; the rank-2r conversion of a
// trained PiSSA adapter into a plain LoRA adapter for the original base. Plus checks with
// no PyTorch in them: finite differences of DoRA's gradient under the detached-norm rule,
// DoRA's dropout rule, the randomised PiSSA, bf16 bases, and the DoRA file format.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { Tensor } from "../../src/core/index.js";
import {
  backward,
  crossEntropy,
  fromArray,
  linear,
  noGrad,
  Rng,
  reshape,
  tensor,
} from "../../src/core/index.js";
import { dropout } from "../../src/core/ops/nn.js";
import { Linear } from "../../src/nn/layers.js";
import { Module } from "../../src/nn/module.js";
import { adapterStateDict, loadAdapterTensors } from "../../src/peft/format.js";
import { DoraVariant } from "../../src/peft/lora/dora.js";
import { LoraLinear, loraScale } from "../../src/peft/lora/layer.js";
import { convertPissaToLora, initialAdapterState, pissaFactors } from "../../src/peft/lora/pissa.js";
import { getPeftModel, PeftModel } from "../../src/peft/model.js";
import { fromPretrained, savePretrained } from "../../src/peft/node/io.js";
import { repoRoot } from "../util/repo.js";
import { tinyModel } from "../util/tiny-model.js";

const FIX = join(repoRoot(), "test/fixtures/dora");
const fixture = (name: string) => JSON.parse(readFileSync(join(FIX, name), "utf8"));

type Nested = number | Nested[];
const flat = (a: Nested): number[] => (Array.isArray(a) ? a.flatMap(flat) : [a]);
const f32 = (a: Nested) => Float32Array.from(flat(a));
const shapeOf = (a: Nested): number[] => (Array.isArray(a) ? [a.length, ...shapeOf(a[0])] : []);
const t32 = (a: Nested) => fromArray(f32(a), shapeOf(a), "f32");

/** max |got − want| / max(1, max |want|). */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length, "length");
  let d = 0;
  let s = 1;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i] - want[i]));
    s = Math.max(s, Math.abs(want[i]));
  }
  return d / s;
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  const e = relErr(got, want);
  assert.ok(e < tol, `${what}: relative error ${e.toExponential(2)} ≥ ${tol}`);
}

/** A model with one linear layer "proj" (the smallest BaseModel). */
class OneLinear extends Module {
  proj: Linear;
  constructor(W: Tensor, bias: Tensor | null) {
    super();
    this.proj = this.addModule("proj", new Linear(W.shape[1], W.shape[0], { weight: W, biasTensor: bias }));
    for (const p of this.parameters()) p.requiresGrad = false;
  }
  protected override onChildSet(name: string, m: Module): void {
    if (name === "proj") this.proj = m as Linear;
  }
  forward(x: Tensor): Tensor {
    return this.proj.forward(x);
  }
}

interface DoraCase {
  name: string;
  in_features: number;
  out_features: number;
  r: number;
  lora_alpha: number;
  use_rslora: boolean;
  scaling: number;
  W: Nested;
  bias: Nested | null;
  A: Nested;
  B: Nested;
  m_init: Nested;
  m: Nested;
  x: Nested;
  grad_output: Nested;
  y: Nested;
  grad_A: Nested;
  grad_B: Nested;
  grad_m: Nested;
  grad_x: Nested;
  W_merged: Nested;
}

function doraLayer(c: DoraCase, variant = new DoraVariant()): LoraLinear {
  const layer = new LoraLinear(
    new Linear(c.in_features, c.out_features, { weight: t32(c.W), biasTensor: c.bias ? t32(c.bias) : null }),
  );
  layer.addAdapter("default", {
    r: c.r,
    alpha: c.lora_alpha,
    dropout: 0,
    useRslora: c.use_rslora,
    loraBias: false,
    A: t32(c.A).setRequiresGrad(),
    B: t32(c.B).setRequiresGrad(),
    variant,
  });
  layer.activeAdapters = ["default"];
  return layer;
}

const mag = (l: LoraLinear, n = "default") => l.lora_magnitude_vector.get(n)!.weight;

/** sum(y ⊙ g) through the layer, with gradients on A, B, m and x. */
function lossAndGrads(layer: LoraLinear, x: Float32Array, xShape: number[], g: Float32Array) {
  const xt = fromArray(Float32Array.from(x), xShape, "f32").setRequiresGrad();
  const A = layer.lora_A.get("default")!.weight;
  const B = layer.lora_B.get("default")!.weight;
  const m = mag(layer);
  for (const p of [A, B, m]) p.grad = null;
  const y = layer.forward(xt);
  backward(y, fromArray(Float32Array.from(g), y.shape, "f32"));
  let loss = 0;
  for (let i = 0; i < g.length; i++) loss += y.data[i] * g[i];
  return {
    y: Float32Array.from(y.data as Float32Array),
    loss,
    gA: Float32Array.from(A.grad!.data),
    gB: Float32Array.from(B.grad!.data),
    gm: Float32Array.from(m.grad!.data),
    gx: Float32Array.from(xt.grad!.data),
  };
}

function lossOnly(layer: LoraLinear, x: Float32Array, xShape: number[], g: Float32Array): number {
  return noGrad(() => {
    const y = layer.forward(fromArray(Float32Array.from(x), xShape, "f32")).data;
    let s = 0;
    for (let i = 0; i < g.length; i++) s += y[i] * g[i];
    return s;
  });
}

describe("DoRA vs PyTorch (PEFT's DoraLinearLayer)", () => {
  const { cases } = fixture("dora.json") as { cases: DoraCase[] };
  for (const c of cases)
    test(c.name, () => {
      const layer = doraLayer(c);
      assert.equal(layer.scaling.get("default"), c.scaling);
      // m initialised to ‖W + s·B·A‖ per output row.
      close(mag(layer).data, f32(c.m_init), 1e-6, "m init");
      mag(layer).data.set(f32(c.m));
      mag(layer).setRequiresGrad();
      const r = lossAndGrads(layer, f32(c.x), shapeOf(c.x), f32(c.grad_output));
      close(r.y, f32(c.y), 1e-5, "forward");
      close(r.gA, f32(c.grad_A), 1e-5, "dL/dA");
      close(r.gB, f32(c.grad_B), 1e-5, "dL/dB");
      close(r.gm, f32(c.grad_m), 1e-5, "dL/dm");
      close(r.gx, f32(c.grad_x), 1e-5, "dL/dx");
      // Merge as PEFT: W' = m/‖W + ΔW‖ · (W + ΔW); unmerge restores W.
      layer.merge();
      close(layer.baseWeight.data, f32(c.W_merged), 1e-6, "merged weight");
      const merged = noGrad(() => layer.forward(t32(c.x)).data);
      close(merged, f32(c.y), 1e-5, "merged forward");
      layer.unmerge();
      close(layer.baseWeight.data, f32(c.W), 1e-6, "unmerged weight");
    });
});

describe("DoRA gradient: finite differences under the detached-norm rule", () => {
  const c = (fixture("dora.json") as { cases: DoraCase[] }).cases[0];
  // DoRA §4.3: ‖W + s·B·A‖ is a constant for backprop. Freeze it at the base point and
  // the loss is linear in each of A, B, m and x, so central differences are exact up to
  // rounding and must equal the autograd gradient.
  class FrozenNorm extends DoraVariant {
    frozen: Float32Array | null = null;
    override weightNorm(layer: LoraLinear, name: string): Float32Array {
      return this.frozen ?? super.weightNorm(layer, name);
    }
  }
  const x = f32(c.x);
  const xs = shapeOf(c.x);
  const g = f32(c.grad_output);
  const EPS = 0.05;

  function fd(layer: LoraLinear, arr: Float32Array, i: number, input: Float32Array = x): number {
    const keep = arr[i];
    arr[i] = keep + EPS;
    const up = lossOnly(layer, input, xs, g);
    arr[i] = keep - EPS;
    const down = lossOnly(layer, input, xs, g);
    arr[i] = keep;
    return (up - down) / (2 * EPS);
  }

  test("A, B, m and x match central differences with the norm held constant", () => {
    const v = new FrozenNorm();
    const layer = doraLayer(c, v);
    mag(layer).data.set(f32(c.m));
    mag(layer).setRequiresGrad();
    const auto = lossAndGrads(layer, x, xs, g);
    v.frozen = v.weightNorm(layer, "default").slice();
    const A = layer.lora_A.get("default")!.weight.data as Float32Array;
    const B = layer.lora_B.get("default")!.weight.data as Float32Array;
    const m = mag(layer).data as Float32Array;
    const xc = Float32Array.from(x);
    const checks: [string, Float32Array, Float32Array, Float32Array | undefined][] = [
      ["A", A, auto.gA, undefined],
      ["B", B, auto.gB, undefined],
      ["m", m, auto.gm, undefined],
      ["x", xc, auto.gx, xc],
    ];
    for (const [what, arr, grad, input] of checks) {
      const num = Array.from(arr, (_, i) => fd(layer, arr, i, input ?? x));
      close(num, grad, 2e-4, `d/d${what}`);
    }
  });

  test("without the freeze, the true derivative differs: the norm gets no gradient", () => {
    const layer = doraLayer(c);
    mag(layer).data.set(f32(c.m));
    mag(layer).setRequiresGrad();
    const auto = lossAndGrads(layer, x, xs, g);
    const A = layer.lora_A.get("default")!.weight.data as Float32Array;
    const num = Array.from(A, (_, i) => fd(layer, A, i));
    assert.ok(relErr(num, auto.gA) > 1e-2, "the autograd gradient leaves out the norm's dependence on A");
    // m and x do not enter the norm: their gradients are exact.
    const m = mag(layer).data as Float32Array;
    close(
      Array.from(m, (_, i) => fd(layer, m, i)),
      auto.gm,
      2e-4,
      "d/dm",
    );
  });
});

describe("DoRA layer rules", () => {
  const c = (fixture("dora.json") as { cases: DoraCase[] }).cases[0];

  test("B = 0: m = ‖W‖ and the output is the base layer's, exactly", () => {
    const layer = doraLayer({ ...c, B: zerosLike(c.B) });
    const x = t32(c.x);
    const base = noGrad(() => layer.base_layer.forward(x).data);
    const y = noGrad(() => layer.forward(x).data);
    assert.deepEqual(Array.from(y), Array.from(base));
  });

  test("dropout as PEFT: the base part is recomputed on the dropped-out input", () => {
    const p = 0.4;
    const layer = doraLayer(c);
    layer.dropoutP.set("default", p);
    mag(layer).data.set(f32(c.m));
    layer.rng = new Rng(11);
    layer.train();
    const state = layer.rng.getState();
    const x = t32(c.x);
    const y = noGrad(() => layer.forward(x).data);
    // The same mask, replayed from the same generator state.
    const rng = new Rng(0);
    rng.setState(state);
    const xd = noGrad(() => dropout(x, p, rng));
    const W = t32(c.W);
    const b = t32(c.bias!);
    const s = c.scaling;
    const norm = new DoraVariant().weightNorm(layer, "default");
    const m = f32(c.m);
    const full = noGrad(() => linear(x, W, b).data);
    const baseD = noGrad(() => linear(xd, W).data);
    const lora = noGrad(
      () => linear(linear(xd, layer.lora_A.get("default")!.weight), layer.lora_B.get("default")!.weight).data,
    );
    const out = c.out_features;
    const want = Array.from(full, (v, i) => {
      const k = m[i % out] / norm[i % out];
      return v + (k - 1) * baseD[i] + k * lora[i] * s;
    });
    close(y, want, 1e-5, "dropout forward");
    // In eval mode dropout is off and the output is the merged layer's.
    layer.eval();
    const evalY = noGrad(() => layer.forward(x).data);
    layer.merge();
    close(
      noGrad(() => layer.forward(x).data),
      evalY,
      1e-5,
      "eval = merged",
    );
  });

  test("lora_bias is refused with PEFT's message", () => {
    assert.throws(
      () => getPeftModel(tinyModel(1), { r: 2, useDora: true, loraBias: true }),
      /lora_bias=True is not supported for DoRA/,
    );
  });
});

function zerosLike(a: Nested): Nested {
  return Array.isArray(a) ? a.map(zerosLike) : 0;
}

describe("DoRA in a PeftModel", () => {
  test("a backward pass reaches A, B and m; the trainable count includes m", () => {
    const pm = getPeftModel(tinyModel(1), {
      r: 2,
      targetModules: ["q_proj"],
      useDora: true,
      initLoraWeights: false,
    });
    const { trainable } = pm.countParameters();
    // q_proj 32→32 in 2 layers: A 2×32 + B 32×2 + m 32.
    assert.equal(trainable, 2 * (64 + 64 + 32));
    const ids = tensor([[3, 7, 11, 2, 9, 1]], [1, 6], "i32");
    const logits = pm.forward(ids);
    const loss = crossEntropy(reshape(logits, [6, 48]), tensor([7, 11, 2, 9, 1, 4], [6], "i32"));
    backward(loss);
    for (const p of pm.trainableParameters()) {
      assert.ok(p.grad, `${p.name} has a gradient`);
      assert.ok(
        Array.from(p.grad.data).some((v) => v !== 0),
        `${p.name}: non-zero gradient`,
      );
    }
  });
});

describe("DoRA in the PEFT format", () => {
  test("saved as base_model.model.<path>.lora_magnitude_vector with use_dora: true; loaded back", () => {
    const pm = getPeftModel(tinyModel(1), { r: 2, useDora: true, initLoraWeights: false }, "default", {
      seed: 3,
    });
    // m trains with A and B.
    const mags = [...pm.loraLayers()].map(([, l]) => mag(l));
    assert.equal(mags.length, 4);
    for (const m of mags) {
      assert.equal(m.requiresGrad, true);
      for (let i = 0; i < m.size; i++) m.data[i] *= 1 + 0.01 * (i % 5);
    }
    const names = [...pm.namedParameters()].map(([p]) => p);
    assert.ok(
      names.includes("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector.default.weight"),
    );
    const sd = adapterStateDict(pm, "default");
    const key = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector";
    assert.ok(sd.has(key), `PEFT's key ${key}`);
    assert.deepEqual(sd.get(key)!.shape, [32]);
    assert.ok(![...sd.keys()].some((k) => k.endsWith("lora_magnitude_vector.weight")));

    const ids = tensor([[3, 7, 11, 2, 9]], [1, 5], "i32");
    const want = noGrad(() => Float32Array.from(pm.forward(ids).data));
    const dir = mkdtempSync(join(tmpdir(), "lorakit-dora-"));
    savePretrained(pm, dir);
    const cfg = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
    assert.equal(cfg.use_dora, true);
    const loaded = fromPretrained(tinyModel(1), dir, { isTrainable: true });
    assert.deepEqual(
      noGrad(() => Array.from(loaded.forward(ids).data)),
      Array.from(want),
    );
    assert.equal(mag([...loaded.loraLayers()][0][1]).requiresGrad, true);

    // A magnitude with use_dora false, or use_dora without magnitudes, is refused.
    const noDora = { ...pm.peftConfig.get("default")!, useDora: false };
    assert.throws(
      () => loadAdapterTensors(new PeftModel(tinyModel(1)), "x", noDora, sd),
      /lora_magnitude_vector is a DoRA magnitude but the config has use_dora: false/,
    );
    const withoutMag = new Map([...sd].filter(([k]) => !k.includes("magnitude")));
    const target = new PeftModel(tinyModel(1));
    assert.throws(
      () => loadAdapterTensors(target, "x", pm.peftConfig.get("default")!, withoutMag),
      /missing .*lora_magnitude_vector/,
    );
    assert.equal(target.peftConfig.size, 0);
  });
});

interface PissaCase {
  name: string;
  in_features: number;
  out_features: number;
  r: number;
  lora_alpha: number;
  use_rslora: boolean;
  scaling: number;
  W: Nested;
  S: Nested;
  A: Nested;
  B: Nested;
  residual: Nested;
}

/**
 * Compares PiSSA factors up to the sign of each singular pair: component k is A's row k
 * and B's column k, which flip together (B·A is unchanged).
 */
function closeUpToSign(
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  wantA: ArrayLike<number>,
  wantB: ArrayLike<number>,
  r: number,
  tol: number,
): void {
  const inF = A.length / r;
  const out = B.length / r;
  const a = Float64Array.from(A);
  const b = Float64Array.from(B);
  for (let k = 0; k < r; k++) {
    let dot = 0;
    for (let i = 0; i < inF; i++) dot += a[k * inF + i] * wantA[k * inF + i];
    if (dot < 0) {
      for (let i = 0; i < inF; i++) a[k * inF + i] = -a[k * inF + i];
      for (let o = 0; o < out; o++) b[o * r + k] = -b[o * r + k];
    }
  }
  close(a, wantA, tol, "A (up to sign)");
  close(b, wantB, tol, "B (up to sign)");
}

describe("PiSSA vs PyTorch (PEFT's pissa_init)", () => {
  const { cases } = fixture("pissa.json") as { cases: PissaCase[] };
  for (const c of cases)
    test(c.name, () => {
      assert.ok(Math.abs(loraScale(c.lora_alpha, c.r, c.use_rslora) - c.scaling) < 1e-12);
      const f = pissaFactors(f32(c.W), c.out_features, c.in_features, c.r, c.scaling);
      closeUpToSign(f.A, f.B, f32(c.A), f32(c.B), c.r, 1e-5);
      close(f.residual, f32(c.residual), 1e-5, "residual");
      // residual + s·B·A = W.
      const W = f32(c.W);
      for (let o = 0; o < c.out_features; o++)
        for (let i = 0; i < c.in_features; i++) {
          let acc = 0;
          for (let k = 0; k < c.r; k++) acc += f.B[o * c.r + k] * f.A[k * c.in_features + i];
          const j = o * c.in_features + i;
          assert.ok(Math.abs(f.residual[j] + c.scaling * acc - W[j]) < 1e-5);
        }
      // The same through getPeftModel on a one-layer model: the base weight becomes the residual.
      const pm = getPeftModel(new OneLinear(t32(c.W), null), {
        r: c.r,
        loraAlpha: c.lora_alpha,
        useRslora: c.use_rslora,
        targetModules: ["proj"],
        initLoraWeights: "pissa",
      });
      const layer = [...pm.loraLayers()][0][1];
      close(layer.baseWeight.data, f32(c.residual), 1e-5, "residual in the model");
      closeUpToSign(
        layer.lora_A.get("default")!.weight.data,
        layer.lora_B.get("default")!.weight.data,
        f32(c.A),
        f32(c.B),
        c.r,
        1e-5,
      );
    });
});

describe("PiSSA rules", () => {
  test("pissa_niter_N (randomised SVD) finds the same factors when the spectrum has a gap", () => {
    // W = U·diag(9, 6, 4, small…)·Vᵀ from a seeded random orthogonal pair.
    const out = 12;
    const inF = 10;
    const rng = new Rng(4);
    const W = new Float32Array(out * inF);
    const sv = [9, 6, 4, 0.05, 0.04, 0.03, 0.02, 0.01];
    const us = sv.map(() => randomUnit(rng, out));
    const vs = sv.map(() => randomUnit(rng, inF));
    orthonormalise(us);
    orthonormalise(vs);
    sv.forEach((s, k) => {
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) W[o * inF + i] += s * us[k][o] * vs[k][i];
    });
    const exact = pissaFactors(W, out, inF, 3, 2);
    const fast = pissaFactors(W, out, inF, 3, 2, { niter: 4, seed: 1 });
    closeUpToSign(fast.A, fast.B, exact.A, exact.B, 3, 1e-4);
    close(fast.residual, exact.residual, 1e-4, "residual");
    // Through the config string.
    const pm = getPeftModel(new OneLinear(fromArray(Float32Array.from(W), [out, inF], "f32"), null), {
      r: 3,
      loraAlpha: 6,
      targetModules: ["proj"],
      initLoraWeights: "pissa_niter_4",
    });
    const layer = [...pm.loraLayers()][0][1];
    close(layer.baseWeight.data, exact.residual, 1e-4, "pissa_niter_4 residual");
  });

  test("at init the model equals the base; a bf16 base weight becomes an f32 residual", () => {
    const ids = tensor([[3, 7, 11, 2, 9, 1]], [1, 6], "i32");
    const base = tinyModel(1);
    const q = base.getSubmodule("model.layers.0.self_attn.q_proj");
    q.setParam("weight", q.param("weight")!.to("bf16"));
    const want = noGrad(() => Float32Array.from(base.forward(ids).data));
    const pm = getPeftModel(base, {
      r: 4,
      loraAlpha: 8,
      targetModules: ["q_proj", "v_proj"],
      initLoraWeights: "pissa",
    });
    for (const [, l] of pm.loraLayers()) assert.equal(l.baseWeight.dtype, "f32");
    close(
      noGrad(() => pm.forward(ids).data),
      want,
      1e-5,
      "PiSSA at init = base model",
    );
    // A and B train; the residual does not.
    const l = [...pm.loraLayers()][0][1];
    assert.equal(l.lora_A.get("default")!.weight.requiresGrad, true);
    assert.equal(l.baseWeight.requiresGrad, false);
  });

  test("r above min(out, in) is refused by name", () => {
    assert.throws(() => pissaFactors(new Float32Array(12), 3, 4, 4, 1), /r = 4 exceeds min\(out, in\) = 3/);
  });

  test("loading a saved PiSSA adapter never re-runs the decomposition", () => {
    const pm = getPeftModel(tinyModel(2), { r: 2, targetModules: ["q_proj"], initLoraWeights: "pissa" });
    const dir = mkdtempSync(join(tmpdir(), "lorakit-pissa-"));
    savePretrained(pm, dir);
    const residualBase = getPeftModel(tinyModel(2), {
      r: 2,
      targetModules: ["q_proj"],
      initLoraWeights: "pissa",
    }).unload();
    const w0 = Float32Array.from(
      residualBase.getSubmodule("model.layers.0.self_attn.q_proj").param("weight")!.data,
    );
    const loaded = fromPretrained(residualBase, dir);
    const w1 = [...loaded.loraLayers()][0][1].baseWeight.data;
    assert.deepEqual(Array.from(w1), Array.from(w0));
  });
});

function randomUnit(rng: Rng, n: number): Float64Array {
  return Float64Array.from({ length: n }, () => rng.normal());
}

function orthonormalise(vs: Float64Array[]): void {
  for (let k = 0; k < vs.length; k++) {
    for (let j = 0; j < k; j++) {
      let d = 0;
      for (let i = 0; i < vs[k].length; i++) d += vs[k][i] * vs[j][i];
      for (let i = 0; i < vs[k].length; i++) vs[k][i] -= d * vs[j][i];
    }
    const n = Math.hypot(...vs[k]);
    for (let i = 0; i < vs[k].length; i++) vs[k][i] /= n;
  }
}

describe("PiSSA → LoRA of rank 2r (PEFT's subtract_mutated_init)", () => {
  const c = fixture("conversion.json");
  test("vs PyTorch: [A; A₀], [B, −B₀], r and alpha doubled; on the original W it equals the PiSSA model", () => {
    const pm = getPeftModel(new OneLinear(t32(c.W0), t32(c.bias)), {
      r: c.r,
      loraAlpha: c.lora_alpha,
      targetModules: ["proj"],
      initLoraWeights: "pissa",
    });
    const layer = [...pm.loraLayers()][0][1];
    close(layer.baseWeight.data, f32(c.residual), 1e-5, "residual");
    const A = layer.lora_A.get("default")!.weight;
    const B = layer.lora_B.get("default")!.weight;
    closeUpToSign(A.data, B.data, f32(c.A0), f32(c.B0), c.r, 1e-5);
    // Take PyTorch's initial factors (fixing the signs) and its "trained" ones.
    const initial = new Map<string, Tensor>([
      ["base_model.model.proj.lora_A.weight", t32(c.A0)],
      ["base_model.model.proj.lora_B.weight", t32(c.B0)],
    ]);
    A.data.set(f32(c.A));
    B.data.set(f32(c.B));
    const x = t32(c.x);
    close(
      noGrad(() => pm.forward(x).data),
      f32(c.y_pissa),
      1e-5,
      "PiSSA model output",
    );
    const conv = convertPissaToLora(pm, "default", initial);
    assert.equal(conv.config.r, c.r_converted);
    assert.equal(conv.config.loraAlpha, c.lora_alpha_converted);
    assert.equal(conv.config.initLoraWeights, true);
    const A2 = conv.tensors.get("base_model.model.proj.lora_A.weight")!;
    const B2 = conv.tensors.get("base_model.model.proj.lora_B.weight")!;
    assert.deepEqual(A2.shape, shapeOf(c.A_converted));
    assert.deepEqual(B2.shape, shapeOf(c.B_converted));
    close(A2.data, f32(c.A_converted), 1e-7, "A'");
    close(B2.data, f32(c.B_converted), 1e-7, "B'");
    const onOriginal = new PeftModel(new OneLinear(t32(c.W0), t32(c.bias)));
    loadAdapterTensors(onOriginal, "default", conv.config, conv.tensors);
    close(
      noGrad(() => onOriginal.forward(x).data),
      f32(c.y_pissa),
      1e-5,
      "converted adapter on the original base",
    );
  });

  test("rsLoRA: alpha × √2 keeps the scale; with rank_pattern it is refused as PEFT does", () => {
    const W = t32(fixture("conversion.json").W0);
    const pm = getPeftModel(new OneLinear(W, null), {
      r: 2,
      loraAlpha: 4,
      useRslora: true,
      targetModules: ["proj"],
      initLoraWeights: "pissa",
    });
    const initial = initialAdapterState(pm, "default");
    const A = pm.baseModel.getSubmodule("proj") as LoraLinear;
    const a = A.lora_A.get("default")!.weight.data;
    for (let i = 0; i < a.length; i++) a[i] += 0.05 * Math.sin(i);
    const x = t32(fixture("conversion.json").x);
    const want = noGrad(() => Float32Array.from(pm.forward(x).data));
    const conv = convertPissaToLora(pm, "default", initial);
    assert.equal(conv.config.r, 4);
    assert.ok(Math.abs(loraScale(conv.config.loraAlpha, 4, true) - loraScale(4, 2, true)) < 1e-12);
    const target = new PeftModel(new OneLinear(t32(fixture("conversion.json").W0), null));
    loadAdapterTensors(target, "default", conv.config, conv.tensors);
    close(
      noGrad(() => target.forward(x).data),
      want,
      1e-5,
      "rsLoRA conversion",
    );

    const pm2 = getPeftModel(new OneLinear(t32(fixture("conversion.json").W0), null), {
      r: 2,
      useRslora: true,
      rankPattern: { proj: 3 },
      targetModules: ["proj"],
      initLoraWeights: "pissa",
    });
    assert.throws(
      () => convertPissaToLora(pm2, "default", initialAdapterState(pm2, "default")),
      /not supported when using `rank_pattern` or `alpha_pattern` at the same time as `use_rslora=True`/,
    );
  });
});
