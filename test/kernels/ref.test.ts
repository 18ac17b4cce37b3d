// The reference backend against naive direct definitions (and finite differences in f64
// for every backward), on small odd sizes, in f32 and f64.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type AttentionParams,
  BINARY_OPS,
  type BinaryOp,
  dropoutUniform,
  type FloatArray,
  UNARY_OPS,
  type UnaryOp,
} from "../../src/core/backend.js";
import { bf16ToF32, f32ToBf16 } from "../../src/core/dtype.js";
import { erf } from "../../src/kernels/ref/erf.js";
import { refBackend as R } from "../../src/kernels/ref/index.js";

interface Ctor {
  new (n: number): FloatArray;
  new (values: ArrayLike<number>): FloatArray;
}
const DTYPES: [string, Ctor, number][] = [
  ["f32", Float32Array, 2e-5],
  ["f64", Float64Array, 1e-12],
];

/** mulberry32: a small seeded generator so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function rand<T extends FloatArray>(C: { new (n: number): T }, n: number, seed: number, lo = -1, hi = 1): T {
  const r = rng(seed);
  const a = new C(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

/** |a − e| ≤ tol·(1 + |e|) elementwise, with the first offender in the message. */
function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (a === e) continue;
    if (!(Math.abs(a - e) <= tol * (1 + Math.abs(e)))) {
      assert.fail(`${what}: element ${i} is ${a}, expected ${e} (tol ${tol})`);
    }
  }
}

