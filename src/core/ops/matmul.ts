// Matrix products: matmul (2-D and batched, either operand transposed) and linear.
import type { GemmParams } from "../backend.js";
import { backend, isGradEnabled } from "../engine.js";
import { fmtShape, ShapeError } from "../errors.js";
import type { Tensor } from "../tensor.js";
import { empty, numel } from "../tensor.js";
import type { T } from "./util.js";
import { commonFloat, floatData, maybeRecord, sameShape } from "./util.js";

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
 * Matrix product of the last two dims. a: (..., M, K) (or (..., K, M) with transA),
 * b: (..., K, N) (or (..., N, K) with transB); batch dims must be equal, or b may be 2-D
 * (shared by every batch). out: (..., M, N).
 *
 * @example
 * const y = matmul(x, w, { transB: true }); // x·wᵀ
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): T {
  const dtype = commonFloat("matmul", a, b);
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
  const batch = numel(batchA);
  const k = ka;
  const out = empty([...batchA, m, n], dtype);
  const A = floatData(a as T);
  const B = floatData(b as T);
  if (sharedB && !transA) {
    // Rows of every batch stack: one (batch·M)×K by K×N product.
    gemm({
      transA,
      transB,
      m: batch * m,
      n,
      k,
      batch: 1,
      a: A,
      strideA: 0,
      b: B,
      strideB: 0,
      c: floatData(out),
      strideC: 0,
    });
  } else {
    gemm({
      transA,
      transB,
      m,
      n,
      k,
      batch,
      a: A,
      strideA: m * k,
      b: B,
      strideB: sharedB ? 0 : k * n,
      c: floatData(out),
      strideC: m * n,
    });
  }
  return maybeRecord(out, "matmul", [a, b], (dy, needs) => {
    const dC = floatData(dy);
    let da: T | null = null;
    let db: T | null = null;
    if (needs[0]) {
      da = empty(a.shape, dtype);
      const dA = floatData(da);
      if (!transA) {
        // dA = dC·op(B)ᵀ
        if (sharedB)
          gemm({
            transA: false,
            transB: !transB,
            m: batch * m,
            n: k,
            k: n,
            batch: 1,
            a: dC,
            strideA: 0,
            b: B,
            strideB: 0,
            c: dA,
            strideC: 0,
          });
        else
          gemm({
            transA: false,
            transB: !transB,
            m,
            n: k,
            k: n,
            batch,
            a: dC,
            strideA: m * n,
            b: B,
            strideB: k * n,
            c: dA,
            strideC: m * k,
          });
      } else {
        // A stored K×M: dA = op(B)·dCᵀ
        gemm({
          transA: transB,
          transB: true,
          m: k,
          n: m,
          k: n,
          batch,
          a: B,
          strideA: sharedB ? 0 : k * n,
          b: dC,
          strideB: m * n,
          c: dA,
          strideC: m * k,
        });
      }
    }
    if (needs[1]) {
      db = empty(b.shape, dtype);
      const dB = floatData(db);
      if (sharedB) {
        if (!transA) {
          // Stacked rows: dB = op(A)ᵀ·dC over all batches at once (or dCᵀ·A for a transposed B).
          if (!transB)
            gemm({
              transA: true,
              transB: false,
              m: k,
              n,
              k: batch * m,
              batch: 1,
              a: A,
              strideA: 0,
              b: dC,
              strideB: 0,
              c: dB,
              strideC: 0,
            });
          else
            gemm({
              transA: true,
              transB: false,
              m: n,
              n: k,
              k: batch * m,
              batch: 1,
              a: dC,
              strideA: 0,
              b: A,
              strideB: 0,
              c: dB,
              strideC: 0,
            });
        } else {
          // A transposed and B shared: sum the per-batch products one by one.
          for (let i = 0; i < batch; i++) {
            const ai = A.subarray(i * m * k, (i + 1) * m * k);
            const ci = dC.subarray(i * m * n, (i + 1) * m * n);
            if (!transB)
              gemm({
                transA: false,
                transB: false,
                m: k,
                n,
                k: m,
                batch: 1,
                a: ai,
                strideA: 0,
                b: ci,
                strideB: 0,
                c: dB,
                strideC: 0,
                beta: i === 0 ? 0 : 1,
              });
            else
              gemm({
                transA: true,
                transB: true,
                m: n,
                n: k,
                k: m,
                batch: 1,
                a: ci,
                strideA: 0,
                b: ai,
                strideB: 0,
                c: dB,
                strideC: 0,
                beta: i === 0 ? 0 : 1,
              });
          }
        }
      } else if (!transB) {
        // dB = op(A)ᵀ·dC
        gemm({
          transA: !transA,
          transB: false,
          m: k,
          n,
          k: m,
          batch,
          a: A,
          strideA: m * k,
          b: dC,
          strideB: m * n,
          c: dB,
          strideC: k * n,
        });
      } else {
        // B stored N×K: dB = dCᵀ·op(A)
        gemm({
          transA: true,
          transB: transA,
          m: n,
          n: k,
          k: m,
          batch,
          a: dC,
          strideA: m * n,
          b: A,
          strideB: m * k,
          c: dB,
          strideC: k * n,
        });
      }
    }
    return [da, db];
  });
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
  const W = wBf16 ? (w.data as Uint16Array) : floatData(w as T);
  if (opts.valueUnread && isGradEnabled()) Y.fill(Number.NaN);
  else {
    if (bias) {
      // Seed every row with the bias, then accumulate the product on top (beta = 1).
      const bd = floatData(bias as T);
      for (let i = 0; i < N; i++) Y.set(bd, i * O);
    }
    gemm({
      transA: false,
      transB: true,
      m: N,
      n: O,
      k: C,
      batch: 1,
      a: X,
      strideA: 0,
      b: W,
      strideB: 0,
      c: Y,
      strideC: 0,
      beta: bias ? 1 : 0,
    });
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
        b: W,
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
