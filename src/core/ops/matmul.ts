// Matrix products: matmul (2-D and batched, either operand transposed) and linear.
import type { FloatArray, GemmParams } from "../backend.js";
import { backend, isGradEnabled } from "../engine.js";
import { fmtShape, ShapeError } from "../errors.js";
import type { Tensor } from "../tensor.js";
import { empty, numel } from "../tensor.js";
import type { T } from "./util.js";
import { commonFloat, floatData, maybeRecord, sameShape } from "./util.js";
import { weightData, weightProduct, weightProductsShared } from "./weight.js";

export interface MatmulOptions {
  /** Use aᵀ (a's last two dims swapped). */
  transA?: boolean;
  /** Use bᵀ. */
  transB?: boolean;
}

function gemm(p: Omit<GemmParams, "alpha" | "beta"> & { alpha?: number; beta?: number }): void {
  backend().gemm({ alpha: 1, beta: 0, ...p });
}

/**
 * A raw 2-D product into a buffer the caller owns, outside autograd:
 * c = alpha·op(a)·op(b) + beta·c, op(a) m×k, op(b) k×n, row-major (merges, serving).
 */
export function gemmInto(
  a: Float32Array,
  b: Float32Array | Uint16Array,
  c: Float32Array,
  m: number,
  n: number,
  k: number,
  opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number } = {},
): void {
  gemm({
    transA: opts.transA ?? false,
    transB: opts.transB ?? false,
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
    alpha: opts.alpha ?? 1,
    beta: opts.beta ?? 0,
  });
}

/**
 * One backend GEMM, c = op(a)·op(b) (+ c when `accumulate`), op(a) m×k, op(b) k×n, over
 * `batch` matrices `strides` = [a, b, c] elements apart (0: shared).
 */
function product(
  a: FloatArray,
  transA: boolean,
  b: FloatArray,
  transB: boolean,
  c: FloatArray,
  [m, n, k]: readonly [number, number, number],
  batch = 1,
  [strideA, strideB, strideC]: readonly [number, number, number] = [0, 0, 0],
  accumulate = false,
): void {
  gemm({ transA, transB, m, n, k, batch, a, strideA, b, strideB, c, strideC, beta: accumulate ? 1 : 0 });
}

/** Sizes of one matmul: op(a) m×k per batch, op(b) k×n, b 2-D and shared by every batch or not. */
interface MatmulShape {
  m: number;
  n: number;
  k: number;
  batch: number;
  sharedB: boolean;
  transA: boolean;
  transB: boolean;
}

