// loraLinear and loraDelta (the fused LoRA linear layer) against the composed ops
// add(linear(x, w, b), linear(scale(linear(xin, A), s), B)): values and every gradient on
// every backend (bias or not, dropout, frozen bf16 and trainable W, 3-D input, r = 1),
// finite differences in f64, the GEMMs backward runs for each set of trainable inputs, the
// bytes kept alive, in-place safety; and LoraLinear's fused path against its composed one
// (plain Linear, bf16, NF4 and unknown bases, several adapters with DoRA between them).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Backend, GemmParams, Tensor } from "../../src/core/index.js";
import {
  add,
  backward,
  dropout,
  LorakitError,
  linear,
  loraDelta,
  loraLinear,
  mul,
  noGrad,
  Rng,
  randNormal,
  resetPeakTensorBytes,
  ShapeError,
  scale,
  setBackend,
  sum,
  tanh,
  tensor,
  tensorBytes,
  tidy,
  zeroGrad,
} from "../../src/core/index.js";
import { availableBackends } from "../../src/kernels/select.js";
import { Linear } from "../../src/nn/layers.js";
import { DoraVariant } from "../../src/peft/lora/dora.js";
import { BASE_ROW, LoraLinear, setLoraFusion } from "../../src/peft/lora/layer.js";
import { getPeftModel } from "../../src/peft/model.js";
import { Linear4bit } from "../../src/quant/linear4bit.js";
import { gradcheck, randn } from "../util/gradcheck.js";
import { tinyModel } from "../util/tiny-model.js";

const backends = await availableBackends();

function withBackend<R>(b: Backend, fn: () => R): R {
  const prev = setBackend(b);
  try {
    return fn();
  } finally {
    setBackend(prev);
  }
}

/** ‖a − b‖ / ‖b‖ (‖a − b‖ when b is 0). */
function normRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "lengths differ");
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return n === 0 ? Math.sqrt(d) : Math.sqrt(d / n);
}

const TOL = 1e-6;

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = TOL): void {
  const e = normRel(got, want);
  assert.ok(e <= tol, `${what}: norm-relative error ${e} > ${tol}`);
}

/** Σ f()⊙R and its backward; returns f()'s values and a copy of each tensor's gradient. */
function valuesAndGrads(
  params: readonly Tensor[],
  R: Tensor,
  f: () => Tensor,
): { y: Float64Array; grads: (Float64Array | null)[] } {
  zeroGrad(params);
  let y = new Float64Array(0);
  tidy(() => {
    const out = f();
    y = Float64Array.from(out.data as Float32Array);
    backward(sum(mul(out, R)));
  });
  const grads = params.map((p) => (p.grad ? Float64Array.from(p.grad.data) : null));
  zeroGrad(params);
  return { y, grads };
}

/** The composed path the fused ops replace. */
function composed(
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  xin: Tensor,
  A: Tensor,
  B: Tensor,
  s: number,
): Tensor {
  return add(linear(x, w, b), linear(scale(linear(xin, A), s), B));
}

