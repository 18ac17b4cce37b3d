// The accuracy of the wasm backend's transcendental unary ops (c/vmath.h, c/unary.c) against
// the reference's f64 results rounded to f32, on dense sweeps of their range, in f32 ulp:
// tighter than the contract's tolerance, so a worse polynomial or a lost range reduction
// shows. Also the places where wasm is right and a cruder kernel is not: eˣ's subnormal
// results (no flush to 0 below −87), the special values' classes (NaN, ±inf, ±0), and
// gelu_tanh's derivative for |x| so large that x³ overflows f32.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import type { Backend, UnaryOp } from "../../src/core/backend.js";
import { refBackend } from "../../src/kernels/ref/index.js";
import { loadNodeWasmBackend } from "../../src/kernels/wasm/node/load.js";

const loaded = await loadNodeWasmBackend({ threads: 1 });
const wasm: Backend | null = "handle" in loaded ? loaded.handle.backend : null;
const skip = wasm === null ? "wasm kernels not built (npm run build:wasm)" : false;
after(() => {
  if ("handle" in loaded) loaded.handle.dispose();
});

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
/** Distance in f32 steps between two finite values (signs handled: −0 and +0 are 0 apart). */
function ulps(a: number, b: number): number {
  const ord = (v: number) => {
    f[0] = v;
    return u[0] & 0x80000000 ? -(u[0] & 0x7fffffff) : u[0];
  };
  return Math.abs(ord(a) - ord(b));
}

function sweep(lo: number, hi: number, n: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));
}

/** Both results of `op` on x: [wasm, reference]. */
function both(op: UnaryOp, x: Float32Array, param = 0): [Float32Array, Float32Array] {
  const a = new Float32Array(x.length);
  const b = new Float32Array(x.length);
  (wasm as Backend).unary(op, x, a, param);
  refBackend.unary(op, x, b, param);
  return [a, b];
}

/** The largest ulp distance where the reference's result is a normal number (or 0, or ±inf). */
function maxUlps(op: UnaryOp, x: Float32Array, param = 0): { worst: number; at: number } {
  const [a, b] = both(op, x, param);
  let worst = 0;
  let at = 0;
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(b[i])) {
      assert.ok(Number.isNaN(a[i]), `${op}(${x[i]}) = ${a[i]}, reference NaN`);
      continue;
    }
    if (b[i] !== 0 && Math.abs(b[i]) < 2 ** -126) continue; // subnormal: checked absolutely below
    const d = ulps(a[i], b[i]);
    if (d > worst) [worst, at] = [d, x[i]];
  }
  return { worst, at };
}