/**
 * Matrix product of the last two dims. a: (..., M, K) (or (..., K, M) with transA),
 * b: (..., K, N) (or (..., N, K) with transB); batch dims must be equal, or b may be 2-D
 * (shared by every batch). out: (..., M, N).
 *
 * @example
 * const y = matmul(x, w, { transB: true }); // x·wᵀ
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): T {
  const dtype = commonFloat("matmul", a, b);
  const sh = matmulShape(a, b, opts);
  const { m, n, k, batch, sharedB, transA, transB } = sh;
  const out = empty([...a.shape.slice(0, a.rank - 2), m, n], dtype);
  const A = floatData(a as T);
  const B = floatData(b as T);
  // A shared B with untransposed A: the rows of every batch stack into one (batch·M)×K product.
  if (sharedB && !transA) product(A, false, B, transB, floatData(out), [batch * m, n, k]);
  else product(A, transA, B, transB, floatData(out), [m, n, k], batch, [m * k, sharedB ? 0 : k * n, m * n]);
  return maybeRecord(out, "matmul", [a, b], (dy, needs) => {
    const dC = floatData(dy);
    let da: T | null = null;
    let db: T | null = null;
    if (needs[0]) {
      da = empty(a.shape, dtype);
      matmulGradA(sh, B, dC, floatData(da));
    }
    if (needs[1]) {
      db = empty(b.shape, dtype);
      matmulGradB(sh, A, dC, floatData(db));
    }
    return [da, db];
  });
}

function matmulShape(a: Tensor, b: Tensor, opts: MatmulOptions): MatmulShape {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  if (a.rank < 2 || b.rank < 2)
    throw new ShapeError(
      `matmul: both operands need at least 2 dimensions, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`,
    );
  const ar = a.rank;
  const br = b.rank;
  const m = transA ? a.shape[ar - 1] : a.shape[ar - 2];
  const ka = transA ? a.shape[ar - 2] : a.shape[ar - 1];
  const kb = transB ? b.shape[br - 1] : b.shape[br - 2];
  const n = transB ? b.shape[br - 2] : b.shape[br - 1];
  if (ka !== kb)
    throw new ShapeError(
      `matmul: inner dimensions ${ka} and ${kb} of ${fmtShape(a.shape)}${transA ? "ᵀ" : ""} and ${fmtShape(b.shape)}${transB ? "ᵀ" : ""} must match`,
    );
  const batchA = a.shape.slice(0, ar - 2);
  const batchB = b.shape.slice(0, br - 2);
  const sharedB = br === 2;
  if (!sharedB && !sameShape(batchA, batchB))
    throw new ShapeError(
      `matmul: batch dimensions ${fmtShape(batchA)} and ${fmtShape(batchB)} of ${fmtShape(a.shape)} and ${fmtShape(b.shape)} must be equal (or b 2-D)`,
    );
  return { m, n, k: ka, batch: numel(batchA), sharedB, transA, transB };
}

/** dA from dC (batch × m×n) and B. */
function matmulGradA(sh: MatmulShape, B: FloatArray, dC: FloatArray, dA: FloatArray): void {
  const { m, n, k, batch, sharedB, transA, transB } = sh;
  const sB = sharedB ? 0 : k * n;
  if (transA)
    // A stored K×M: dA = op(B)·dCᵀ.
    product(B, transB, dC, true, dA, [k, m, n], batch, [sB, m * n, m * k]);
  // dA = dC·op(B)ᵀ, stacked rows when B is shared.
  else if (sharedB) product(dC, false, B, !transB, dA, [batch * m, k, n]);
  else product(dC, false, B, !transB, dA, [m, k, n], batch, [m * n, k * n, m * k]);
}

/** dB from dC (batch × m×n) and A; a shared B sums over the batches. */
function matmulGradB(sh: MatmulShape, A: FloatArray, dC: FloatArray, dB: FloatArray): void {
  const { m, n, k, batch, sharedB, transA, transB } = sh;
  if (!sharedB) {
    // dB = op(A)ᵀ·dC, or for B stored N×K, dB = dCᵀ·op(A).
    if (!transB) product(A, !transA, dC, false, dB, [k, n, m], batch, [m * k, m * n, k * n]);
    else product(dC, true, A, transA, dB, [n, k, m], batch, [m * n, m * k, k * n]);
    return;
  }
  if (!transA) {
    // Stacked rows: dB = Aᵀ·dC over all batches at once (dCᵀ·A for a transposed B).
    if (!transB) product(A, true, dC, false, dB, [k, n, batch * m]);
    else product(dC, true, A, false, dB, [n, k, batch * m]);
    return;
  }
  // A transposed and B shared: the per-batch products summed one by one.
  for (let i = 0; i < batch; i++) {
    const ai = A.subarray(i * m * k, (i + 1) * m * k);
    const ci = dC.subarray(i * m * n, (i + 1) * m * n);
    if (!transB) product(ai, false, ci, false, dB, [k, n, m], 1, undefined, i > 0);
    else product(ci, true, ai, true, dB, [n, k, m], 1, undefined, i > 0);
  }
}

/**
 * linear's checks and its output, seeded with the bias rows when there is one (the product
 * then accumulates on top, beta 1).
 */