describe("loraLinear = add(linear(x, w, b), linear(scale(linear(xin, A), s), B))", () => {
  const C = 24;
  const O = 20;
  for (const be of backends)
    describe(`${be.name} backend`, () => {
      let seed = 100;
      for (const withBias of [false, true])
        for (const drop of [false, true])
          for (const wMode of ["trainable", "frozen", "bf16"] as const)
            for (const shape of [[13], [2, 5]]) {
              const r = shape.length === 1 ? 1 : 4;
              const name = `${withBias ? "bias" : "no bias"}, ${drop ? "dropout" : "xin = x"}, W ${wMode}, x (${[...shape, C]}), r = ${r}`;
              const sd = seed++;
              test(name, () =>
                withBackend(be, () => {
                  const rng = new Rng(sd);
                  const x = randNormal(rng, [...shape, C]).setRequiresGrad();
                  const w0 = randNormal(rng, [O, C], 0, 0.3);
                  const w = wMode === "bf16" ? w0.to("bf16") : w0.setRequiresGrad(wMode === "trainable");
                  const b = withBias ? randNormal(rng, [O]).setRequiresGrad() : null;
                  const A = randNormal(rng, [r, C], 0, 0.3).setRequiresGrad();
                  const B = randNormal(rng, [O, r], 0, 0.3).setRequiresGrad();
                  const R = randNormal(rng, [...shape, O]);
                  const s = 2;
                  const xinOf = () => (drop ? dropout(x, 0.25, new Rng(sd)) : x);
                  const params = [x, w, ...(b ? [b] : []), A, B];
                  const want = valuesAndGrads(params, R, () => composed(x, w, b, xinOf(), A, B, s));
                  const got = valuesAndGrads(params, R, () => {
                    const y = loraLinear(x, w, b, xinOf(), A, B, s);
                    assert.equal(y.node?.op, "loraLinear");
                    assert.deepEqual(y.shape, [...shape, O]);
                    return y;
                  });
                  assertClose(got.y, want.y, "y");
                  const names = ["dx", "dW", ...(b ? ["db"] : []), "dA", "dB"];
                  for (const [i, nm] of names.entries()) {
                    if (nm === "dW" && wMode !== "trainable") {
                      assert.equal(got.grads[i], null, "a frozen W gets no gradient");
                      continue;
                    }
                    assertClose(got.grads[i]!, want.grads[i]!, nm);
                  }
                }),
              );
            }

      for (const drop of [false, true])
        test(`values and gradients are bit-identical to the composed ops on native, within rounding on ref (${drop ? "dropout" : "xin = x"})`, () =>
          withBackend(be, () => {
            const rng = new Rng(3);
            const x = randNormal(rng, [37, 64]).setRequiresGrad();
            const w = randNormal(rng, [80, 64], 0, 0.2).to("bf16");
            const b = randNormal(rng, [80]).setRequiresGrad();
            const A = randNormal(rng, [16, 64], 0, 0.2).setRequiresGrad();
            const B = randNormal(rng, [80, 16], 0, 0.2).setRequiresGrad();
            const R = randNormal(rng, [37, 80]);
            const xinOf = () => (drop ? dropout(x, 0.1, new Rng(4)) : x);
            const params = [x, b, A, B];
            // Exact in f32 (alpha inside the GEMM) and not (rsLoRA's 16/√8: a pass in double).
            for (const s of [2, 0.5, 16 / Math.sqrt(8)]) {
              const want = valuesAndGrads(params, R, () => composed(x, w, b, xinOf(), A, B, s));
              const got = valuesAndGrads(params, R, () => loraLinear(x, w, b, xinOf(), A, B, s));
              for (const [i, nm] of ["y", "dx", "db", "dA", "dB"].entries()) {
                const g = i === 0 ? got.y : got.grads[i - 1]!;
                const e = i === 0 ? want.y : want.grads[i - 1]!;
                if (be.name === "native") assert.deepEqual(g, e, `${nm}, s = ${s}`);
                else assertClose(g, e, `${nm}, s = ${s}`);
              }
            }
          }));
    });

  test("shape and dtype errors", () => {
    const rng = new Rng(4);
    const x = randNormal(rng, [3, 8]);
    const w = randNormal(rng, [5, 8]);
    const A = randNormal(rng, [2, 8]);
    const B = randNormal(rng, [5, 2]);
    assert.throws(() => loraLinear(x, w, null, randNormal(rng, [4, 8]), A, B, 1), ShapeError);
    assert.throws(() => loraLinear(x, w, null, x, randNormal(rng, [2, 7]), B, 1), ShapeError);
    assert.throws(() => loraLinear(x, w, null, x, A, randNormal(rng, [5, 3]), 1), ShapeError);
    assert.throws(() => loraLinear(x, w, randNormal(rng, [4]), x, A, B, 1), ShapeError);
    assert.throws(() => loraLinear(randNormal(rng, [3, 7]), w, null, x, A, B, 1), ShapeError);
    assert.throws(() => loraDelta(randNormal(rng, [4, 5]), x, A, B, 1), ShapeError);
    assert.throws(() => loraLinear(x.to("f64"), w, null, x, A, B, 1), /different dtypes/);
  });
});

