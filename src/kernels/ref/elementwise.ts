// Element-wise kernels: unary ops and their derivatives, NumPy-broadcast binary ops.
// Each op's loop is written out under the switch, so no closure runs per element.
import type { BinaryOp, FloatArray, UnaryOp } from "../../core/backend.js";
import { erf } from "./erf.js";
import { broadcastStrides, contiguousStrides, RowIter } from "./strided.js";

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_KAPPA = 0.044715;
const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** σ(x) without overflow for large |x|. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

// x: (n) -> out: (n); out may alias x.
export function unary(op: UnaryOp, x: FloatArray, out: FloatArray, param: number): void {
  const n = x.length;
  switch (op) {
    case "neg":
      for (let i = 0; i < n; i++) out[i] = -x[i];
      return;
    case "exp":
      for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]);
      return;
    case "log":
      for (let i = 0; i < n; i++) out[i] = Math.log(x[i]);
      return;
    case "sqrt":
      for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]);
      return;
    case "rsqrt":
      for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(x[i]);
      return;
    case "tanh":
      for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]);
      return;
    case "sigmoid":
      for (let i = 0; i < n; i++) out[i] = sigmoid(x[i]);
      return;
    case "silu":
      for (let i = 0; i < n; i++) {
        const v = x[i];
        out[i] = v * sigmoid(v);
      }
      return;
    case "gelu_tanh":
      // PyTorch gelu(approximate="tanh"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
      for (let i = 0; i < n; i++) {
        const v = x[i];
        out[i] = 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + GELU_KAPPA * v * v * v)));
      }
      return;
    case "gelu_erf":
      // PyTorch gelu(): x·½·(1 + erf(x/√2))
      for (let i = 0; i < n; i++) {
        const v = x[i];
        out[i] = v * 0.5 * (1 + erf(v * SQRT1_2));
      }
      return;
    case "pow":
      for (let i = 0; i < n; i++) out[i] = x[i] ** param;
      return;
    case "abs":
      for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]);
      return;
    case "square":
      for (let i = 0; i < n; i++) {
        const v = x[i];
        out[i] = v * v;
      }
      return;
    case "scale":
      for (let i = 0; i < n; i++) out[i] = x[i] * param;
      return;
    case "relu":
      // NaN passes through, as torch.relu.
      for (let i = 0; i < n; i++) out[i] = Math.max(x[i], 0);
      return;
    default:
      throw new RangeError(`unary: unknown op ${op satisfies never}`);
  }
}

// dx[i] (+)= dy[i]·f'(x[i]); y is the forward output. Derivatives follow PyTorch's
// autograd formulas (derivatives.yaml) so results agree to rounding.
export function unaryBackward(
  op: UnaryOp,
  x: FloatArray,
  y: FloatArray,
  dy: FloatArray,
  dx: FloatArray,
  param: number,
  acc: boolean,
): void {
  const n = dy.length;
  switch (op) {
    case "neg":
      for (let i = 0; i < n; i++) dx[i] = acc ? dx[i] - dy[i] : -dy[i];
      return;
    case "exp":
      for (let i = 0; i < n; i++) {
        const g = dy[i] * y[i];
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "log":
      for (let i = 0; i < n; i++) {
        const g = dy[i] / x[i];
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "sqrt":
      for (let i = 0; i < n; i++) {
        const g = dy[i] / (2 * y[i]);
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "rsqrt":
      for (let i = 0; i < n; i++) {
        const r = y[i];
        const g = -0.5 * dy[i] * r * r * r;
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "tanh":
      for (let i = 0; i < n; i++) {
        const t = y[i];
        const g = dy[i] * (1 - t * t);
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "sigmoid":
      for (let i = 0; i < n; i++) {
        const s = y[i];
        const g = dy[i] * (1 - s) * s;
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "silu":
      // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
      for (let i = 0; i < n; i++) {
        const v = x[i];
        const s = sigmoid(v);
        const g = dy[i] * s * (1 + v * (1 - s));
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "gelu_tanh":
      // ATen GeluBackward (tanh): ½(1+t) + ½x·(1−t²)·√(2/π)·(1 + 3κx²)
      for (let i = 0; i < n; i++) {
        const v = x[i];
        const v2 = v * v;
        const t = Math.tanh(SQRT_2_OVER_PI * (v + GELU_KAPPA * v2 * v));
        const d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_KAPPA * v2);
        const g = dy[i] * d;
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "gelu_erf":
      // Φ(x) + x·φ(x)
      for (let i = 0; i < n; i++) {
        const v = x[i];
        const cdf = 0.5 * (1 + erf(v * SQRT1_2));
        const pdf = Math.exp(-0.5 * v * v) * INV_SQRT_2PI;
        const g = dy[i] * (cdf + v * pdf);
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "pow":
      // p·x^(p−1), and exactly 0 for p = 0 (as PyTorch's pow_backward).
      for (let i = 0; i < n; i++) {
        const g = param === 0 ? 0 : dy[i] * param * x[i] ** (param - 1);
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "abs":
      for (let i = 0; i < n; i++) {
        const g = dy[i] * Math.sign(x[i]);
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "square":
      for (let i = 0; i < n; i++) {
        const g = dy[i] * 2 * x[i];
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "scale":
      for (let i = 0; i < n; i++) {
        const g = dy[i] * param;
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    case "relu":
      for (let i = 0; i < n; i++) {
        const g = x[i] > 0 ? dy[i] : 0;
        dx[i] = acc ? dx[i] + g : g;
      }
      return;
    default:
      throw new RangeError(`unaryBackward: unknown op ${op satisfies never}`);
  }
}

// out = a ∘ b, NumPy broadcasting over equal-rank shapes; out: outShape, contiguous.
export function binary(
  op: BinaryOp,
  a: FloatArray,
  aShape: readonly number[],
  b: FloatArray,
  bShape: readonly number[],
  out: FloatArray,
  outShape: readonly number[],
): void {
  const it = new RowIter(outShape, [
    contiguousStrides(outShape),
    broadcastStrides(aShape, outShape),
    broadcastStrides(bShape, outShape),
  ]);
  const n = it.inner;
  const [, sa, sb] = it.innerStride;
  const off = it.off;
  for (let r = 0; r < it.rows; r++, it.next()) {
    binaryRun(op, a, off[1], sa, b, off[2], sb, out, off[0], n);
  }
}

function binaryRun(
  op: BinaryOp,
  a: FloatArray,
  ao: number,
  sa: number,
  b: FloatArray,
  bo: number,
  sb: number,
  out: FloatArray,
  oo: number,
  n: number,
): void {
  switch (op) {
    case "add":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * sa] + b[bo + i * sb];
      return;
    case "sub":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * sa] - b[bo + i * sb];
      return;
    case "mul":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * sa] * b[bo + i * sb];
      return;
    case "div":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * sa] / b[bo + i * sb];
      return;
    case "eq":
      for (let i = 0; i < n; i++) out[oo + i] = a[ao + i * sa] === b[bo + i * sb] ? 1 : 0;
      return;
    case "maximum":
      // NaN propagates, as torch.maximum.
      for (let i = 0; i < n; i++) out[oo + i] = Math.max(a[ao + i * sa], b[bo + i * sb]);
      return;
    default:
      throw new RangeError(`binary: unknown op ${op satisfies never}`);
  }
}