function linearOutput(x: Tensor, w: Tensor, bias: Tensor | null | undefined) {
  // A frozen weight may be stored in bf16 (half the memory); the GEMM converts it on the fly.
  const wBf16 = w.dtype === "bf16";
  const dtype = commonFloat("linear", x, ...(wBf16 ? [] : [w]), ...(bias ? [bias] : []));
  if (w.rank !== 2) throw new ShapeError(`linear: weight must be 2-D (out, in), got ${fmtShape(w.shape)}`);
  const [O, C] = w.shape;
  if (x.rank < 1 || x.shape[x.rank - 1] !== C)
    throw new ShapeError(
      `linear: input ${fmtShape(x.shape)} has ${x.shape[x.rank - 1]} features but the weight ${fmtShape(w.shape)} expects ${C}`,
    );
  if (bias && (bias.rank !== 1 || bias.shape[0] !== O))
    throw new ShapeError(
      `linear: bias ${fmtShape(bias.shape)} must be [${O}] for weight ${fmtShape(w.shape)}`,
    );
  const N = x.size / C;
  const out = empty([...x.shape.slice(0, -1), O], dtype);
  const Y = floatData(out);
  const X = floatData(x as T);
  if (bias) {
    const bd = floatData(bias as T);
    for (let i = 0; i < N; i++) Y.set(bd, i * O);
  }
  return { out, Y, X, N, O, C, dtype };
}

/**
 * Several linear layers of one input x (a decoder layer's q/k/v or gate/up projections):
 * `ws.map((w, i) => linear(x, w, biases[i]))`, bit for bit. Outside autograd the products go
 * to the backend together (`weightProductsShared`), so a decode step hands them to the threads
 * in one dispatch instead of one each; under autograd it is one linear per weight.
 *
 * @example
 * const [q, k, v] = noGrad(() => linearShared(h, [wq, wk, wv], [null, null, null]));
 */
export function linearShared(x: Tensor, ws: readonly Tensor[], biases: readonly (Tensor | null)[]): T[] {
  if (biases.length !== ws.length)
    throw new ShapeError(
      `linearShared: ${ws.length} weights but ${biases.length} biases (one each, null for none)`,
    );
  if (isGradEnabled()) return ws.map((w, i) => linear(x, w, biases[i]));
  const outs = ws.map((w, i) => linearOutput(x, w, biases[i]));
  weightProductsShared(
    ws,
    outs[0].X,
    outs.map((o) => o.Y),
    outs[0].N,
    biases.map((b) => (b ? 1 : 0)),
  );
  return outs.map((o) => o.out);
}

/**
 * A linear layer, y = x·wᵀ + bias, as PyTorch's F.linear. x: (..., C), w: (O, C), bias: (O).
 * When w is frozen its gradient GEMM is never run: backward costs one GEMM (dx) instead of two.
 */
export function linear(
  x: Tensor,
  w: Tensor,
  bias?: Tensor | null,
  opts: {
    /** See LoraLinearOptions.valueUnread: skip the product, keep the gradient. */ valueUnread?: boolean;
  } = {},
): T {
  const { out, Y, X, N, O, C, dtype } = linearOutput(x, w, bias);
  if (opts.valueUnread && isGradEnabled()) Y.fill(Number.NaN);
  else {
    // A frozen weight is read from its packed form in inference (see ops/weight.ts).
    weightProduct(w, X, Y, N, bias ? 1 : 0);
  }
  const inputs = bias ? [x, w, bias] : [x, w];
  return maybeRecord(out, "linear", inputs, (dy, needs) => {
    const dY = floatData(dy);
    let dx: T | null = null;
    let dw: T | null = null;
    let db: T | null = null;
    if (needs[0]) {
      dx = empty(x.shape, dtype);
      gemm({
        transA: false,
        transB: false,
        m: N,
        n: C,
        k: O,
        batch: 1,
        a: dY,
        strideA: 0,
        // Read now, not at forward time: a weight packed since then is unpacked here.
        b: weightData(w),
        strideB: 0,
        c: floatData(dx),
        strideC: 0,
      });
    }
    if (needs[1]) {
      dw = empty(w.shape, dtype);
      gemm({
        transA: true,
        transB: false,
        m: O,
        n: C,
        k: N,
        batch: 1,
        a: dY,
        strideA: 0,
        b: X,
        strideB: 0,
        c: floatData(dw),
        strideC: 0,
      });
    }
    if (bias && needs[2]) {
      db = empty([O], dtype);
      backend().reduce("sum", dY, [N, O], [0], floatData(db));
    }
    return [dx, dw, db];
  });
}