describe("loraDelta = y + linear(scale(linear(xin, A), s), B)", () => {
  for (const be of backends)
    describe(`${be.name} backend`, () => {
      for (const inPlace of [false, true])
        for (const drop of [false, true])
          test(`${inPlace ? "in place" : "into a copy"}, ${drop ? "dropout" : "xin = x"}, base from linear`, () =>
            withBackend(be, () => {
              const rng = new Rng(inPlace ? 11 : 12);
              const x = randNormal(rng, [2, 3, 16]).setRequiresGrad();
              const w = randNormal(rng, [12, 16], 0, 0.3).to("bf16");
              const b = randNormal(rng, [12]).setRequiresGrad();
              const A = randNormal(rng, [3, 16], 0, 0.3).setRequiresGrad();
              const B = randNormal(rng, [12, 3], 0, 0.3).setRequiresGrad();
              const R = randNormal(rng, [2, 3, 12]);
              const xinOf = () => (drop ? dropout(x, 0.3, new Rng(9)) : x);
              const params = [x, b, A, B];
              const want = valuesAndGrads(params, R, () => composed(x, w, b, xinOf(), A, B, 0.75));
              const got = valuesAndGrads(params, R, () => {
                const base = linear(x, w, b);
                const y = loraDelta(base, xinOf(), A, B, 0.75, { inPlace });
                assert.equal(y.node?.op, "loraDelta");
                // In place, the base output's storage now holds the sum; else it is untouched.
                if (inPlace) assert.equal(base.data, y.data);
                else assert.notEqual(base.data, y.data);
                return y;
              });
              assertClose(got.y, want.y, "y");
              for (const [i, nm] of ["dx", "db", "dA", "dB"].entries())
                assertClose(got.grads[i]!, want.grads[i]!, nm);
            }));

      test("on an NF4 base (Linear4bit), in place", () =>
        withBackend(be, () => {
          const rng = new Rng(13);
          const q = Linear4bit.fromWeight(randNormal(rng, [64, 64], 0, 0.1), randNormal(rng, [64]));
          const x = randNormal(rng, [5, 64]).setRequiresGrad();
          const A = randNormal(rng, [4, 64], 0, 0.3).setRequiresGrad();
          const B = randNormal(rng, [64, 4], 0, 0.3).setRequiresGrad();
          const R = randNormal(rng, [5, 64]);
          const params = [x, A, B];
          const want = valuesAndGrads(params, R, () => add(q.forward(x), linear(scale(linear(x, A), 2), B)));
          const got = valuesAndGrads(params, R, () => loraDelta(q.forward(x), x, A, B, 2, { inPlace: true }));
          assertClose(got.y, want.y, "y");
          for (const [i, nm] of ["dx", "dA", "dB"].entries()) assertClose(got.grads[i]!, want.grads[i]!, nm);
        }));
    });

  test("in place is refused where another rule may read y, or y is a trainable leaf", () => {
    const rng = new Rng(14);
    const x = randNormal(rng, [3, 8]).setRequiresGrad();
    const A = randNormal(rng, [2, 8]);
    const B = randNormal(rng, [8, 2]);
    tidy(() => {
      // tanh's backward reads its output: overwriting it would corrupt dx.
      assert.throws(() => loraDelta(tanh(x), x, A, B, 1, { inPlace: true }), /tanh/);
      assert.throws(() => loraDelta(x, x, A, B, 1, { inPlace: true }), LorakitError);
      // Into a copy both are fine, and y keeps its values.
      const t = tanh(x);
      const before = Float32Array.from(t.data as Float32Array);
      loraDelta(t, x, A, B, 1);
      assert.deepEqual(t.data, before);
      // Without a graph node (no grad) in place is allowed.
      const free = noGrad(() => tanh(x));
      assert.equal(loraDelta(free, x, A, B, 1, { inPlace: true }).data, free.data);
    });
  });
});

describe("gradcheck (f64 finite differences)", () => {
  const rng = new Rng(21);
  const r = (...shape: number[]) => randn(rng, shape);
  test("loraLinear, every input trainable, xin a separate tensor", () =>
    gradcheck("loraLinear", (x, w, b, xin, A, B) => loraLinear(x, w, b, xin, A, B, 0.7), [
      r(2, 3, 5),
      r(4, 5),
      r(4),
      r(2, 3, 5),
      r(2, 5),
      r(4, 2),
    ]));
  test("loraLinear, xin = x (one summed dx), r = 1, no bias", () =>
    gradcheck("loraLinear", (x, w, A, B) => loraLinear(x, w, null, x, A, B, 1.5), [
      r(3, 5),
      r(4, 5),
      r(1, 5),
      r(4, 1),
    ]));
  test("loraLinear with dropout on the adapter input, frozen W", () => {
    const w = randNormal(rng, [4, 6], 0, 1, "f64");
    gradcheck("loraLinear", (x, b, A, B) => loraLinear(x, w, b, dropout(x, 0.3, new Rng(5)), A, B, 2), [
      r(7, 6),
      r(4),
      r(3, 6),
      r(4, 3),
    ]);
  });
  test("loraDelta into a copy, y a leaf", () =>
    gradcheck("loraDelta", (y, xin, A, B) => loraDelta(y, xin, A, B, 0.5), [
      r(2, 3, 4),
      r(2, 3, 5),
      r(2, 5),
      r(4, 2),
    ]));
  test("loraDelta in place on linear's output", () =>
    gradcheck("loraDelta", (x, w, A, B) => loraDelta(linear(x, w), x, A, B, 1.25, { inPlace: true }), [
      r(3, 5),
      r(4, 5),
      r(2, 5),
      r(4, 2),
    ]));
});

