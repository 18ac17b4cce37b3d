// Every op's backward rule against central finite differences in f64.
import { describe, test } from "node:test";
import type { Tensor } from "../../src/core/index.js";
import * as L from "../../src/core/index.js";
import { Rng, randNormal, tensor } from "../../src/core/index.js";
import { gradcheck, randn } from "../util/gradcheck.js";

const rng = new Rng(1234);
const r = (...shape: number[]) => randn(rng, shape);
const positive = (...shape: number[]) => {
  const t = r(...shape);
  const d = t.data;
  for (let i = 0; i < d.length; i++) d[i] = 0.5 + Math.abs(d[i]);
  return t;
};
const constant = (...shape: number[]) => randNormal(rng, shape, 0, 1, "f64");

describe("gradcheck: element-wise with broadcasting", () => {
  const cases: [string, (a: Tensor, b: Tensor) => Tensor, number[], number[]][] = [
    ["add", L.add, [3, 4], [3, 4]],
    ["add broadcast row", L.add, [3, 4], [4]],
    ["add broadcast both", L.add, [3, 1, 5], [1, 4, 1]],
    ["sub broadcast", L.sub, [2, 3, 5], [3, 1]],
    ["mul broadcast", L.mul, [5, 3], [5, 1]],
    ["maximum", L.maximum, [4, 3], [3]],
  ];
  for (const [name, f, sa, sb] of cases) test(name, () => gradcheck(name, f, [r(...sa), r(...sb)]));
  test("div broadcast", () => gradcheck("div", L.div, [r(3, 5), positive(5)]));
  test("scalar operand", () => gradcheck("mul scalar", (a) => L.mul(L.add(a, 2), 3), [r(7)]));
});

describe("gradcheck: unary", () => {
  const un: [string, (x: Tensor) => Tensor][] = [
    ["neg", L.neg],
    ["exp", L.exp],
    ["tanh", L.tanh],
    ["sigmoid", L.sigmoid],
    ["silu", L.silu],
    ["gelu_erf", (x) => L.gelu(x)],
    ["gelu_tanh", (x) => L.gelu(x, "tanh")],
    ["square", L.square],
    ["scale", (x) => L.scale(x, -2.5)],
    // Kinked at 0: the random points sit away from it by more than h.
    ["abs", L.abs],
    ["relu", L.relu],
  ];
  for (const [name, f] of un) test(name, () => gradcheck(name, f, [r(3, 7)]));
  test("log", () => gradcheck("log", L.log, [positive(11)]));
  test("sqrt", () => gradcheck("sqrt", L.sqrt, [positive(11)]));
  test("rsqrt", () => gradcheck("rsqrt", L.rsqrt, [positive(11)]));
  test("pow 3", () => gradcheck("pow", (x) => L.pow(x, 3), [r(9)]));
  test("pow 0.5", () => gradcheck("pow", (x) => L.pow(x, 0.5), [positive(9)]));
});

describe("gradcheck: reductions", () => {
  test("sum all", () => gradcheck("sum", (x) => L.sum(x), [r(3, 4)]));
  test("sum axes 0,2", () => gradcheck("sum", (x) => L.sum(x, [0, 2]), [r(3, 4, 5)]));
  test("mean axis -1 keepDims", () => gradcheck("mean", (x) => L.mean(x, -1, true), [r(3, 4, 5)]));
  test("max axis 1", () => gradcheck("max", (x) => L.max(x, 1), [r(4, 6, 3)]));
  test("max all", () => gradcheck("max", (x) => L.max(x), [r(5, 3)]));
});

describe("gradcheck: shape ops", () => {
  test("reshape", () => gradcheck("reshape", (x) => L.mul(L.reshape(x, [6, -1]), 2), [r(2, 3, 4)]));
  test("permute", () => gradcheck("permute", (x) => L.permute(x, [2, 0, 1]), [r(2, 3, 4)]));
  test("transpose", () => gradcheck("permute (transpose)", (x) => L.transpose(x, 0, 2), [r(2, 3, 5)]));
  test("slice", () => gradcheck("slice", (x) => L.slice(x, 1, 1, 4), [r(2, 5, 3)]));
  test("slice negative", () => gradcheck("slice", (x) => L.slice(x, -1, -2), [r(3, 5)]));
  test("concat", () =>
    gradcheck("concat", (a, b, c) => L.concat([a, b, c], 1), [r(2, 1, 3), r(2, 4, 3), r(2, 2, 3)]));
});

