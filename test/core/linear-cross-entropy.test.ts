// linearCrossEntropy (the output layer fused with the loss, chunked over tokens) against the
// unfused crossEntropy(linear(h, w, bias)): loss and gradients on every backend, ignored
// rows, chunk sizes, reductions, frozen bf16 and trainable heads, a tied embedding/head,
// finite differences in f64, no V × C buffer for a frozen head; and the model-level
// `loss()` of LlamaForCausalLM and PeftModel against forward + crossEntropy.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Backend, GemmParams, Tensor } from "../../src/core/index.js";
import {
  backward,
  crossEntropy,
  DTypeError,
  defaultLossChunkTokens,
  embedding,
  IndexError,
  LOSS_CHUNK_BYTES,
  LorakitError,
  linear,
  linearCrossEntropy,
  mul,
  noGrad,
  Rng,
  randNormal,
  reshape,
  rmsNorm,
  ShapeError,
  scale,
  setBackend,
  tensor,
  tidy,
  zeroGrad,
} from "../../src/core/index.js";
import { availableBackends } from "../../src/kernels/select.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { getPeftModel } from "../../src/peft/model.js";
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

/** ‖a − b‖ / ‖b‖ (0 when both are 0). */
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

/** Runs a loss and its backward; returns the loss and a copy of each tensor's gradient. */
function lossAndGrads(
  params: readonly Tensor[],
  f: () => Tensor,
): { loss: number; grads: (Float64Array | null)[] } {
  zeroGrad(params);
  const loss = tidy(() => {
    const l = f();
    const v = l.item();
    backward(l);
    return v;
  });
  const grads = params.map((p) => (p.grad ? Float64Array.from(p.grad.data) : null));
  zeroGrad(params);
  return { loss, grads };
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = 1e-6): void {
  const e = normRel(got, want);
  assert.ok(e <= tol, `${what}: norm-relative error ${e} > ${tol}`);
}

const TOL = 1e-6;

/** Targets in [0, V) with −100 at the given rows. */
function makeTargets(rng: Rng, N: number, V: number, ignored: readonly number[] = []): Tensor {
  const t = Array.from({ length: N }, () => rng.int(V));
  for (const i of ignored) t[i] = -100;
  return tensor(t, [N], "i32");
}