function strides(shape: readonly number[]): number[] {
  const st = shape.map(() => 0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Multi-index of flat index i in shape. */
function unravel(i: number, shape: readonly number[]): number[] {
  const idx = shape.map(() => 0);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

/** Central differences of the scalar f at x (f64), perturbing x in place. */
function numGrad(x: Float64Array, f: () => number, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const old = x[i];
    x[i] = old + h;
    const fp = f();
    x[i] = old - h;
    const fm = f();
    x[i] = old;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

describe("ref backend", () => {
  test("name", () => assert.equal(R.name, "ref"));

  describe("gemm", () => {
    function naive(
      tA: boolean,
      tB: boolean,
      m: number,
      n: number,
      k: number,
      a: ArrayLike<number>,
      oa: number,
      b: ArrayLike<number>,
      ob: number,
      bconv: (v: number) => number,
    ): Float64Array {
      const c = new Float64Array(m * n);
      for (let i = 0; i < m; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) {
            const av = a[oa + (tA ? p * m + i : i * k + p)];
            const bv = bconv(b[ob + (tB ? j * k + p : p * n + j)]);
            s += av * bv;
          }
          c[i * n + j] = s;
        }
      return c;
    }
    const id = (v: number) => v;

    for (const [dt, C, tol] of DTYPES) {
      for (const tA of [false, true])
        for (const tB of [false, true]) {
          test(`${dt} transA=${tA} transB=${tB}, odd sizes, beta 0 over NaN`, () => {
            for (const [m, n, k] of [
              [1, 1, 1],
              [5, 7, 3],
              [13, 9, 17],
              [6, 250, 301], // several B panels
              [3, 4, 0],
            ]) {
              const a = rand(C, m * k, 1 + m);
              const b = rand(C, k * n, 2 + n);
              const c = new C(m * n).fill(Number.NaN);
              R.gemm({
                transA: tA,
                transB: tB,
                m,
                n,
                k,
                batch: 1,
                a,
                strideA: 0,
                b,
                strideB: 0,
                c,
                strideC: 0,
                alpha: 1,
                beta: 0,
              });
              close(c, naive(tA, tB, m, n, k, a, 0, b, 0, id), tol * Math.sqrt(k + 1), `${m}x${n}x${k}`);
            }
          });
        }

      test(`${dt} batched, shared (stride 0) operands, alpha and beta 1, gaps untouched`, () => {
        const [m, n, k, batch] = [5, 6, 7, 3];
        for (const [sA, sB] of [
          [m * k, k * n],
          [0, k * n],
          [m * k, 0],
        ]) {
          const a = rand(C, sA === 0 ? m * k : batch * sA, 11);
          const b = rand(C, sB === 0 ? k * n : batch * sB, 12);
          const sC = m * n + 2;
          const c0 = rand(C, batch * sC, 13);
          const c = c0.slice();
          R.gemm({
            transA: false,
            transB: true,
            m,
            n,
            k,
            batch,
            a,
            strideA: sA,
            b,
            strideB: sB,
            c,
            strideC: sC,
            alpha: 0.5,
            beta: 1,
          });
          const expect = c0.slice() as FloatArray;
          for (let bi = 0; bi < batch; bi++) {
            const ref = naive(false, true, m, n, k, a, bi * sA, b, bi * sB, id);
            for (let i = 0; i < m * n; i++) expect[bi * sC + i] = c0[bi * sC + i] + 0.5 * ref[i];
          }
          close(c, expect, tol, `strideA=${sA} strideB=${sB}`);
        }
      });

      test(`${dt} beta 0.25 scales C`, () => {
        const [m, n, k] = [3, 5, 4];
        const a = rand(C, m * k, 21);
        const b = rand(C, k * n, 22);
        const c0 = rand(C, m * n, 23);
        const c = c0.slice();
        R.gemm({
          transA: true,
          transB: false,
          m,
          n,
          k,
          batch: 1,
          a,
          strideA: 0,
          b,
          strideB: 0,
          c,
          strideC: 0,
          alpha: 2,
          beta: 0.25,
        });
        const ref = naive(true, false, m, n, k, a, 0, b, 0, id);
        close(
          c,
          Array.from(ref, (v, i) => 2 * v + 0.25 * c0[i]),
          tol,
          "beta 0.25",
        );
      });

      test(`${dt} bf16 B in every transpose form`, () => {
        const [m, n, k] = [7, 9, 11];
        const bf = rand(Float32Array, k * n, 31);
        const b = new Uint16Array(k * n);
        for (let i = 0; i < b.length; i++) b[i] = f32ToBf16(bf[i]);
        for (const tA of [false, true])
          for (const tB of [false, true]) {
            const a = rand(C, m * k, 32);
            const c = new C(m * n).fill(Number.NaN);
            R.gemm({
              transA: tA,
              transB: tB,
              m,
              n,
              k,
              batch: 1,
              a,
              strideA: 0,
              b,
              strideB: 0,
              c,
              strideC: 0,
              alpha: 1,
              beta: 0,
            });
            close(c, naive(tA, tB, m, n, k, a, 0, b, 0, bf16ToF32), tol, `bf16 tA=${tA} tB=${tB}`);
          }
      });
    }

    test("alpha 0 forms no product (BLAS)", () => {
      const a = new Float64Array([Number.POSITIVE_INFINITY, 1]);
      const b = new Float64Array([1, Number.NaN]);
      const c = new Float64Array([4]);
      const p = {
        transA: false,
        transB: false,
        m: 1,
        n: 1,
        k: 2,
        batch: 1,
        a,
        strideA: 0,
        b,
        strideB: 0,
        c,
        strideC: 0,
        alpha: 0,
        beta: 0.5,
      };
      R.gemm(p);
      assert.deepEqual(Array.from(c), [2]);
      c[0] = Number.NaN;
      R.gemm({ ...p, beta: 0 });
      assert.deepEqual(Array.from(c), [0]);
    });

    test("undersized operand is named", () => {
      const a = new Float32Array(5);
      const b = new Float32Array(6);
      const c = new Float32Array(6);
      assert.throws(
        () =>
          R.gemm({
            transA: false,
            transB: false,
            m: 2,
            n: 3,
            k: 3,
            batch: 1,
            a,
            strideA: 0,
            b,
            strideB: 0,
            c,
            strideC: 0,
            alpha: 1,
            beta: 0,
          }),
        /gemm: A holds 5 elements/,
      );
    });
  });

  describe("unary", () => {
    const ERF_TABLE: [number, number][] = [
      [0, 0.0],
      [1e-10, 1.1283791670955126e-10],
      [-3e-9, -3.3851375012865378e-9],
      [1e-5, 1.1283791670579e-5],
      [0.1, 0.1124629160182849],
      [-0.3, -0.3286267594591274],
      [0.5, 0.5204998778130465],
      [0.84, 0.7651427114549946],
      [0.85, 0.7706680576083526],
      [-1, -0.8427007929497149],
      [1.2, 0.9103139782296353],
      [1.3, 0.9340079449406524],
      [-2, -0.9953222650189527],
      [2.8, 0.9999249868053346],
      [2.9, 0.9999589021219005],
      [-3.5, -0.9999992569016276],
      [4, 0.9999999845827421],
      [5.5, 0.9999999999999927],
      [5.9, 0.9999999999999999],
      [6.1, 1.0],
      [-10, -1.0],
    ];

    test("erf matches CPython math.erf to ~1 ulp", () => {
      for (const [x, e] of ERF_TABLE) {
        assert.ok(Math.abs(erf(x) - e) <= 2.3e-16 * Math.abs(e), `erf(${x}) = ${erf(x)}, expected ${e}`);
      }
      assert.ok(Number.isNaN(erf(Number.NaN)));
      assert.equal(erf(Number.POSITIVE_INFINITY), 1);
    });

    const sig = (x: number) => 1 / (1 + Math.exp(-x));
    const DEF: Record<UnaryOp, (x: number, p: number) => number> = {
      neg: (x) => -x,
      exp: Math.exp,
      log: Math.log,
      sqrt: Math.sqrt,
      rsqrt: (x) => 1 / Math.sqrt(x),
      tanh: Math.tanh,
      sigmoid: sig,
      silu: (x) => x * sig(x),
      gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
      gelu_erf: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
      pow: (x, p) => x ** p,
      abs: Math.abs,
      square: (x) => x * x,
      scale: (x, p) => x * p,
      relu: (x) => Math.max(x, 0),
    };
    const POSITIVE = new Set<UnaryOp>(["log", "sqrt", "rsqrt", "pow"]);

    for (const [dt, C, tol] of DTYPES) {
      test(`${dt} forward of every op matches its definition`, () => {
        for (const op of UNARY_OPS) {
          const x = POSITIVE.has(op) ? rand(C, 23, 5, 0.1, 3) : rand(C, 23, 5, -4, 4);
          const out = new C(23).fill(Number.NaN);
          R.unary(op, x, out, 1.7);
          close(
            out,
            Array.from(x, (v) => DEF[op](v, 1.7)),
            tol,
            op,
          );
        }
      });
    }

    test("sigmoid and silu stay finite for large |x|", () => {
      const x = new Float64Array([-800, -50, 50, 800]);
      const out = new Float64Array(4);
      R.unary("sigmoid", x, out, 0);
      close(out, [0, 1 / (1 + Math.exp(50)), 1 / (1 + Math.exp(-50)), 1], 1e-15, "sigmoid");
      R.unary("silu", x, out, 0);
      assert.ok(out.every(Number.isFinite));
    });

    test("f64 backward of every op matches finite differences; accumulate adds", () => {
      for (const op of UNARY_OPS) {
        const x = POSITIVE.has(op) ? rand(Float64Array, 17, 9, 0.2, 3) : rand(Float64Array, 17, 9, -3, 3);
        const y = new Float64Array(17);
        R.unary(op, x, y, 1.7);
        const dy = rand(Float64Array, 17, 10);
        const dx = new Float64Array(17).fill(Number.NaN);
        R.unaryBackward(op, x, y, dy, dx, 1.7, false);
        const tmp = new Float64Array(17);
        const num = numGrad(x, () => {
          R.unary(op, x, tmp, 1.7);
          return dot(tmp, dy);
        });
        close(dx, num, 1e-7, `d${op}`);
        const dx2 = new Float64Array(17).fill(1);
        R.unaryBackward(op, x, y, dy, dx2, 1.7, true);
        close(
          dx2,
          Array.from(dx, (v) => v + 1),
          1e-14,
          `d${op} accumulate`,
        );
      }
    });

    test("pow backward with exponent 0 is 0", () => {
      const x = new Float64Array([0, 2]);
      const dx = new Float64Array(2);
      R.unaryBackward("pow", x, new Float64Array([1, 1]), new Float64Array([1, 1]), dx, 0, false);
      assert.deepEqual(Array.from(dx), [0, 0]);
    });
  });

  describe("binary", () => {
    const CASES: [number[], number[]][] = [
      [
        [3, 5],
        [3, 5],
      ],
      [
        [3, 5],
        [1, 5],
      ],
      [
        [3, 1],
        [1, 5],
      ],
      [
        [2, 3, 4],
        [2, 1, 4],
      ],
      [
        [1, 1],
        [3, 7],
      ],
      [
        [2, 1, 3, 1],
        [1, 4, 1, 5],
      ],
      [
        [4, 3, 1],
        [4, 3, 2],
      ],
    ];
    const DEF: Record<BinaryOp, (a: number, b: number) => number> = {
      add: (a, b) => a + b,
      sub: (a, b) => a - b,
      mul: (a, b) => a * b,
      div: (a, b) => a / b,
      eq: (a, b) => (a === b ? 1 : 0),
      maximum: (a, b) => Math.max(a, b),
    };
    for (const [dt, C, tol] of DTYPES) {
      test(`${dt} every op over broadcasting shapes`, () => {
        for (const [sa, sb] of CASES) {
          const outShape = sa.map((d, i) => Math.max(d, sb[i]));
          const a = rand(C, numel(sa), 3);
          const b = rand(C, numel(sb), 4);
          // some equal values so eq sees both outcomes
          for (let i = 0; i < Math.min(a.length, b.length); i += 2) b[i] = a[i];
          const stA = strides(sa);
          const stB = strides(sb);
          for (const op of BINARY_OPS) {
            const out = new C(numel(outShape)).fill(Number.NaN);
            R.binary(op, a, sa, b, sb, out, outShape);
            const expect = new Float64Array(out.length);
            for (let i = 0; i < out.length; i++) {
              const idx = unravel(i, outShape);
              const ia = idx.reduce((s, v, d) => s + (sa[d] === 1 ? 0 : v) * stA[d], 0);
              const ib = idx.reduce((s, v, d) => s + (sb[d] === 1 ? 0 : v) * stB[d], 0);
              expect[i] = DEF[op](a[ia], b[ib]);
            }
            close(out, expect, tol, `${op} [${sa}] [${sb}]`);
            // and the mirrored order
            const out2 = new C(out.length);
            R.binary(op, b, sb, a, sa, out2, outShape);
            assert.equal(out2.length, out.length);
          }
        }
      });
    }
    test("a shape that cannot broadcast is refused", () => {
      const a = new Float32Array(6);
      assert.throws(
        () => R.binary("add", a, [2, 3], a, [3, 2], new Float32Array(6), [2, 3]),
        /cannot broadcast/,
      );
    });
  });

  describe("reduce and broadcastTo", () => {
    for (const [dt, C, tol] of DTYPES) {
      test(`${dt} sum and max over several axes`, () => {
        const shape = [3, 4, 5, 2];
        const x = rand(C, numel(shape), 7);
        for (const axes of [[0], [1], [3], [0, 2], [1, 2], [0, 1, 2, 3], [0, 3], []]) {
          const outShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
          const stO = strides(outShape);
          for (const op of ["sum", "max"] as const) {
            const out = new C(numel(outShape)).fill(Number.NaN);
            R.reduce(op, x, shape, axes, out);
            const expect = new Float64Array(out.length).fill(op === "sum" ? 0 : Number.NEGATIVE_INFINITY);
            for (let i = 0; i < x.length; i++) {
              const idx = unravel(i, shape);
              const o = idx.reduce((s, v, d) => s + (axes.includes(d) ? 0 : v) * stO[d], 0);
              expect[o] = op === "sum" ? expect[o] + x[i] : Math.max(expect[o], x[i]);
            }
            close(out, expect, tol, `${op} axes [${axes}]`);
          }
        }
      });

      test(`${dt} broadcastTo`, () => {
        for (const [xs, os] of [
          [
            [3, 1, 5],
            [3, 4, 5],
          ],
          [
            [1, 4, 1],
            [2, 4, 3],
          ],
          [
            [1, 1],
            [2, 3],
          ],
          [
            [2, 3],
            [2, 3],
          ],
        ]) {
          const x = rand(C, numel(xs), 8);
          const out = new C(numel(os)).fill(Number.NaN);
          R.broadcastTo(x, xs, out, os);
          const stX = strides(xs);
          const expect = Array.from(
            out,
            (_v, i) => x[unravel(i, os).reduce((s, v, d) => s + (xs[d] === 1 ? 0 : v) * stX[d], 0)],
          );
          close(out, expect, 0, `[${xs}] -> [${os}]`);
        }
      });
    }
    test("max propagates NaN", () => {
      const out = new Float64Array(1);
      R.reduce("max", new Float64Array([1, Number.NaN, 3]), [3], [0], out);
      assert.ok(Number.isNaN(out[0]));
    });
  });

  describe("layout", () => {
    for (const [dt, C] of DTYPES) {
      test(`${dt} permute`, () => {
        const shape = [2, 3, 4, 5];
        const x = rand(C, numel(shape), 9);
        const st = strides(shape);
        for (const perm of [
          [0, 1, 2, 3],
          [0, 2, 1, 3],
          [3, 2, 1, 0],
          [1, 0, 3, 2],
          [2, 3, 0, 1],
        ]) {
          const outShape = perm.map((p) => shape[p]);
          const out = new C(x.length).fill(Number.NaN);
          R.permute(x, shape, perm, out);
          const expect = Array.from(out, (_v, i) => {
            const idx = unravel(i, outShape);
            return x[idx.reduce((s, v, d) => s + v * st[perm[d]], 0)];
          });
          close(out, expect, 0, `perm [${perm}]`);
        }
      });

      test(`${dt} copyAxis: slice, concat, accumulate`, () => {
        // x (2,5,3): rows 1..3 of axis 1 go to rows 1..3 of out (2,4,3)
        const x = rand(C, 2 * 5 * 3, 10);
        const out0 = rand(C, 2 * 4 * 3, 11);
        for (const accumulate of [false, true]) {
          const out = out0.slice();
          R.copyAxis(x, 2, 5, 3, 1, out, 4, 1, 3, accumulate);
          const expect = Array.from(out0);
          for (let o = 0; o < 2; o++)
            for (let r = 0; r < 3; r++)
              for (let i = 0; i < 3; i++) {
                const d = (o * 4 + 1 + r) * 3 + i;
                const s = (o * 5 + 1 + r) * 3 + i;
                expect[d] = (accumulate ? out0[d] : 0) + x[s];
              }
          close(out, expect, 1e-6, `accumulate=${accumulate}`);
        }
        assert.throws(() => R.copyAxis(x, 2, 5, 3, 3, out0, 4, 0, 3, false), /out of range/);
      });

      test(`${dt} gather and scatterAdd with repeated indices`, () => {
        const [V, Cc] = [5, 3];
        const table = rand(C, V * Cc, 12);
        const idx = new Int32Array([4, 0, 4, 2, 4]);
        const out = new C(idx.length * Cc).fill(Number.NaN);
        R.gather(table, idx, Cc, out);
        close(
          out,
          Array.from(out, (_v, i) => table[idx[Math.floor(i / Cc)] * Cc + (i % Cc)]),
          0,
          "gather",
        );
        const dOut = rand(C, idx.length * Cc, 13);
        const dT = new C(V * Cc).fill(1);
        R.scatterAdd(dOut, idx, Cc, dT);
        const expect = new Float64Array(V * Cc).fill(1);
        idx.forEach((t, i) => {
          for (let c = 0; c < Cc; c++) expect[t * Cc + c] += dOut[i * Cc + c];
        });
        close(dT, expect, 1e-6, "scatterAdd");
      });

      test(`${dt} where`, () => {
        const a = rand(C, 7, 14);
        const b = rand(C, 7, 15);
        const cond = new Uint8Array([1, 0, 0, 1, 1, 0, 1]);
        const out = new C(7);
        R.where(cond, a, b, out);
        close(
          out,
          Array.from(cond, (c, i) => (c ? a[i] : b[i])),
          0,
          "where",
        );
      });
    }
  });

  describe("dropout", () => {
    for (const [dt, C] of DTYPES) {
      test(`${dt} rate, scale, replay and offset`, () => {
        const n = 20001;
        const p = 0.3;
        const x = rand(C, n, 16, 0.5, 1.5);
        const out = new C(n);
        R.dropout(x, out, p, 1234, 77);
        let kept = 0;
        for (let i = 0; i < n; i++) {
          if (out[i] !== 0) {
            kept++;
            assert.ok(Math.abs(out[i] - x[i] / (1 - p)) <= 1e-6 * Math.abs(out[i]));
          }
          assert.equal(out[i] !== 0, dropoutUniform(1234, 77 + i) >= p);
        }
        assert.ok(Math.abs(1 - kept / n - p) < 0.015, `drop rate ${1 - kept / n}`);
        // backward = the same call on dy: same mask
        const dy = new C(n).fill(1);
        const dx = new C(n);
        R.dropout(dy, dx, p, 1234, 77);
        for (let i = 0; i < n; i++) assert.equal(dx[i] !== 0, out[i] !== 0);
        // a slice at offset 77 + 100 draws the same mask as elements 100.. of the whole
        const part = new C(50);
        R.dropout(x.subarray(100, 150) as FloatArray, part, p, 1234, 177);
        close(part, out.subarray(100, 150), 0, "offset");
        // another seed draws another mask
        const other = new C(n);
        R.dropout(x, other, p, 99, 77);
        assert.notDeepEqual(Array.from(other.subarray(0, 64)), Array.from(out.subarray(0, 64)));
      });
    }
    test("p = 0 keeps everything", () => {
      const x = rand(Float64Array, 9, 3);
      const out = new Float64Array(9);
      R.dropout(x, out, 0, 5, 0);
      assert.deepEqual(out, x);
    });
  });

  describe("softmax family and cross-entropy", () => {
    const [N, Cc] = [4, 7];
    for (const [dt, C, tol] of DTYPES) {
      test(`${dt} softmax and logSoftmax forward, stable for large logits`, () => {
        const x = rand(C, N * Cc, 17, -3, 3);
        x[0] = 1000; // row 0 would overflow without the max shift
        const sm = new C(N * Cc);
        const lsm = new C(N * Cc);
        R.softmax(x, N, Cc, sm);
        R.logSoftmax(x, N, Cc, lsm);
        for (let r = 0; r < N; r++) {
          const row = Array.from(x.subarray(r * Cc, (r + 1) * Cc));
          const m = Math.max(...row);
          const s = row.reduce((a, v) => a + Math.exp(v - m), 0);
          close(
            sm.subarray(r * Cc, (r + 1) * Cc),
            row.map((v) => Math.exp(v - m) / s),
            tol,
            `softmax row ${r}`,
          );
          close(
            lsm.subarray(r * Cc, (r + 1) * Cc),
            row.map((v) => v - m - Math.log(s)),
            tol,
            `logSoftmax row ${r}`,
          );
        }
      });

      test(`${dt} cross-entropy with ignored rows`, () => {
        const V = 9;
        const logits = rand(C, N * V, 18, -4, 4);
        const targets = new Int32Array([3, -100, 0, 8]);
        const loss = new C(N).fill(Number.NaN);
        const lse = new C(N).fill(Number.NaN);
        R.crossEntropy(logits, targets, N, V, -100, loss, lse);
        for (let r = 0; r < N; r++) {
          const row = Array.from(logits.subarray(r * V, (r + 1) * V));
          const l = Math.log(row.reduce((a, v) => a + Math.exp(v), 0));
          close([lse[r]], [l], tol, `lse ${r}`);
          close([loss[r]], [targets[r] === -100 ? 0 : l - row[targets[r]]], tol, `loss ${r}`);
        }
        const gs = rand(C, N, 19, 0.5, 1);
        const dl = new C(N * V).fill(Number.NaN);
        R.crossEntropyBackward(logits, targets, lse, gs, N, V, -100, dl, false);
        for (let r = 0; r < N; r++)
          for (let c = 0; c < V; c++) {
            const i = r * V + c;
            const e =
              targets[r] === -100 ? 0 : gs[r] * (Math.exp(logits[i] - lse[r]) - (c === targets[r] ? 1 : 0));
            close([dl[i]], [e], tol, `dlogits ${r},${c}`);
          }
        const acc = new C(N * V).fill(2);
        R.crossEntropyBackward(logits, targets, lse, gs, N, V, -100, acc, true);
        close(
          acc,
          Array.from(dl, (v) => v + 2),
          tol,
          "accumulate",
        );
        assert.throws(
          () => R.crossEntropy(logits, new Int32Array([9, 0, 0, 0]), N, V, -100, loss, lse),
          /target 9 of row 0/,
        );
      });
    }

    test("f64 backward of softmax, logSoftmax and cross-entropy match finite differences", () => {
      const x = rand(Float64Array, N * Cc, 20, -2, 2);
      const dy = rand(Float64Array, N * Cc, 21);
      const y = new Float64Array(N * Cc);
      for (const kind of ["softmax", "logSoftmax"] as const) {
        const fwd = kind === "softmax" ? R.softmax : R.logSoftmax;
        fwd(x, N, Cc, y);
        const dx = new Float64Array(N * Cc).fill(Number.NaN);
        if (kind === "softmax") R.softmaxBackward(y, dy, N, Cc, dx, false);
        else R.logSoftmaxBackward(y, dy, N, Cc, dx, false);
        const tmp = new Float64Array(N * Cc);
        const num = numGrad(x, () => {
          fwd(x, N, Cc, tmp);
          return dot(tmp, dy);
        });
        close(dx, num, 1e-8, kind);
        const dx2 = new Float64Array(N * Cc).fill(-1);
        if (kind === "softmax") R.softmaxBackward(y, dy, N, Cc, dx2, true);
        else R.logSoftmaxBackward(y, dy, N, Cc, dx2, true);
        close(
          dx2,
          Array.from(dx, (v) => v - 1),
          1e-14,
          `${kind} accumulate`,
        );
      }
      const targets = new Int32Array([1, 6, -1, 0]);
      const gs = new Float64Array([0.25, 0.5, 1, 2]);
      const loss = new Float64Array(N);
      const lse = new Float64Array(N);
      R.crossEntropy(x, targets, N, Cc, -1, loss, lse);
      const dl = new Float64Array(N * Cc);
      R.crossEntropyBackward(x, targets, lse, gs, N, Cc, -1, dl, false);
      const num = numGrad(x, () => {
        R.crossEntropy(x, targets, N, Cc, -1, loss, lse);
        return dot(loss, gs);
      });
      close(dl, num, 1e-8, "crossEntropy");
    });
  });

  describe("rmsNorm", () => {
    const [N, Cc, eps] = [3, 11, 1e-5];
    for (const [dt, C, tol] of DTYPES) {
      test(`${dt} forward`, () => {
        const x = rand(C, N * Cc, 22);
        const w = rand(C, Cc, 23);
        const y = new C(N * Cc);
        const rstd = new C(N);
        R.rmsNorm(x, w, N, Cc, eps, y, rstd);
        for (let r = 0; r < N; r++) {
          const row = Array.from(x.subarray(r * Cc, (r + 1) * Cc));
          const rs = 1 / Math.sqrt(row.reduce((a, v) => a + v * v, 0) / Cc + eps);
          close([rstd[r]], [rs], tol, "rstd");
          close(
            y.subarray(r * Cc, (r + 1) * Cc),
            row.map((v, c) => v * rs * w[c]),
            tol,
            `row ${r}`,
          );
        }
      });
    }
    test("f64 backward matches finite differences; dw adds, dx accumulates, nulls skip", () => {
      const x = rand(Float64Array, N * Cc, 24);
      const w = rand(Float64Array, Cc, 25);
      const dy = rand(Float64Array, N * Cc, 26);
      const y = new Float64Array(N * Cc);
      const rstd = new Float64Array(N);
      R.rmsNorm(x, w, N, Cc, eps, y, rstd);
      const dx = new Float64Array(N * Cc).fill(Number.NaN);
      const dw = new Float64Array(Cc).fill(0.5);
      R.rmsNormBackward(x, w, rstd, dy, N, Cc, dx, dw, false);
      const loss = () => {
        R.rmsNorm(x, w, N, Cc, eps, y, rstd);
        return dot(y, dy);
      };
      close(dx, numGrad(x, loss), 1e-8, "dx");
      close(
        dw,
        Array.from(numGrad(w, loss), (v) => v + 0.5),
        1e-8,
        "dw",
      );
      R.rmsNorm(x, w, N, Cc, eps, y, rstd);
      const dx2 = new Float64Array(N * Cc).fill(1);
      R.rmsNormBackward(x, w, rstd, dy, N, Cc, dx2, null, true);
      close(
        dx2,
        Array.from(dx, (v) => v + 1),
        1e-14,
        "dx accumulate",
      );
      const dw2 = new Float64Array(Cc);
      R.rmsNormBackward(x, w, rstd, dy, N, Cc, null, dw2, false);
      close(
        dw2,
        Array.from(dw, (v) => v - 0.5),
        1e-14,
        "dw only",
      );
    });
  });

  describe("rope", () => {
    const [B, T, H, D] = [2, 3, 3, 6];
    for (const [dt, C, tol] of DTYPES) {
      test(`${dt} matches rotate-half and inverse is the identity`, () => {
        const x = rand(C, B * T * H * D, 27);
        const cos = new C(T * (D / 2));
        const sin = new C(T * (D / 2));
        for (let t = 0; t < T; t++)
          for (let i = 0; i < D / 2; i++) {
            const th = (t + 5) * 10000 ** (-(2 * i) / D);
            cos[t * (D / 2) + i] = Math.cos(th);
            sin[t * (D / 2) + i] = Math.sin(th);
          }
        const out = new C(x.length).fill(Number.NaN);
        R.rope(x, cos, sin, B, T, H, D, false, out);
        const expect = new Float64Array(x.length);
        for (let i = 0; i < x.length; i++) {
          const d = i % D;
          const t = Math.floor(i / (H * D)) % T;
          const j = d % (D / 2);
          const c = cos[t * (D / 2) + j];
          const s = sin[t * (D / 2) + j];
          const base = i - d;
          // HF: x·cos + rotate_half(x)·sin, rotate_half(x) = [−x2, x1]
          const rot = d < D / 2 ? -x[base + d + D / 2] : x[base + d - D / 2];
          expect[i] = x[i] * c + rot * s;
        }
        close(out, expect, tol, "rope");
        const back = new C(x.length);
        R.rope(out, cos, sin, B, T, H, D, true, back);
        close(back, x, tol, "inverse");
        // in place
        const inplace = x.slice();
        R.rope(inplace, cos, sin, B, T, H, D, false, inplace);
        close(inplace, out, 0, "in place");
      });
    }
  });

  describe("attention", () => {
    interface Case {
      B: number;
      T: number;
      S: number;
      H: number;
      Hkv: number;
      D: number;
      kvCapacity: number;
      offset: number;
      causal: boolean;
    }
    const CASES: Case[] = [
      { B: 2, T: 5, S: 5, H: 4, Hkv: 2, D: 3, kvCapacity: 5, offset: 0, causal: true },
      { B: 2, T: 3, S: 7, H: 4, Hkv: 2, D: 5, kvCapacity: 9, offset: 4, causal: true },
      { B: 1, T: 3, S: 6, H: 4, Hkv: 2, D: 3, kvCapacity: 8, offset: 0, causal: false },
      { B: 1, T: 2, S: 4, H: 3, Hkv: 1, D: 4, kvCapacity: 4, offset: 1, causal: true },
      { B: 1, T: 3, S: 3, H: 2, Hkv: 2, D: 2, kvCapacity: 3, offset: 0, causal: true },
    ];

    function make<T extends FloatArray>(C: { new (n: number): T }, c: Case, seed: number): AttentionParams {
      const q = rand(C, c.B * c.T * c.H * c.D, seed);
      const k = rand(C, c.B * c.kvCapacity * c.Hkv * c.D, seed + 1);
      const v = rand(C, c.B * c.kvCapacity * c.Hkv * c.D, seed + 2);
      // rows past S must never be read
      for (let b = 0; b < c.B; b++)
        for (let s = c.S; s < c.kvCapacity; s++)
          for (let i = 0; i < c.Hkv * c.D; i++) {
            k[(b * c.kvCapacity + s) * c.Hkv * c.D + i] = Number.NaN;
            v[(b * c.kvCapacity + s) * c.Hkv * c.D + i] = Number.NaN;
          }
      return { ...c, q, k, v, scale: 1 / Math.sqrt(c.D) };
    }

    /** softmax(q·kᵀ·scale + mask)·v, kv head = h / (H/Hkv) as HF repeat_kv. */
    function naive(p: AttentionParams): { out: Float64Array; lse: Float64Array } {
      const { B, T, S, H, Hkv, D, kvCapacity } = p;
      const out = new Float64Array(B * T * H * D);
      const lse = new Float64Array(B * H * T);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++) {
          const hk = Math.floor(h / (H / Hkv));
          for (let t = 0; t < T; t++) {
            const scores: number[] = [];
            for (let s = 0; s < S; s++) {
              let z = 0;
              for (let d = 0; d < D; d++)
                z += p.q[((b * T + t) * H + h) * D + d] * p.k[((b * kvCapacity + s) * Hkv + hk) * D + d];
              scores.push(p.causal && s > p.offset + t ? Number.NEGATIVE_INFINITY : z * p.scale);
            }
            const m = Math.max(...scores);
            const e = scores.map((z) => Math.exp(z - m));
            const sum = e.reduce((a, v) => a + v, 0);
            lse[(b * H + h) * T + t] = m + Math.log(sum);
            for (let d = 0; d < D; d++) {
              let o = 0;
              for (let s = 0; s < S; s++) o += (e[s] / sum) * p.v[((b * kvCapacity + s) * Hkv + hk) * D + d];
              out[((b * T + t) * H + h) * D + d] = o;
            }
          }
        }
      return { out, lse };
    }

    for (const [dt, C, tol] of DTYPES) {
      test(`${dt} forward vs naive masked softmax (GQA, offset, kvCapacity > S, non-causal)`, () => {
        CASES.forEach((c, i) => {
          const p = make(C, c, 100 + i);
          const out = new C(c.B * c.T * c.H * c.D).fill(Number.NaN);
          const lse = new C(c.B * c.H * c.T).fill(Number.NaN);
          R.attention(p, out, lse);
          const ref = naive(p);
          close(out, ref.out, tol, `case ${i} out`);
          close(lse, ref.lse, tol, `case ${i} lse`);
        });
      });
    }

    test("f64 backward matches finite differences; dk, dv add, dq overwrites", () => {
      CASES.forEach((c, i) => {
        const p = make(Float64Array, c, 200 + i);
        const n = c.B * c.T * c.H * c.D;
        const out = new Float64Array(n);
        const lse = new Float64Array(c.B * c.H * c.T);
        R.attention(p, out, lse);
        const dout = rand(Float64Array, n, 300 + i);
        const dq = new Float64Array(n).fill(Number.NaN);
        const kvn = c.B * c.kvCapacity * c.Hkv * c.D;
        const dk = new Float64Array(kvn).fill(0.25);
        const dv = new Float64Array(kvn).fill(-0.5);
        R.attentionBackward(p, out, lse, dout, dq, dk, dv);
        const tmpOut = new Float64Array(n);
        const tmpLse = new Float64Array(lse.length);
        const loss = () => {
          R.attention(p, tmpOut, tmpLse);
          return dot(tmpOut, dout);
        };
        close(dq, numGrad(p.q as Float64Array, loss), 1e-7, `case ${i} dq`);
        // finite differences only on the valid rows (the others hold NaN)
        const valid = (j: number) => Math.floor(j / (c.Hkv * c.D)) % c.kvCapacity < c.S;
        for (const [name, arr, grad, init] of [
          ["dk", p.k, dk, 0.25],
          ["dv", p.v, dv, -0.5],
        ] as const) {
          const expect = new Float64Array(kvn);
          const x = arr as Float64Array;
          for (let j = 0; j < kvn; j++) {
            if (!valid(j)) {
              expect[j] = init;
              continue;
            }
            const old = x[j];
            x[j] = old + 1e-6;
            const fp = loss();
            x[j] = old - 1e-6;
            const fm = loss();
            x[j] = old;
            expect[j] = init + (fp - fm) / 2e-6;
          }
          close(grad, expect, 1e-7, `case ${i} ${name}`);
        }
        // nulls are skipped
        const dk2 = new Float64Array(kvn);
        R.attentionBackward(p, out, lse, dout, null, dk2, null);
        close(
          dk2,
          Array.from(dk, (v, j) => (valid(j) ? v - 0.25 : 0)),
          1e-13,
          `case ${i} dk only`,
        );
      });
    });

    test("query heads not a multiple of kv heads are refused", () => {
      const p = make(
        Float64Array,
        { B: 1, T: 1, S: 1, H: 3, Hkv: 2, D: 2, kvCapacity: 1, offset: 0, causal: true },
        1,
      );
      assert.throws(() => R.attention(p, new Float64Array(6), new Float64Array(3)), /multiple of Hkv=2/);
    });
  });

  describe("siluMul", () => {
    for (const [dt, C, tol] of DTYPES) {
      test(`${dt} forward`, () => {
        const g = rand(C, 13, 40, -5, 5);
        const u = rand(C, 13, 41);
        const out = new C(13);
        R.siluMul(g, u, out);
        close(
          out,
          Array.from(g, (v, i) => (v / (1 + Math.exp(-v))) * u[i]),
          tol,
          "siluMul",
        );
      });
    }
    test("f64 backward matches finite differences; accumulate and nulls", () => {
      const g = rand(Float64Array, 13, 42, -5, 5);
      const u = rand(Float64Array, 13, 43);
      const dy = rand(Float64Array, 13, 44);
      const dg = new Float64Array(13).fill(Number.NaN);
      const du = new Float64Array(13).fill(Number.NaN);
      R.siluMulBackward(g, u, dy, dg, du, false);
      const out = new Float64Array(13);
      const loss = () => {
        R.siluMul(g, u, out);
        return dot(out, dy);
      };
      close(dg, numGrad(g, loss), 1e-8, "dgate");
      close(du, numGrad(u, loss), 1e-8, "dup");
      const dg2 = new Float64Array(13).fill(3);
      R.siluMulBackward(g, u, dy, dg2, null, true);
      close(
        dg2,
        Array.from(dg, (v) => v + 3),
        1e-14,
        "dgate accumulate",
      );
    });
  });

  describe("optimizer and BLAS-1", () => {
    for (const [dt, C, tol] of DTYPES) {
      test(`${dt} adamw: three steps by hand`, () => {
        const [lr, b1, b2, eps, wd] = [0.01, 0.9, 0.999, 1e-8, 0.1];
        const param = new C([0.5, -1.5, 2, 0]);
        const m = new C(4);
        const v = new C(4);
        const grads = [
          [0.1, -0.2, 0.3, 0],
          [0.05, 0.4, -0.1, 1e-3],
          [-0.3, 0.1, 0.2, -2],
        ];
        const P = Array.from(param);
        const M = [0, 0, 0, 0];
        const Vv = [0, 0, 0, 0];
        grads.forEach((g, s) => {
          const t = s + 1;
          R.adamw({ param, grad: new C(g), m, v, lr, beta1: b1, beta2: b2, eps, weightDecay: wd, step: t });
          for (let i = 0; i < 4; i++) {
            P[i] *= 1 - lr * wd;
            M[i] = b1 * M[i] + (1 - b1) * g[i];
            Vv[i] = b2 * Vv[i] + (1 - b2) * g[i] * g[i];
            const denom = Math.sqrt(Vv[i]) / Math.sqrt(1 - b2 ** t) + eps;
            P[i] -= (lr / (1 - b1 ** t)) * (M[i] / denom);
          }
          close(param, P, tol, `param step ${t}`);
          close(m, M, tol, `m step ${t}`);
          close(v, Vv, tol, `v step ${t}`);
        });
      });

      test(`${dt} axpy and fill`, () => {
        const x = rand(C, 9, 50);
        const y = rand(C, 9, 51);
        const y0 = y.slice();
        R.axpy(-0.5, x, y);
        close(
          y,
          Array.from(y0, (v, i) => v - 0.5 * x[i]),
          tol,
          "axpy",
        );
        R.fill(y, 3.25);
        assert.ok(y.every((v) => v === 3.25));
      });
    }
  });
});