describe("work and memory", () => {
  function counting(base: Backend) {
    const gemms: GemmParams[] = [];
    const b: Backend = {
      ...base,
      gemm(p: GemmParams) {
        gemms.push(p);
        base.gemm(p);
      },
    };
    return { b, gemms };
  }

  // N = 6 rows, C = 10, O = 14, r = 3: every product has its own output size.
  const cases: [string, { x: boolean; w: boolean; A: boolean; B: boolean; drop: boolean }, string[]][] = [
    ["A, B only (x and W frozen)", { x: false, w: false, A: true, B: true, drop: false }, ["dB", "g", "dA"]],
    [
      "x, A, B (xin = x)",
      { x: true, w: false, A: true, B: true, drop: false },
      ["dx", "dB", "g", "dA", "dx+"],
    ],
    [
      "x, A, B with dropout",
      { x: true, w: false, A: true, B: true, drop: true },
      ["dx", "dB", "g", "dA", "dxin"],
    ],
    ["B only", { x: false, w: false, A: false, B: true, drop: false }, ["dB"]],
    ["x only", { x: true, w: false, A: false, B: false, drop: false }, ["dx", "g", "dx+"]],
    ["W only", { x: false, w: true, A: false, B: false, drop: false }, ["dW"]],
  ];
  const sizes: Record<string, number> = { dx: 60, "dx+": 60, dxin: 60, dW: 140, dA: 30, dB: 42, g: 18 };
  for (const [name, req, want] of cases)
    test(`backward runs only the GEMMs its trainable inputs need: ${name}`, () => {
      const rng = new Rng(41);
      const x = randNormal(rng, [6, 10]).setRequiresGrad(req.x);
      const w = randNormal(rng, [14, 10]).setRequiresGrad(req.w);
      const A = randNormal(rng, [3, 10]).setRequiresGrad(req.A);
      const B = randNormal(rng, [14, 3]).setRequiresGrad(req.B);
      const { b, gemms } = counting(backends[0]);
      withBackend(b, () =>
        tidy(() => {
          const xin = req.drop ? dropout(x, 0.5, new Rng(1)) : x;
          const y = loraLinear(x, w, null, xin, A, B, 2);
          assert.equal(gemms.length, 3, "forward: base, xin·Aᵀ, h·Bᵀ");
          gemms.length = 0;
          backward(sum(y));
          assert.deepEqual(
            gemms.map((p) => p.c.length),
            want.map((k) => sizes[k]),
          );
          // dx+ (the adapter's part of dx) accumulates into the base part's buffer.
          assert.deepEqual(
            gemms.map((p) => p.beta),
            want.map((k) => (k === "dx+" ? 1 : 0)),
          );
        }),
      );
      for (const [t, on] of [
        [x, req.x],
        [w, req.w],
        [A, req.A],
        [B, req.B],
      ] as const) {
        assert.equal(t.grad !== null, on);
        t.grad = null;
      }
    });

  /** Live bytes a forward leaves behind (what backward keeps), and the peak over forward + backward. */
  function measure(f: () => Tensor): { kept: number; peak: number } {
    const before = tensorBytes().live;
    resetPeakTensorBytes();
    let kept = 0;
    tidy(() => {
      const y = f();
      kept = tensorBytes().live - before;
      backward(sum(y));
    });
    return { kept, peak: tensorBytes().peak - before };
  }

  test("the fused op keeps y and the N×r product only: out + r floats per token instead of 3·out + 2·r", () => {
    const rng = new Rng(42);
    const [N, C, O, r] = [64, 32, 48, 4];
    const x = randNormal(rng, [N, C]).setRequiresGrad();
    const w = randNormal(rng, [O, C]);
    const A = randNormal(rng, [r, C]).setRequiresGrad();
    const B = randNormal(rng, [O, r]).setRequiresGrad();
    // (The sum()'s scalar adds nothing to `kept`: it is made after the measurement.)
    const want = measure(() => composed(x, w, null, x, A, B, 2));
    const got = measure(() => loraLinear(x, w, null, x, A, B, 2));
    assert.equal(want.kept, 4 * (3 * N * O + 2 * N * r));
    assert.equal(got.kept, 4 * (N * O + N * r));
    assert.ok(got.peak < want.peak, `peak ${got.peak} ≥ composed ${want.peak}`);
    const inPlace = measure(() => loraDelta(linear(x, w), x, A, B, 2, { inPlace: true }));
    assert.equal(inPlace.kept, 4 * (N * O + N * r));
    const copy = measure(() => loraDelta(linear(x, w), x, A, B, 2));
    assert.equal(copy.kept, 4 * (2 * N * O + N * r));
    for (const t of [x, A, B]) t.grad = null;
    // Without a graph the N×r product is released at once.
    const live = tensorBytes().live;
    const y = noGrad(() => loraLinear(x, w, null, x, A, B, 2));
    assert.equal(tensorBytes().live - live, 4 * N * O);
    y.dispose();
  });
});