describe("linearCrossEntropy = crossEntropy(linear(h, w, b))", () => {
  const N = 13;
  const C = 24;
  const V = 37;
  // Ignored rows at the start, in the middle (so chunks gather rows) and at the end.
  const IGN = [0, 4, 5, 9, 12];
  for (const be of backends)
    describe(`${be.name} backend`, () => {
      for (const ignored of [[], IGN])
        for (const reduction of ["mean", "sum"] as const)
          for (const chunkTokens of [1, 3, N, N + 4, undefined]) {
            const name = `${reduction}, ${ignored.length} ignored, chunk ${chunkTokens ?? "default"}`;
            test(`trainable f32 head with bias: ${name}`, () =>
              withBackend(be, () => {
                const rng = new Rng(7);
                const h = randNormal(rng, [N, C]).setRequiresGrad();
                const w = randNormal(rng, [V, C], 0, 0.5).setRequiresGrad();
                const b = randNormal(rng, [V]).setRequiresGrad();
                const tg = makeTargets(rng, N, V, ignored);
                const params = [h, w, b];
                const want = lossAndGrads(params, () => crossEntropy(linear(h, w, b), tg, { reduction }));
                const got = lossAndGrads(params, () =>
                  linearCrossEntropy(h, w, b, tg, { reduction, chunkTokens }),
                );
                assertClose([got.loss], [want.loss], "loss");
                for (const [i, nm] of ["dh", "dW", "db"].entries())
                  assertClose(got.grads[i]!, want.grads[i]!, nm, TOL);
              }));
            test(`frozen bf16 head, dh only: ${name}`, () =>
              withBackend(be, () => {
                const rng = new Rng(8);
                const h = randNormal(rng, [N, C]).setRequiresGrad();
                const w = randNormal(rng, [V, C], 0, 0.5).to("bf16");
                const tg = makeTargets(rng, N, V, ignored);
                const want = lossAndGrads([h], () => crossEntropy(linear(h, w), tg, { reduction }));
                const got = lossAndGrads([h], () =>
                  linearCrossEntropy(h, w, null, tg, { reduction, chunkTokens }),
                );
                assertClose([got.loss], [want.loss], "loss");
                assertClose(got.grads[0]!, want.grads[0]!, "dh", TOL);
                assert.equal(w.grad, null);
              }));
          }

      test("h of rank 3 with targets (B·T) or (B, T); dy ≠ 1 scales the gradients", () =>
        withBackend(be, () => {
          const rng = new Rng(9);
          const h = randNormal(rng, [2, 5, C]).setRequiresGrad();
          const w = randNormal(rng, [V, C], 0, 0.5).setRequiresGrad();
          const tg = makeTargets(rng, 10, V, [3, 8]);
          const want = lossAndGrads([h, w], () =>
            scale(crossEntropy(reshape(linear(h, w), [-1, V]), tg), -2.5),
          );
          for (const t of [tg, tg.view([2, 5])]) {
            const got = lossAndGrads([h, w], () =>
              scale(linearCrossEntropy(h, w, null, t, { chunkTokens: 4 }), -2.5),
            );
            assertClose([got.loss], [want.loss], "loss");
            assertClose(got.grads[0]!, want.grads[0]!, "dh");
            assertClose(got.grads[1]!, want.grads[1]!, "dW");
          }
        }));

      test("a tied head: one trainable table as embedding and head accumulates both gradients", () =>
        withBackend(be, () => {
          const rng = new Rng(10);
          const table = randNormal(rng, [V, C], 0, 0.5).setRequiresGrad();
          const g = randNormal(rng, [C], 1, 0.1).setRequiresGrad();
          const ids = tensor(
            Array.from({ length: N }, () => rng.int(V)),
            [N],
            "i32",
          );
          const tg = makeTargets(rng, N, V, IGN);
          const hidden = () => rmsNorm(mul(embedding(table, ids), 1.5), g, 1e-5);
          const want = lossAndGrads([table, g], () => crossEntropy(linear(hidden(), table), tg));
          const got = lossAndGrads([table, g], () =>
            linearCrossEntropy(hidden(), table, null, tg, { chunkTokens: 3 }),
          );
          assertClose([got.loss], [want.loss], "loss");
          assertClose(got.grads[0]!, want.grads[0]!, "d table (embedding + head)");
          assertClose(got.grads[1]!, want.grads[1]!, "d norm weight");
          // Both uses contribute: the head part alone differs from the total.
          const headOnly = lossAndGrads([table], () =>
            linearCrossEntropy(noGrad(hidden), table, null, tg, { chunkTokens: 3 }),
          );
          assert.ok(normRel(headOnly.grads[0]!, got.grads[0]!) > 1e-3, "the embedding's gradient is missing");
        }));

      test("mean over all-ignored targets is NaN with zero gradients (as PyTorch); sum is 0", () =>
        withBackend(be, () => {
          const rng = new Rng(11);
          const h = randNormal(rng, [4, C]).setRequiresGrad();
          const w = randNormal(rng, [V, C]).setRequiresGrad();
          const b = randNormal(rng, [V]).setRequiresGrad();
          const tg = tensor([-100, -100, -100, -100], [4], "i32");
          const want = lossAndGrads([h, w, b], () => crossEntropy(linear(h, w, b), tg));
          const got = lossAndGrads([h, w, b], () => linearCrossEntropy(h, w, b, tg));
          assert.ok(Number.isNaN(want.loss) && Number.isNaN(got.loss));
          for (const i of [0, 1, 2]) assert.deepEqual(got.grads[i], want.grads[i]);
          const s = noGrad(() => linearCrossEntropy(h, w, b, tg, { reduction: "sum" }).item());
          assert.equal(s, 0);
        }));
    });

  test("a custom ignoreIndex", () => {
    const rng = new Rng(12);
    const h = randNormal(rng, [6, 4]).setRequiresGrad();
    const w = randNormal(rng, [5, 4]).setRequiresGrad();
    const tg = tensor([1, 3, 0, 3, 4, 2], [6], "i32");
    const want = lossAndGrads([h, w], () => crossEntropy(linear(h, w), tg, { ignoreIndex: 3 }));
    const got = lossAndGrads([h, w], () =>
      linearCrossEntropy(h, w, null, tg, { ignoreIndex: 3, chunkTokens: 2 }),
    );
    assertClose([got.loss], [want.loss], "loss");
    assertClose(got.grads[0]!, want.grads[0]!, "dh");
    assertClose(got.grads[1]!, want.grads[1]!, "dW");
  });
});

