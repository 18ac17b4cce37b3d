// The output layer fused with cross-entropy: loss(h·Wᵀ + b, targets) without ever holding
// the tokens × vocabulary logits. With a 151,936-token vocabulary, 2,048 tokens of f32
// logits are 1.2 GB and their gradient another 1.2 GB; here tokens go through in chunks
// that share one chunk × V scratch buffer. As in Liger-Kernel's fused linear cross-entropy,
// the gradients are formed in the forward pass, chunk by chunk, while the chunk's logits
// are at hand (dlogits = softmax − onehot overwrites them, then dh = dlogits·W and, for a
// trainable head, dW += dlogitsᵀ·h), so no GEMM is repeated in backward: the loss is a
// scalar, and backward only scales the stored gradients by dy.
import type { GemmParams } from "../backend.js";
import { backend, isGradEnabled } from "../engine.js";
import { DTypeError, fmtShape, LorakitError, ShapeError } from "../errors.js";
import type { Tensor } from "../tensor.js";
import { empty, zeros } from "../tensor.js";
import type { T } from "./util.js";
import { activeTargetRows, commonFloat, floatData, maybeRecord, sameShape } from "./util.js";

export interface LinearCrossEntropyOptions {
  /** Targets equal to this contribute nothing (PyTorch's default −100). */
  ignoreIndex?: number;
  /** "mean" over non-ignored targets (default; NaN when all are ignored) or "sum". */
  reduction?: "mean" | "sum";
  /** Tokens per chunk (default `defaultLossChunkTokens(V)`): the scratch holds chunk × V logits. */
  chunkTokens?: number;
}

/**
 * The default scratch budget of one chunk's logits. Each chunk's GEMMs pack the whole V × C
 * weight again, so chunks of a few dozen rows spend as long packing as multiplying (measured:
 * 55-row chunks of a 151,936 × 896 head made a LoRA step through the head 2.6× slower than
 * unfused; 256-row chunks matched it). 256 MiB gives ≥ 441 rows up to a 151,936 vocabulary;
 * memory planners pass a smaller budget when memory is tight.
 */
export const LOSS_CHUNK_BYTES = 256 * 1024 * 1024;

/** The small budget a planner falls back to when memory is tight (slower: more packing). */
export const LOSS_CHUNK_BYTES_TIGHT = 32 * 1024 * 1024;

/**
 * Tokens per chunk so that one chunk's logits (chunk × vocab, f32 unless `bytesPerElement`
 * says otherwise) fit in `budgetBytes` (default LOSS_CHUNK_BYTES; at least 1 row). Memory
 * planners size the loss scratch with it: chunk × vocab × bytesPerElement.
 *
 * @example
 * defaultLossChunkTokens(151936); // 441 rows: 441 × 151,936 × 4 B ≈ 255.6 MiB
 */
export function defaultLossChunkTokens(
  vocab: number,
  bytesPerElement = 4,
  budgetBytes = LOSS_CHUNK_BYTES,
): number {
  if (!Number.isInteger(vocab) || vocab < 1)
    throw new ShapeError(`defaultLossChunkTokens: vocab must be a positive integer, got ${vocab}`);
  return Math.max(1, Math.floor(budgetBytes / (vocab * bytesPerElement)));
}

/**
 * Cross-entropy of the logits linear(h, w, bias) against i32 targets, equal to
 * `crossEntropy(reshape(linear(h, w, bias), [-1, V]), targets, opts)` but computed
 * `chunkTokens` rows at a time, so the (N, V) logits and their gradient never exist.
 * h: (..., C) with N rows, w: (V, C) f32/f64 or a frozen bf16 weight, bias: (V) or null,
 * targets: (N) (or h's leading shape). Returns a scalar.
 *
 * Under grad recording the gradients of the inputs that require one are computed during
 * this call (dh: N × C; dW: V × C only for a trainable w; db: V), and backward scales them:
 * a frozen head never gets a V × C buffer. Backward can run once per call (the stored
 * gradients are handed over, not copied). Without recording (eval, `noGrad`) only the loss
 * is computed. Rows whose target is ignored cost no GEMM work.
 *
 * @example
 * const h = reshape(model.hidden(ids), [-1, C]);
 * const loss = linearCrossEntropy(h, lmHead.weight, lmHead.bias, labels); // mean NLL
 * backward(loss);
 */