describe("LoraLinear: the fused path equals the composed one", () => {
  /** A LoraLinear over `base` with adapters a0, a1, … (B random, so each adds something). */
  function layer(base: Linear | Linear4bit, kinds: ("plain" | "bias")[], p: number): LoraLinear {
    const rng = new Rng(51);
    const l = new LoraLinear(base);
    kinds.forEach((k, i) => {
      l.addAdapter(`a${i}`, {
        r: 4,
        alpha: 8,
        dropout: p,
        useRslora: false,
        loraBias: k === "bias",
        A: randNormal(rng, [4, base.inFeatures], 0, 0.2).setRequiresGrad(),
        B: randNormal(rng, [base.outFeatures, 4], 0, 0.2).setRequiresGrad(),
      });
    });
    l.activeAdapters = kinds.map((_, i) => `a${i}`);
    l.rng = new Rng(52);
    return l;
  }

  /** Output and gradients (x and every trainable tensor) with fusion on or off; the same dropout draws. */
  function run(
    l: LoraLinear,
    x: Tensor,
    fused: boolean,
  ): { y: Float64Array; grads: Float64Array[]; op: string } {
    const prev = setLoraFusion(fused);
    try {
      l.rng = new Rng(52);
      const params = [x, ...l.parameters().filter((t) => t.requiresGrad)];
      const R = randNormal(new Rng(53), [...x.shape.slice(0, -1), l.outFeatures]);
      let op = "";
      const got = valuesAndGrads(params, R, () => {
        const y = l.forward(x);
        op = y.node?.op ?? "";
        return y;
      });
      return { y: got.y, grads: got.grads.map((g) => g!), op };
    } finally {
      setLoraFusion(prev);
    }
  }

  /** On every backend: the fused forward's last op is `op`, and values and gradients match. */
  function check(l: LoraLinear, x: Tensor, op: string): void {
    for (const be of backends)
      withBackend(be, () => {
        const want = run(l, x, false);
        const got = run(l, x, true);
        assert.equal(got.op, op);
        assertClose(got.y, want.y, `${be.name}: y`);
        assert.equal(got.grads.length, want.grads.length);
        got.grads.forEach((g, i) => {
          assertClose(g, want.grads[i], `${be.name}: grad ${i}`);
        });
      });
  }

  const rng = new Rng(50);
  const x = randNormal(rng, [2, 3, 16]).setRequiresGrad();
  const linearBase = (dtype: "f32" | "bf16", bias = true) =>
    new Linear(16, 12, {
      weight: randNormal(new Rng(54), [12, 16], 0, 0.3).to(dtype),
      biasTensor: bias ? randNormal(new Rng(55), [12]) : null,
    });
  for (const p of [0, 0.2]) {
    const d = p ? "dropout" : "no dropout";
    test(`plain Linear base, one adapter: loraLinear (${d})`, () =>
      check(layer(linearBase("f32"), ["plain"], p), x, "loraLinear"));
    test(`frozen bf16 base without bias: loraLinear (${d})`, () =>
      check(layer(linearBase("bf16", false), ["plain"], p), x, "loraLinear"));
    test(`two adapters: loraLinear then loraDelta in place (${d})`, () =>
      check(layer(linearBase("f32"), ["plain", "plain"], p), x, "loraDelta"));
    test(`NF4 base: loraDelta in place on Linear4bit's output (${d})`, () => {
      const q = Linear4bit.fromWeight(
        randNormal(new Rng(56), [12, 16], 0, 0.3),
        randNormal(new Rng(57), [12]),
      );
      check(layer(q, ["plain"], p), x, "loraDelta");
    });
    test(`a lora_B bias keeps the composed path (${d})`, () =>
      check(layer(linearBase("f32"), ["bias"], p), x, "add"));
  }

  test("an unknown base layer (a subclass) gets loraDelta into a copy: its output is left as it was", () => {
    class Spy extends Linear {
      last: Float32Array | null = null;
      lastTensor: Tensor | null = null;
      override forward(t: Tensor): Tensor {
        const y = super.forward(t);
        this.last = Float32Array.from(y.data as Float32Array);
        this.lastTensor = y;
        return y;
      }
    }
    const base = new Spy(16, 12, { weight: randNormal(new Rng(58), [12, 16], 0, 0.3) });
    const l = layer(base, ["plain"], 0);
    check(l, x, "loraDelta");
    tidy(() => {
      const y = l.forward(x);
      assert.notEqual(y.data, base.lastTensor!.data);
      assert.deepEqual(base.lastTensor!.data, base.last);
    });
  });

  test("DoRA between plain adapters: the y DoRA saved is not overwritten in place", () => {
    const l = layer(linearBase("f32"), ["plain", "plain"], 0.2);
    const r = new Rng(59);
    l.addAdapter("d", {
      r: 4,
      alpha: 8,
      dropout: 0.1,
      useRslora: false,
      loraBias: false,
      A: randNormal(r, [4, 16], 0, 0.2).setRequiresGrad(),
      B: randNormal(r, [12, 4], 0, 0.2).setRequiresGrad(),
      variant: new DoraVariant(),
    });
    l.lora_magnitude_vector.get("d")!.weight.requiresGrad = true;
    l.activeAdapters = ["a0", "d", "a1"];
    check(l, x, "loraDelta");
  });

  test("a mixed batch keeps its own path; the base alone when no adapter is active", () => {
    const l = layer(linearBase("f32"), ["plain"], 0);
    l.rowAdapters = ["a0", BASE_ROW];
    tidy(() => assert.equal(l.forward(x).node?.op, "add"));
    l.rowAdapters = null;
    l.activeAdapters = [];
    tidy(() => assert.equal(l.forward(x).node?.op, "linear"));
  });

  test("a PeftModel training step (all-linear, dropout) equals the composed path", () => {
    const model = tinyModel(3);
    const pm = getPeftModel(model, { r: 4, loraAlpha: 8, targetModules: "all-linear", loraDropout: 0.1 });
    const rb = new Rng(60);
    for (const [n, t] of pm.namedParameters())
      if (n.includes("lora_B"))
        (t.data as Float32Array).set(randNormal(rb, t.shape, 0, 0.1).data as Float32Array);
    pm.train();
    const ids = tensor([3, 7, 11, 2, 9, 30, 4, 1, 5, 5, 40, 12, 8, 19, 22, 6], [2, 8], "i32");
    const tg = tensor([7, 11, 2, 9, 30, 4, 1, 0, 5, 40, 12, 8, 19, 22, 6, 1], [2, 8], "i32");
    const params = pm.parameters().filter((t) => t.requiresGrad);
    const state = pm.rng.getState();
    const step = (fused: boolean) => {
      const prev = setLoraFusion(fused);
      try {
        pm.rng.setState(state);
        zeroGrad(params);
        const loss = tidy(() => {
          const l = pm.loss(ids, tg);
          backward(l);
          return l.item();
        });
        const grads = params.map((t) => Float64Array.from(t.grad!.data));
        zeroGrad(params);
        return { loss, grads };
      } finally {
        setLoraFusion(prev);
      }
    };
    for (const be of backends)
      withBackend(be, () => {
        const want = step(false);
        const got = step(true);
        assertClose([got.loss], [want.loss], `${be.name}: loss`);
        got.grads.forEach((g, i) => {
          assertClose(g, want.grads[i], `${be.name}: grad of ${params[i].name ?? i}`);
        });
      });
  });
});