describe("linearCrossEntropy: finite differences in f64", () => {
  const rng = new Rng(21);
  const tg = tensor([2, -100, 0, 4, 4, -100, 1], [7], "i32");
  for (const reduction of ["mean", "sum"] as const)
    for (const chunkTokens of [1, 3, 16])
      test(`${reduction}, chunk ${chunkTokens}`, () =>
        gradcheck(
          "linearCrossEntropy",
          (h, w, b) => linearCrossEntropy(h, w, b, tg, { reduction, chunkTokens }),
          [randn(rng, [7, 3]), randn(rng, [5, 3]), randn(rng, [5])],
        ));
  test("frozen weight: only h and the bias", () => {
    const w = randNormal(rng, [5, 3], 0, 1, "f64");
    gradcheck("linearCrossEntropy", (h, b) => linearCrossEntropy(h, w, b, tg, { chunkTokens: 2 }), [
      randn(rng, [7, 3]),
      randn(rng, [5]),
    ]);
  });
});

describe("linearCrossEntropy: work and memory", () => {
  function counting(base: Backend) {
    const gemms: GemmParams[] = [];
    let ceBackward = 0;
    const b: Backend = {
      ...base,
      gemm(p: GemmParams) {
        gemms.push(p);
        base.gemm(p);
      },
      crossEntropyBackward(...args: Parameters<Backend["crossEntropyBackward"]>) {
        ceBackward++;
        base.crossEntropyBackward(...args);
      },
    };
    return { b, gemms, ceBackward: () => ceBackward };
  }

  test("a frozen head gets no V × C gradient buffer and no dW GEMM; backward runs no GEMM", () => {
    const rng = new Rng(31);
    const V = 50;
    const C = 16;
    const h = randNormal(rng, [10, C]).setRequiresGrad();
    const w = randNormal(rng, [V, C]);
    const tg = makeTargets(rng, 10, V, [2]);
    const { b, gemms } = counting(backends[0]);
    withBackend(b, () =>
      tidy(() => {
        const loss = linearCrossEntropy(h, w, null, tg, { chunkTokens: 4 });
        assert.ok(loss.node, "a graph node is recorded");
        assert.deepEqual(
          loss.node.inputs.map((x) => x.requiresGrad),
          [true, false],
          "needs[1] is false for the frozen weight",
        );
        // 9 real rows in chunks of 4: 3 chunks × (logits + dh); nothing writes a V × C array.
        assert.equal(gemms.length, 6);
        for (const p of gemms) assert.ok(p.c.length < V * C, `a GEMM wrote ${p.c.length} elements`);
        backward(loss);
        assert.equal(gemms.length, 6, "backward only scales the stored dh");
      }),
    );
    assert.equal(w.grad, null);
    assert.ok(h.grad);
    h.grad = null;
  });

  test("without grad recording only the loss is computed (one GEMM per chunk, no dlogits)", () => {
    const rng = new Rng(32);
    const h = randNormal(rng, [10, 8]).setRequiresGrad();
    const w = randNormal(rng, [20, 8]).setRequiresGrad();
    const tg = makeTargets(rng, 10, 20);
    const c = counting(backends[0]);
    const v = withBackend(c.b, () => noGrad(() => linearCrossEntropy(h, w, null, tg, { chunkTokens: 3 })));
    assert.equal(v.node, null);
    assert.equal(c.gemms.length, 4);
    assert.equal(c.ceBackward(), 0);
  });

  test("the default chunk keeps one chunk's f32 logits within LOSS_CHUNK_BYTES", () => {
    assert.equal(defaultLossChunkTokens(151936), 441);
    assert.equal(defaultLossChunkTokens(151936, 4, 32 * 2 ** 20), 55);
    for (const V of [1, 48, 32000, 151936, 262144, 1e7]) {
      const n = defaultLossChunkTokens(V);
      assert.ok(n >= 1 && Number.isInteger(n));
      if (n > 1) assert.ok(n * V * 4 <= LOSS_CHUNK_BYTES);
    }
  });

  test("backward twice through one loss is refused", () => {
    const rng = new Rng(33);
    const h = randNormal(rng, [3, 4]).setRequiresGrad();
    const w = randNormal(rng, [5, 4]);
    const tg = makeTargets(rng, 3, 5);
    tidy(() => {
      const loss = linearCrossEntropy(h, w, null, tg);
      backward(loss);
      assert.throws(() => backward(loss), LorakitError);
    });
    h.grad = null;
  });
});