describe("gradcheck: matmul and linear", () => {
  for (const transA of [false, true])
    for (const transB of [false, true]) {
      test(`matmul 2-D transA=${transA} transB=${transB}`, () => {
        const [m, k, n] = [3, 5, 4];
        const a = transA ? r(k, m) : r(m, k);
        const b = transB ? r(n, k) : r(k, n);
        gradcheck("matmul", (x, y) => L.matmul(x, y, { transA, transB }), [a, b]);
      });
      test(`matmul batched transA=${transA} transB=${transB}`, () => {
        const [bt, m, k, n] = [2, 3, 5, 4];
        const a = transA ? r(bt, k, m) : r(bt, m, k);
        const b = transB ? r(bt, n, k) : r(bt, k, n);
        gradcheck("matmul", (x, y) => L.matmul(x, y, { transA, transB }), [a, b]);
      });
      test(`matmul shared 2-D b transA=${transA} transB=${transB}`, () => {
        const [bt, m, k, n] = [3, 2, 5, 4];
        const a = transA ? r(bt, k, m) : r(bt, m, k);
        const b = transB ? r(n, k) : r(k, n);
        gradcheck("matmul", (x, y) => L.matmul(x, y, { transA, transB }), [a, b]);
      });
    }
  test("linear with bias", () =>
    gradcheck("linear", (x, w, b) => L.linear(x, w, b), [r(2, 3, 5), r(4, 5), r(4)]));
  test("linear without bias, frozen weight", () =>
    gradcheck("linear", (x, w) => L.linear(x, w), [r(3, 5), constant(4, 5)]));
});

describe("gradcheck: indexing", () => {
  test("scatterRows (rows into a zero tensor, the mixed batch's backward)", () => {
    const ids = tensor([3, 0], [2], "i32");
    gradcheck("scatterRows", (t) => L.scatterRows(t, ids, 5), [r(2, 4)]);
  });
  test("broadcastTo", () => gradcheck("broadcastTo", (x) => L.broadcastTo(x, [3, 4, 5]), [r(4, 1)]));
  test("embedding with repeated ids", () => {
    const ids = tensor(
      [
        [1, 3, 1],
        [0, 3, 3],
      ],
      undefined,
      "i32",
    );
    gradcheck("embedding", (t) => L.embedding(t, ids), [r(5, 4)]);
  });
  test("where with broadcast", () => {
    const cond = tensor([1, 0, 1, 1, 0], [5], "u8");
    gradcheck("where", (a, b) => L.where(cond, a, b), [r(3, 5), r(1)]);
  });
  test("maskedFill", () => {
    const mask = tensor([[1], [0], [1]], [3, 1], "u8");
    gradcheck("where (maskedFill)", (x) => L.maskedFill(x, mask, -3), [r(3, 4)]);
  });
});

describe("gradcheck: fused nn ops", () => {
  test("softmax", () => gradcheck("softmax", (x) => L.softmax(x), [r(3, 7)]));
  test("softmax axis 0", () => gradcheck("softmax", (x) => L.softmax(x, 0), [r(4, 3)]));
  test("logSoftmax", () => gradcheck("logSoftmax", (x) => L.logSoftmax(x), [r(3, 7)]));
  test("crossEntropy mean with ignored targets", () => {
    const t = tensor([2, -100, 0, 6, -100], [5], "i32");
    gradcheck("crossEntropy", (x) => L.crossEntropy(x, t), [r(5, 7)]);
  });
  test("crossEntropy sum / none", () => {
    const t = tensor(
      [
        [1, 2],
        [0, -100],
      ],
      [2, 2],
      "i32",
    );
    gradcheck("crossEntropy sum", (x) => L.crossEntropy(x, t, { reduction: "sum" }), [r(2, 2, 5)]);
    gradcheck("crossEntropy none", (x) => L.crossEntropy(x, t, { reduction: "none" }), [r(2, 2, 5)]);
  });
  test("rmsNorm", () => gradcheck("rmsNorm", (x, w) => L.rmsNorm(x, w, 1e-5), [r(2, 3, 9), r(9)]));
  test("rope with offset", () => {
    const inv = [1, 0.3, 0.05];
    const { cos, sin } = L.ropeTables(inv, 4, 3, "f64");
    gradcheck("rope", (x) => L.rope(x, cos, sin), [r(2, 4, 3, 6)]);
  });
  test("attention causal GQA", () =>
    gradcheck("attention", (q, k, v) => L.attention(q, k, v), [r(2, 5, 4, 3), r(2, 5, 2, 3), r(2, 5, 2, 3)]));
  test("attention causal with offset (KV-cache shape)", () =>
    gradcheck("attention", (q, k, v) => L.attention(q, k, v), [r(1, 3, 2, 4), r(1, 7, 1, 4), r(1, 7, 1, 4)]));
  test("attention non-causal", () =>
    gradcheck("attention", (q, k, v) => L.attention(q, k, v, { causal: false, scale: 0.7 }), [
      r(1, 4, 2, 3),
      r(1, 6, 2, 3),
      r(1, 6, 2, 3),
    ]));
  test("siluMul", () => gradcheck("siluMul", L.siluMul, [r(3, 8), r(3, 8)]));
  test("dropout replays its mask", () => {
    const p = 0.3;
    gradcheck("dropout", (x) => L.dropout(x, p, new Rng(5)), [r(40)]);
  });
});