export function linearCrossEntropy(
  h: Tensor,
  w: Tensor,
  bias: Tensor | null,
  targets: Tensor,
  opts: LinearCrossEntropyOptions = {},
): T {
  // A frozen weight may be stored in bf16 (half the memory); the GEMM converts it on the fly.
  const wBf16 = w.dtype === "bf16";
  const dtype = commonFloat("linearCrossEntropy", h, ...(wBf16 ? [] : [w]), ...(bias ? [bias] : []));
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? "mean";
  if (reduction !== "mean" && reduction !== "sum")
    throw new ShapeError(
      `linearCrossEntropy: reduction must be "mean" or "sum", got ${JSON.stringify(reduction)} (per-row losses need the logits: use linear + crossEntropy)`,
    );
  if (w.rank !== 2)
    throw new ShapeError(`linearCrossEntropy: weight must be 2-D (vocab, in), got ${fmtShape(w.shape)}`);
  const [V, C] = w.shape;
  if (h.rank < 1 || h.shape[h.rank - 1] !== C)
    throw new ShapeError(
      `linearCrossEntropy: input ${fmtShape(h.shape)} has ${h.shape[h.rank - 1]} features but the weight ${fmtShape(w.shape)} expects ${C}`,
    );
  if (bias && (bias.rank !== 1 || bias.shape[0] !== V))
    throw new ShapeError(
      `linearCrossEntropy: bias ${fmtShape(bias.shape)} must be [${V}] for weight ${fmtShape(w.shape)}`,
    );
  if (targets.dtype !== "i32")
    throw new DTypeError(`linearCrossEntropy: targets must be i32, got ${targets.dtype}`);
  const N = h.size / C;
  const lead = h.shape.slice(0, -1);
  if (!sameShape(targets.shape, [N]) && !sameShape(targets.shape, lead))
    throw new ShapeError(
      `linearCrossEntropy: input ${fmtShape(h.shape)} has ${N} rows and needs targets of shape ${fmtShape([N])}, got ${fmtShape(targets.shape)}`,
    );
  const chunkTokens = opts.chunkTokens ?? defaultLossChunkTokens(V);
  if (!Number.isInteger(chunkTokens) || chunkTokens < 1)
    throw new ShapeError(`linearCrossEntropy: chunkTokens must be a positive integer, got ${chunkTokens}`);

  // Rows with a real target, in order; ignored rows get no GEMM work at all.
  const tg = targets.data as Int32Array;
  const active = activeTargetRows("linearCrossEntropy", tg, N, V, ignoreIndex);
  const count = active.length;

  const inputs = bias ? [h, w, bias] : [h, w];
  const recording = isGradEnabled() && inputs.some((x) => x.requiresGrad);
  const needH = recording && h.requiresGrad;
  const needW = recording && w.requiresGrad;
  const needB = recording && !!bias?.requiresGrad;
  if (needW && wBf16)
    throw new DTypeError(
      "linearCrossEntropy: a bf16 weight cannot be trained (16-bit storage is for frozen weights); load it as f32",
    );
  const needGrad = needH || needW || needB;

  // Gradient buffers, only for inputs that need one. dh rows of ignored targets stay 0.
  let dh: T | null = needH ? (count < N ? zeros(h.shape, dtype) : empty(h.shape, dtype)) : null;
  let dw: T | null = needW ? (count === 0 ? zeros(w.shape, dtype) : empty(w.shape, dtype)) : null;
  let db: T | null = needB ? (count === 0 ? zeros([V], dtype) : empty([V], dtype)) : null;

  let total = 0;
  if (count > 0) {
    const chunk = Math.min(chunkTokens, count);
    const H = floatData(h as T);
    const W = wBf16 ? (w.data as Uint16Array) : floatData(w as T);
    const bd = bias ? floatData(bias as T) : null;
    // One chunk × V scratch: the chunk's logits, then (in place) their gradient.
    const scratch = empty([chunk, V], dtype);
    const lossT = empty([chunk], dtype);
    const lseT = empty([chunk], dtype);
    const L = floatData(scratch);
    const loss = floatData(lossT);
    const lse = floatData(lseT);
    // The "mean" scale goes into dlogits now, as crossEntropy's backward does with dy = 1.
    const scaleT = needGrad ? empty([chunk], dtype) : null;
    if (scaleT) scaleT.data.fill(reduction === "mean" ? 1 / count : 1);
    // Gathered rows for chunks whose rows are not contiguous (ignored rows in between).
    const hBufT = count < N ? empty([chunk, C], dtype) : null;
    const dhBufT = count < N && dh ? empty([chunk, C], dtype) : null;
    const tBuf = count < N ? new Int32Array(chunk) : null;
    const colT = db ? empty([V], dtype) : null;
    const gemm = (p: GemmParams): void => backend().gemm(p);
    try {
      for (let s = 0, first = true; s < count; s += chunk, first = false) {
        const n = Math.min(chunk, count - s);
        const r0 = active[s];
        const contiguous = active[s + n - 1] - r0 === n - 1;
        const rows = active.subarray(s, s + n);
        let hc: typeof H;
        let tc: Int32Array;
        if (contiguous) {
          hc = H.subarray(r0 * C, (r0 + n) * C);
          tc = tg.subarray(r0, r0 + n);
        } else {
          hc = floatData(hBufT!).subarray(0, n * C);
          backend().gather(H, rows, C, hc);
          tc = tBuf!.subarray(0, n);
          for (let i = 0; i < n; i++) tc[i] = tg[rows[i]];
        }
        const lc = L.subarray(0, n * V);
        // logits = h·Wᵀ (+ b): bias seeds every row, the product accumulates on top.
        if (bd) for (let i = 0; i < n; i++) lc.set(bd, i * V);
        gemm({
          transA: false,
          transB: true,
          m: n,
          n: V,
          k: C,
          batch: 1,
          a: hc,
          strideA: 0,
          b: W,
          strideB: 0,
          c: lc,
          strideC: 0,
          alpha: 1,
          beta: bd ? 1 : 0,
        });
        backend().crossEntropy(lc, tc, n, V, ignoreIndex, loss, lse);
        for (let i = 0; i < n; i++) total += loss[i];
        if (!needGrad) continue;
        // dlogits = scale·(softmax − onehot), written over the logits: the ref and native
        // kernels read each element before writing it, so one buffer serves both.
        backend().crossEntropyBackward(lc, tc, lse, floatData(scaleT!), n, V, ignoreIndex, lc, false);
        if (dh) {
          const out = contiguous ? floatData(dh).subarray(r0 * C, (r0 + n) * C) : floatData(dhBufT!);
          gemm({
            transA: false,
            transB: false,
            m: n,
            n: C,
            k: V,
            batch: 1,
            a: lc,
            strideA: 0,
            b: W,
            strideB: 0,
            c: out,
            strideC: 0,
            alpha: 1,
            beta: 0,
          });
          // dh is zero-filled when rows are ignored, so adding puts each row in place.
          if (!contiguous) backend().scatterAdd(out.subarray(0, n * C), rows, C, floatData(dh));
        }
        if (dw)
          gemm({
            transA: true,
            transB: false,
            m: V,
            n: C,
            k: n,
            batch: 1,
            a: lc,
            strideA: 0,
            b: hc,
            strideB: 0,
            c: floatData(dw),
            strideC: 0,
            alpha: 1,
            beta: first ? 0 : 1,
          });
        if (db) {
          const col = floatData(first ? db : colT!);
          backend().reduce("sum", lc, [n, V], [0], col);
          if (!first) backend().axpy(1, col, floatData(db));
        }
      }
    } finally {
      // Back to the pool: the next step's loss takes the same buffers.
      for (const t of [scratch, lossT, lseT, scaleT, hBufT, dhBufT, colT]) t?.dispose();
    }
  }

  const out = empty([], dtype);
  out.data[0] = reduction === "mean" ? total / count : total;
  // Not recording, maybeRecord records nothing (it only tells a checkpoint's probe that a
  // trainable input was reached) and the rule below is never called.
  let used = false;
  return maybeRecord(out, "linearCrossEntropy", inputs, (dy, needs) => {
    if (used)
      throw new LorakitError(
        "linearCrossEntropy: backward ran twice through the same loss; its gradients are computed once in the forward pass, so recompute the loss for a second backward",
      );
    used = true;
    const g = dy.data[0];
    const stored = [dh, dw, db].slice(0, inputs.length);
    dh = dw = db = null;
    return stored.map((t, i) => {
      if (!needs[i]) {
        t?.dispose();
        return null;
      }
      if (!t)
        throw new LorakitError(
          `linearCrossEntropy: input ${i} requires grad but did not when the loss was computed; set requiresGrad before the forward pass`,
        );
      // The gradient is dy·(stored); the rule owns the buffer, so scale it in place.
      if (g !== 1) backend().unary("scale", t.data, t.data, g);
      return t;
    });
  });
}