describe("linearCrossEntropy: errors", () => {
  const rng = new Rng(41);
  const h = randNormal(rng, [4, 3]);
  const w = randNormal(rng, [5, 3]);
  const tg = tensor([0, 1, 2, 3], [4], "i32");
  test("shapes, dtypes, targets, options", () => {
    assert.throws(() => linearCrossEntropy(h, randNormal(rng, [5, 2]), null, tg), ShapeError);
    assert.throws(() => linearCrossEntropy(h, randNormal(rng, [15]), null, tg), ShapeError);
    assert.throws(() => linearCrossEntropy(h, w, randNormal(rng, [4]), tg), ShapeError);
    assert.throws(() => linearCrossEntropy(h, w, null, tensor([0, 1, 2], [3], "i32")), ShapeError);
    assert.throws(() => linearCrossEntropy(h, w, null, tensor([0, 1, 2, 3], [4])), DTypeError);
    assert.throws(() => linearCrossEntropy(h, w.to("f64"), null, tg), DTypeError);
    assert.throws(
      () => linearCrossEntropy(h, w, null, tensor([0, 1, 5, 3], [4], "i32")),
      (e: Error) => e instanceof IndexError && /target 5 at row 2 is outside \[0, 5\)/.test(e.message),
    );
    assert.throws(() => linearCrossEntropy(h, w, null, tensor([0, -1, 2, 3], [4], "i32")), IndexError);
    assert.throws(() => linearCrossEntropy(h, w, null, tg, { chunkTokens: 0 }), ShapeError);
    assert.throws(() => linearCrossEntropy(h, w, null, tg, { chunkTokens: 1.5 }), ShapeError);
    assert.throws(() => linearCrossEntropy(h, w, null, tg, { reduction: "none" as "sum" }), ShapeError);
  });
});

describe("model.loss = crossEntropy(forward)", () => {
  const IDS = [
    [3, 7, 11, 2, 9, 30, 4, 1],
    [5, 5, 40, 12, 8, 19, 22, 6],
  ];
  const TARGETS = [7, 11, 2, 9, -100, 4, 1, 0, -100, -100, 12, 8, 19, 22, 6, 47];
  const ids = () => tensor(IDS, [2, 8], "i32");
  const targets = () => tensor(TARGETS, [16], "i32");

  function unfused(m: { forward(x: Tensor): Tensor }, opts: { reduction?: "mean" | "sum" } = {}): Tensor {
    const logits = m.forward(ids());
    return crossEntropy(reshape(logits, [-1, logits.shape[2]]), targets(), opts);
  }

  function trainableModel(tied: boolean): LlamaForCausalLM {
    const m = tinyModel(3, { tie_word_embeddings: tied, attention_bias: true });
    for (const p of m.parameters()) p.requiresGrad = true;
    return m;
  }

  for (const tied of [false, true])
    for (const chunk of [null, 3])
      test(`full fine-tuning, ${tied ? "tied" : "untied"} head, chunk ${chunk ?? "default"}`, () => {
        const m = trainableModel(tied);
        if (tied) assert.equal(m.lm_head.weight, m.model.embed_tokens.weight);
        m.lossChunkTokens = chunk;
        const params = [...m.parameters()];
        const want = lossAndGrads(params, () => unfused(m));
        const got = lossAndGrads(params, () => m.loss(ids(), targets()));
        assertClose([got.loss], [want.loss], "loss");
        const names = [...m.namedParameters()].map(([n]) => n);
        params.forEach((_, i) => {
          assert.ok(got.grads[i] && want.grads[i], `${names[i]} got a gradient`);
          assertClose(got.grads[i]!, want.grads[i]!, names[i]);
        });
        const s = noGrad(() => m.loss(ids(), targets().view([2, 8]), { reduction: "sum" }).item());
        const sw = noGrad(() => unfused(m, { reduction: "sum" }).item());
        assertClose([s], [sw], "sum loss");
      });

  for (const targetModules of [
    ["q_proj", "v_proj"],
    ["q_proj", "lm_head"],
  ])
    test(`LoRA on ${targetModules.join(", ")}: loss and LoRA gradients`, () => {
      const pm = getPeftModel(tinyModel(4), { r: 4, loraAlpha: 8, targetModules, initLoraWeights: false });
      pm.baseModel.lossChunkTokens = 5;
      const params = [...pm.parameters()].filter((p) => p.requiresGrad);
      assert.ok(params.length >= 4);
      const want = lossAndGrads(params, () => unfused(pm));
      const got = lossAndGrads(params, () => pm.loss(ids(), targets()));
      assertClose([got.loss], [want.loss], "loss");
      params.forEach((_, i) => {
        assertClose(got.grads[i]!, want.grads[i]!, `LoRA param ${i}`);
      });
      const mixed = ["default", "__base__"];
      const wantMixed = noGrad(() => {
        const logits = pm.forward(ids(), { adapterNames: mixed });
        return crossEntropy(reshape(logits, [-1, logits.shape[2]]), targets()).item();
      });
      const gotMixed = noGrad(() => pm.loss(ids(), targets(), { adapterNames: mixed }).item());
      assertClose([gotMixed], [wantMixed], "mixed-batch loss");
    });
});
