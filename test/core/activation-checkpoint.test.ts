// checkpoint(): gradients against finite differences, equality with the plain call,
// parameters reached only inside the function, nesting, replayed dropout, and errors.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Tensor } from "../../src/core/index.js";
import {
  ActivationCheckpointError,
  add,
  backward,
  checkpoint,
  DisposedError,
  dropout,
  matmul,
  mul,
  noGrad,
  Rng,
  randNormal,
  sum,
  tanh,
  tidy,
} from "../../src/core/index.js";
import { gradcheck, randn } from "../util/gradcheck.js";

const rng = new Rng(77);

describe("checkpoint: gradients", () => {
  test("inputs and a parameter it closes over match finite differences (f64)", () => {
    const W = randn(rng, [4, 5]);
    const block = (a: Tensor, b: Tensor) => add(tanh(matmul(a, W)), mul(b, b));
    // W is checked as a gradcheck input while reaching the block only through its closure.
    gradcheck("checkpoint", (x, y) => checkpoint(block, [x, y]), [randn(rng, [3, 4]), randn(rng, [3, 5]), W]);
  });

  test("nested checkpoints match finite differences (f64)", () => {
    const W = randn(rng, [4, 4]);
    const inner = (b: Tensor) => tanh(matmul(b, W));
    const outer = (a: Tensor) => mul(checkpoint(inner, [mul(a, 2)]), a);
    gradcheck("checkpoint nested", (x) => checkpoint(outer, [x]), [randn(rng, [3, 4]), W]);
  });

  test("a parameter reached only inside fn makes the output require grad", () => {
    const W = randn(rng, [4, 3]);
    const x = randNormal(rng, [2, 4], 0, 1, "f64"); // no grad
    tidy(() => {
      const y = checkpoint((a) => tanh(matmul(a, W)), [x]);
      assert.ok(y.requiresGrad);
      backward(sum(y));
    });
    const want = tidy(() => {
      const g = W.grad!.toArray();
      W.grad = null;
      backward(sum(tanh(matmul(x, W))));
      return g;
    });
    assert.deepEqual(want, W.grad!.toArray());
    assert.equal(x.grad, null);
  });

  test("nothing trainable reached: no node; under noGrad: a plain call", () => {
    const W = randNormal(rng, [4, 3], 0, 1, "f64");
    const x = randNormal(rng, [2, 4], 0, 1, "f64");
    tidy(() => {
      const y = checkpoint((a) => matmul(a, W), [x]);
      assert.equal(y.requiresGrad, false);
      assert.equal(y.node, null);
      W.requiresGrad = true;
      const z = noGrad(() => checkpoint((a) => matmul(a, W), [x]));
      assert.equal(z.node, null);
      W.requiresGrad = false;
    });
  });

  test("fn returning its own input: the input is left untouched", () => {
    const x = randn(rng, [3]);
    tidy(() => {
      const y = checkpoint((a) => a, [x]);
      assert.notEqual(y, x);
      assert.equal(x.node, null);
      backward(sum(mul(y, 3)));
    });
    assert.deepEqual(x.grad!.toArray(), [3, 3, 3]);
  });
});

describe("checkpoint: randomness", () => {
  test("dropout inside draws the same masks; the Rng stream is unchanged", () => {
    const W = randn(new Rng(1), [6, 6]);
    const R = randNormal(new Rng(2), [5, 6], 0, 1, "f64");
    const drop = new Rng(3);
    const block = (a: Tensor) => tanh(matmul(dropout(a, 0.3, drop), W));
    const run = (ck: boolean) => {
      drop.setState(new Rng(3).getState());
      const x = randNormal(new Rng(4), [5, 6], 0, 1, "f64").setRequiresGrad();
      W.grad = null;
      const loss = tidy(() => {
        const f = (a: Tensor) => (ck ? checkpoint(block, [a]) : block(a));
        const l = sum(mul(f(f(x)), R));
        backward(l);
        return l.item();
      });
      return { loss, gx: x.grad!.toArray(), gW: W.grad!.toArray(), next: drop.nextU32() };
    };
    assert.deepEqual(run(true), run(false));
  });

  test("a recompute that draws differently is an error", () => {
    const W = randn(rng, [4, 4]);
    const drop = new Rng(9);
    let training = true;
    const block = (a: Tensor) => matmul(dropout(a, 0.5, drop, training), W);
    assert.throws(
      () =>
        tidy(() => {
          const y = checkpoint(block, [randNormal(rng, [2, 4], 0, 1, "f64")]);
          training = false;
          backward(sum(y));
        }),
      ActivationCheckpointError,
    );
  });
});

test("checkpoint: a recompute that computes something else is an error", () => {
  const W = randn(rng, [4, 4]);
  assert.throws(
    () =>
      tidy(() => {
        const y = checkpoint((a) => matmul(a, W), [randNormal(rng, [2, 4], 0, 1, "f64")]);
        W.data[0] += 1; // e.g. an optimizer step between forward and backward
        backward(sum(y));
      }),
    (e: unknown) => e instanceof ActivationCheckpointError && /recomputed output/.test(e.message),
  );
});

test("checkpoint: backward after the inputs were disposed names the input", () => {
  const W = randn(rng, [4, 4]);
  const x = randNormal(rng, [2, 4], 0, 1, "f64");
  const y = tidy(() => checkpoint((a) => matmul(a, W), [mul(x, 2)]));
  assert.throws(
    () => tidy(() => backward(sum(y))),
    (e: unknown) =>
      e instanceof DisposedError && /checkpoint: input 0 .* disposed before backward/.test(e.message),
  );
  y.dispose();
});
