// Autograd semantics, frozen-weight savings, memory scopes, and error messages.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Backend, GemmParams } from "../../src/core/index.js";
import {
  add,
  backend,
  backward,
  crossEntropy,
  DisposedError,
  embedding,
  IndexError,
  linear,
  matmul,
  mul,
  noGrad,
  poolStats,
  Rng,
  randNormal,
  ShapeError,
  setBackend,
  sum,
  tensor,
  tidy,
  zeroGrad,
  zeros,
} from "../../src/core/index.js";

function countingBackend(base: Backend): { b: Backend; gemms: GemmParams[] } {
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

function withBackend<T>(b: Backend, fn: () => T): T {
  const prev = setBackend(b);
  try {
    return fn();
  } finally {
    setBackend(prev);
  }
}

describe("autograd", () => {
  test("a frozen weight costs one GEMM in backward, a trainable one two", () => {
    const rng = new Rng(0);
    const x = randNormal(rng, [8, 16]).setRequiresGrad();
    const w = randNormal(rng, [4, 16]);
    const { b, gemms } = countingBackend(backend());
    withBackend(b, () => {
      const y = linear(x, w);
      assert.equal(gemms.length, 1, "forward is one GEMM");
      backward(sum(y));
    });
    assert.equal(gemms.length, 2, "frozen W: backward runs only dX = dY·W");
    assert.equal(w.grad, null);
    assert.ok(x.grad);

    w.setRequiresGrad();
    gemms.length = 0;
    withBackend(b, () => backward(sum(linear(x, w))));
    assert.equal(gemms.length, 3, "trainable W: forward + dX + dW");
  });

  test("an input that does not need a gradient gets none (matmul)", () => {
    const rng = new Rng(1);
    const a = randNormal(rng, [3, 4]);
    const w = randNormal(rng, [4, 5]).setRequiresGrad();
    const { b, gemms } = countingBackend(backend());
    withBackend(b, () => backward(sum(matmul(a, w))));
    assert.equal(gemms.length, 2);
    assert.equal(a.grad, null);
    assert.deepEqual(w.grad?.shape, [4, 5]);
  });

  test("gradients accumulate across backward calls until zeroed", () => {
    const x = tensor([1, 2, 3]).setRequiresGrad();
    backward(sum(mul(x, x)));
    assert.deepEqual(x.grad?.toArray(), [2, 4, 6]);
    backward(sum(mul(x, 3)));
    assert.deepEqual(x.grad?.toArray(), [5, 7, 9]);
    zeroGrad([x]);
    assert.equal(x.grad, null);
  });

  test("a tensor used twice sums both paths", () => {
    const x = tensor([2]).setRequiresGrad();
    const y = add(mul(x, x), x); // y = x² + x, dy/dx = 2x + 1
    backward(sum(y));
    assert.deepEqual(x.grad?.toArray(), [5]);
  });

  test("noGrad records nothing", () => {
    const x = tensor([1, 2]).setRequiresGrad();
    const y = noGrad(() => mul(x, 2));
    assert.equal(y.requiresGrad, false);
    assert.equal(y.node, null);
    assert.throws(() => backward(sum(y)), /does not require grad/);
  });

  test("backward of a non-scalar needs an explicit gradient", () => {
    const x = tensor([1, 2]).setRequiresGrad();
    assert.throws(() => backward(mul(x, 2)), /non-scalar/);
    backward(mul(x, 2), tensor([1, 10]));
    assert.deepEqual(x.grad?.toArray(), [2, 20]);
  });
});

describe("memory", () => {
  test("tidy disposes temporaries, keeps the result and outside tensors", () => {
    const outside = zeros([5000]);
    let inner: ReturnType<typeof zeros> | undefined;
    const res = tidy(() => {
      inner = zeros([5000]);
      return add(inner, outside);
    });
    assert.equal(inner?.isDisposed, true);
    assert.equal(res.isDisposed, false);
    assert.equal(outside.isDisposed, false);
    assert.throws(() => inner?.data, DisposedError);
  });

  test("disposed large buffers are reused by the pool", () => {
    const before = poolStats().hits;
    for (let i = 0; i < 3; i++) tidy(() => void add(zeros([8192]), 1));
    assert.ok(poolStats().hits > before);
  });

  test("buffers of nearby sizes reuse one another through the pool, each sized exactly", () => {
    // 11,000 and 11,200 elements share a size class (multiples of 1,024 between 8,192 and 16,384).
    tidy(() => void zeros([11000]));
    const before = poolStats().hits;
    const got = tidy(() => {
      const t = zeros([11200]);
      assert.equal(t.data.length, 11200);
      assert.ok(t.data.every((x) => x === 0));
      t.data[11199] = 5;
      return Array.from(t.data.subarray(11190));
    });
    assert.equal(poolStats().hits, before + 1);
    assert.deepEqual(got, [0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
    // A request past the class (12,289 > 12,288) takes another buffer.
    tidy(() => void zeros([12289]));
    assert.equal(poolStats().hits, before + 1);
  });

  test("a view keeps its storage alive after the original is disposed", () => {
    const a = zeros([5000]);
    a.data[7] = 3;
    const v = a.view([50, 100]);
    a.dispose();
    assert.equal(v.data[7], 3);
  });

  test("parameter gradients survive the tidy scope that ran backward", () => {
    const w = randNormal(new Rng(2), [64, 64]).setRequiresGrad();
    tidy(() => {
      backward(sum(mul(w, w)));
    });
    assert.equal(w.grad?.isDisposed, false);
    assert.equal(w.grad?.data[0], 2 * w.data[0]);
  });
});

describe("errors name the op and the shapes", () => {
  test("matmul inner mismatch", () => {
    assert.throws(
      () => matmul(zeros([2, 3]), zeros([4, 5])),
      (e: Error) =>
        e instanceof ShapeError &&
        /matmul/.test(e.message) &&
        /\[2, 3\]/.test(e.message) &&
        /\[4, 5\]/.test(e.message),
    );
  });
  test("broadcast that cannot happen", () => {
    assert.throws(
      () => add(zeros([2, 3]), zeros([4])),
      (e: Error) => e instanceof ShapeError && /add/.test(e.message) && /\[2, 3\]/.test(e.message),
    );
  });
  test("out-of-range gather index", () => {
    const ids = tensor([0, 9], [2], "i32");
    assert.throws(
      () => embedding(zeros([5, 2]), ids),
      (e: Error) => e instanceof IndexError && /index 9/.test(e.message) && /5 rows/.test(e.message),
    );
  });
  test("cross-entropy target out of range", () => {
    assert.throws(() => crossEntropy(zeros([2, 3]), tensor([1, 3], [2], "i32")), IndexError);
  });
  test("linear feature mismatch", () => {
    assert.throws(() => linear(zeros([2, 3]), zeros([4, 5])), /3 features but the weight \[4, 5\] expects 5/);
  });
});

describe("graphs and tidy scopes", () => {
  test("backward on a result whose graph a tidy scope disposed fails loudly", () => {
    const w = randNormal(new Rng(9), [3, 3]).setRequiresGrad();
    const x = randNormal(new Rng(10), [2, 3]);
    const y = tidy(() => sum(matmul(x, w)));
    assert.throws(() => backward(y), DisposedError);
    assert.equal(w.grad, null);
  });
});