describe("wasm transcendental unary ops: accuracy", { skip }, () => {
  const N = 200_001;
  for (const [op, lo, hi, bound] of [
    ["exp", -103, 88.72, 1],
    ["exp", -1, 1, 1],
    ["log", 1e-30, 10, 1],
    ["log", 0.5, 2, 1],
    ["tanh", -10, 10, 1],
    ["tanh", -0.7, 0.7, 1],
    ["sigmoid", -80, 80, 2],
    ["silu", -20, 20, 4],
    // The GELUs' f32 argument (√(2/π)(x + κx³), x/√2) carries its rounding into σ or erfc, whose
    // relative sensitivity grows with |x| in the lower tail: 16 ulp at x = −3.
    ["gelu_tanh", -3, 6, 16],
    ["gelu_erf", -3, 6, 16],
    ["gelu_tanh", -1, 6, 4],
    ["gelu_erf", -1, 6, 4],
  ] as const) {
    test(`${op} on [${lo}, ${hi}] is within ${bound} ulp of the reference`, () => {
      const { worst, at } = maxUlps(op, sweep(lo, hi, N));
      assert.ok(worst <= bound, `${op}: ${worst} ulp at x = ${at}`);
    });
  }

  test("log over every binade, subnormal inputs included, is within 1 ulp", () => {
    const x = Float32Array.from({ length: N }, (_, i) => 2 ** (-149 + (277 * i) / N));
    const { worst, at } = maxUlps("log", x);
    assert.ok(worst <= 1, `log: ${worst} ulp at x = ${at}`);
  });

  // w = p·log₂|x| is formed in f64, so only ln m's f32 error (|ln m| < ½) is multiplied by p.
  test("pow is within 3 + |p|/2 ulp, however large |p·log₂ x|", () => {
    for (const p of [2.5, 3, -2, 0.5, 7.3, -0.75, 31.5]) {
      const x = sweep(-10, 100, N);
      const [a, b] = both("pow", x, p);
      for (let i = 0; i < x.length; i++) {
        if (Number.isNaN(b[i])) {
          assert.ok(Number.isNaN(a[i]), `pow(${x[i]}, ${p}) = ${a[i]}, reference NaN`);
          continue;
        }
        if (!Number.isFinite(b[i]) || Math.abs(b[i]) < 2 ** -126) continue;
        assert.ok(ulps(a[i], b[i]) <= 3 + Math.abs(p) / 2, `pow(${x[i]}, ${p}) = ${a[i]}, reference ${b[i]}`);
      }
    }
  });

  test("eˣ of −103 … −87 is the subnormal or small normal result, not 0", () => {
    const x = sweep(-103.9, -86.9, 20_001);
    const [a, b] = both("exp", x);
    for (let i = 0; i < x.length; i++) {
      assert.ok(a[i] > 0 || b[i] === 0, `exp(${x[i]}) = ${a[i]}, reference ${b[i]}`);
      // One subnormal step (2ⁿ is applied to a 1-ulp e^r), or 2 ulp of a normal result.
      assert.ok(
        Math.abs(a[i] - b[i]) <= 2 ** -149 + 2 ** -22 * b[i],
        `exp(${x[i]}) = ${a[i]}, reference ${b[i]}`,
      );
    }
  });

  test("the far tails: gelu and silu within 1e-6 absolute (the reference itself cancels there)", () => {
    const x = sweep(-120, -3, N);
    for (const op of ["gelu_tanh", "gelu_erf", "silu", "sigmoid", "tanh"] as const) {
      const [a, b] = both(op, x);
      for (let i = 0; i < x.length; i++)
        assert.ok(Math.abs(a[i] - b[i]) <= 1e-6, `${op}(${x[i]}) = ${a[i]}, reference ${b[i]}`);
    }
  });

  test("special values give the reference's class: NaN, ±inf, ±0, ±1", () => {
    const x = Float32Array.of(
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      0,
      -0,
      1e-45,
      -1e-45,
      3.4e38,
      -3.4e38,
      89,
      -105,
    );
    const ops = ["exp", "log", "tanh", "sigmoid", "silu", "gelu_tanh", "gelu_erf"] as const;
    const cases: [UnaryOp, number][] = [...ops.map((op): [UnaryOp, number] => [op, 0])];
    for (const p of [
      2.5,
      3,
      -3,
      0,
      -0.5,
      2,
      1,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      Number.NaN,
    ])
      cases.push(["pow", p]);
    for (const [op, p] of cases) {
      const [a, b] = both(op, x, p);
      for (let i = 0; i < x.length; i++) {
        const same =
          Object.is(a[i], b[i]) ||
          (Number.isNaN(a[i]) && Number.isNaN(b[i])) ||
          // A finite, non-zero result may differ by rounding; a subnormal one (silu, gelu of
          // x < −87: σ below 2⁻¹²⁶) may come out as a few steps off or ±0.
          (Number.isFinite(b[i]) &&
            b[i] !== 0 &&
            (Math.abs(b[i]) < 2 ** -126
              ? Math.abs(a[i] - b[i]) <= 1e-40
              : Math.sign(a[i]) === Math.sign(b[i]) && Math.abs(a[i] - b[i]) <= 1e-5 * Math.abs(b[i])));
        assert.ok(same, `${op}${op === "pow" ? ` ${p}` : ""}(${x[i]}) = ${a[i]}, reference ${b[i]}`);
      }
    }
  });

  test("gelu_tanh's derivative is 1 (0 below) where x³ overflows f32", () => {
    const x = Float32Array.of(1e13, 3.4e38, -1e13, -3.4e38);
    const y = new Float32Array(4);
    const dy = Float32Array.of(1, 1, 1, 1);
    const [a, b] = [new Float32Array(4), new Float32Array(4)];
    (wasm as Backend).unaryBackward("gelu_tanh", x, y, dy, a, 0, false);
    refBackend.unaryBackward("gelu_tanh", x, y, dy, b, 0, false);
    assert.deepEqual(Array.from(a), Array.from(b));
    assert.deepEqual(Array.from(a), [1, 1, 0, 0]);
  });
});
