// A LoRA linear layer as one op: y = x·Wᵀ (+ b) + s·(xin·Aᵀ)·Bᵀ, xin the adapter branch's
// input (x itself, or dropout(x)). Composed of linear / scale / linear / add, the layer keeps
// per token the base output (out), xin·Aᵀ (r), its scaled copy (r), the B product (out) and
// the sum (out) until backward, and pays an out-sized add pass; on Qwen2.5-0.5B shapes that
// is about half of a training step's activations. Here the base GEMM writes y (seeded with
// the bias as `linear` does), h = s·(xin·Aᵀ) (N×r) is the one extra tensor kept, and the B
// product is accumulated straight into y (GEMM beta = 1): per token out + r floats, no add.
//
// Why h is kept scaled (s applied to the narrow xin·Aᵀ product) rather than applying s as
// the alpha of the B product: memory and work are the same, but this is the arithmetic of
// the composed path — fl(s·(xin·Aᵀ)), then y + h·Bᵀ with the sum rounded once — so on the
// native backend values and gradients are the same bits as before, and, for an f32-exact s,
// those of the serving engine's grouped kernel (serve/batch-step.ts), which serve's "greedy
// decoding equals generate()" relies on. s goes in as the GEMM's alpha when f32 holds it
// exactly (α/r usually is); otherwise the GEMM takes alpha = 1 and the N×r product is
// scaled in double as the scale op does (an f32 alpha would round s first). Backward gains
// too: dB = dyᵀ·h needs no scale, and g = s·dy·B (N×r, scaled the same way) serves
// dA = gᵀ·xin and dxin = g·A as the composed path's scaled gradient does.
//
// When the base product cannot be a plain GEMM (an NF4 base, Linear4bit; any LinearLike),
// `loraDelta(y, …)` takes the base output y from the caller and adds the adapter to it —
// in place when the caller can vouch that no one reads y afterwards (see its doc), else into
// a copy of y. Its backward hands dy to y unchanged. In-place is safe with autograd because
// backward rules read the tensors they saved, never their own outputs for the ops listed in
// OUTPUT_FREE_OPS: overwriting such an output changes nothing any rule reads, as long as y
// was not also given to another op (which might have saved it: DoRA's mul does).
import type { GemmParams } from "../backend.js";
import { backend, isGradEnabled } from "../engine.js";
import { fmtShape, LorakitError, ShapeError } from "../errors.js";
import type { Tensor } from "../tensor.js";
import { empty } from "../tensor.js";
import type { T } from "./util.js";
import { commonFloat, floatData, maybeRecord, sameShape } from "./util.js";
import { weightData, weightProduct } from "./weight.js";

function gemm(
  p: Omit<GemmParams, "batch" | "strideA" | "strideB" | "strideC" | "alpha" | "beta"> & {
    alpha?: number;
    beta?: number;
  },
): void {
  backend().gemm({ alpha: 1, beta: 0, batch: 1, strideA: 0, strideB: 0, strideC: 0, ...p });
}

/**
 * c = s·op(a)·op(b), rounded as the scale op rounds s·(a·b): s as the GEMM's alpha when f32
 * holds it exactly, else a second pass over c in double (c is only N×r here).
 */
function scaledGemm(p: Parameters<typeof gemm>[0], s: number): void {
  const exact = Math.fround(s) === s;
  gemm({ ...p, alpha: exact ? s : 1, beta: 0 });
  if (!exact) backend().unary("scale", p.c, p.c, s);
}

/** The float inputs whose dtype sets the compute dtype (bf16 weights are converted in the GEMM). */
function computeInputs(...xs: (Tensor | null | undefined)[]): Tensor[] {
  return xs.filter((t): t is Tensor => !!t && t.dtype !== "bf16");
}

/** Checks A (r, C) and B (O, r) against the input and output widths; returns r. */
function checkAdapter(op: string, A: Tensor, B: Tensor, C: number, O: number): number {
  if (A.rank !== 2 || A.shape[1] !== C || A.shape[0] < 1)
    throw new ShapeError(`${op}: lora A ${fmtShape(A.shape)} must be [r, ${C}] with r ≥ 1`);
  const r = A.shape[0];
  if (B.rank !== 2 || B.shape[0] !== O || B.shape[1] !== r)
    throw new ShapeError(
      `${op}: lora B ${fmtShape(B.shape)} must be [${O}, ${r}] for A ${fmtShape(A.shape)}`,
    );
  return r;
}

/** h = s·xin·Aᵀ (N×r), then y += h·Bᵀ: the adapter's forward, shared by both ops. */
function adapterForward(
  Xin: Float32Array | Float64Array,
  A: Tensor,
  B: Tensor,
  s: number,
  h: T,
  Y: Float32Array | Float64Array,
  N: number,
  C: number,
  O: number,
  r: number,
  valueUnread = false,
): void {
  const H = floatData(h);
  scaledGemm({ transA: false, transB: true, m: N, n: r, k: C, a: Xin, b: weightData(A), c: H }, s);
  if (!valueUnread)
    gemm({ transA: false, transB: true, m: N, n: O, k: r, a: H, b: weightData(B), c: Y, beta: 1 });
}

/**
 * Y (N×O) += (s·Xin·Aᵀ)·Bᵀ on plain arrays, h (N×r) receiving s·Xin·Aᵀ: loraLinear's adapter
 * arithmetic after its base product, call for call, so the same bits. For a caller that ran
 * the base product itself (a decode step sharing one call among q/k/v's base weights).
 */
export function loraAdapterInto(
  Xin: Float32Array,
  A: Tensor,
  B: Tensor,
  s: number,
  h: Float32Array,
  Y: Float32Array,
  N: number,
): void {
  const [r, C] = A.shape;
  const O = B.shape[0];
  scaledGemm({ transA: false, transB: true, m: N, n: r, k: C, a: Xin, b: weightData(A), c: h }, s);
  gemm({ transA: false, transB: true, m: N, n: O, k: r, a: h, b: weightData(B), c: Y, beta: 1 });
}

/**
 * The adapter's part of backward, given dy (N×O): g = s·dy·B (N×r) when dA or dxin is
 * needed; dB = dyᵀ·h; dA = gᵀ·xin; dxin = g·A, written into `dxinInto` with beta = 1 when
 * it already holds the base part of the same input's gradient (xin is x). Returns
 * [dxin (when made here), dA, dB].
 */
function adapterBackward(
  dY: Float32Array | Float64Array,
  xin: Tensor,
  A: Tensor,
  B: Tensor,
  s: number,
  h: T,
  dtype: T["dtype"],
  N: number,
  C: number,
  O: number,
  r: number,
  need: { xin: boolean; A: boolean; B: boolean },
  dxinInto: T | null,
): [T | null, T | null, T | null] {
  let dxin: T | null = null;
  let dA: T | null = null;
  let dB: T | null = null;
  if (need.B) {
    dB = empty(B.shape, dtype);
    gemm({ transA: true, transB: false, m: O, n: r, k: N, a: dY, b: floatData(h), c: floatData(dB) });
  }
  if (need.xin || need.A) {
    // Scaled once here, on the narrow N×r product, as the composed path's scale op does.
    const g = empty([N, r], dtype);
    const G = floatData(g);
    scaledGemm({ transA: false, transB: false, m: N, n: r, k: O, a: dY, b: weightData(B), c: G }, s);
    if (need.A) {
      dA = empty(A.shape, dtype);
      gemm({ transA: true, transB: false, m: r, n: C, k: N, a: G, b: floatData(xin as T), c: floatData(dA) });
    }
    if (need.xin) {
      const into = dxinInto ?? (dxin = empty(xin.shape, dtype));
      gemm({
        transA: false,
        transB: false,
        m: N,
        n: C,
        k: r,
        a: G,
        b: weightData(A),
        c: floatData(into),
        beta: dxinInto ? 1 : 0,
      });
    }
    g.dispose();
  }
  return [dxin, dA, dB];
}

/** Keeps h only when a backward node holds it; otherwise it is released at once. */
function keepForBackward(out: T, h: T): T {
  if (!out.node) h.dispose();
  return out;
}

/**
 * A LoRA linear layer in one op: y = x·wᵀ (+ bias) + scale·(xin·Aᵀ)·Bᵀ, equal (to float
 * rounding) to `add(linear(x, w, bias), linear(scale(linear(xin, A), s), B))` but keeping
 * only y and h = s·xin·Aᵀ (N×r) for backward, with no out-sized temporary and no add pass.
 * x, xin: (..., C) of the same shape, with xin the adapter branch's input — pass x itself
 * when there is no dropout (its two gradients are then summed in one buffer), or dropout(x);
 * w: (O, C), f32/f64 or a frozen bf16 weight; bias: (O) or null; A: (r, C); B: (O, r) (either
 * may be a frozen bf16 weight too). out: (..., O).
 *
 * Backward computes only what the inputs that require grad need: g = s·dy·B (N×r) when dA
 * or dxin is needed; dx = dy·w (+ g·A into the same buffer when xin is x); dxin = g·A;
 * dA = gᵀ·xin; dB = dyᵀ·h; dw = dyᵀ·x only for a trainable w; dbias as `linear`.
 *
 * @example
 * const xin = p > 0 ? dropout(x, p, rng) : x;
 * const y = loraLinear(x, base.weight, base.bias, xin, loraA.weight, loraB.weight, alpha / r);
 */
export function loraLinear(
  x: Tensor,
  w: Tensor,
  bias: Tensor | null | undefined,
  xin: Tensor,
  A: Tensor,
  B: Tensor,
  scale: number,
  opts: LoraLinearOptions = {},
): T {
  const op = "loraLinear";
  const dtype = commonFloat(op, ...computeInputs(x, xin, w, A, B, bias));
  if (w.rank !== 2) throw new ShapeError(`${op}: weight must be 2-D (out, in), got ${fmtShape(w.shape)}`);
  const [O, C] = w.shape;
  if (x.rank < 1 || x.shape[x.rank - 1] !== C)
    throw new ShapeError(
      `${op}: input ${fmtShape(x.shape)} has ${x.shape[x.rank - 1]} features but the weight ${fmtShape(w.shape)} expects ${C}`,
    );
  if (!sameShape(xin.shape, x.shape))
    throw new ShapeError(
      `${op}: the adapter input ${fmtShape(xin.shape)} must have the input's shape ${fmtShape(x.shape)}`,
    );
  if (bias && (bias.rank !== 1 || bias.shape[0] !== O))
    throw new ShapeError(
      `${op}: bias ${fmtShape(bias.shape)} must be [${O}] for weight ${fmtShape(w.shape)}`,
    );
  const r = checkAdapter(op, A, B, C, O);
  const N = x.size / C;
  const out = empty([...x.shape.slice(0, -1), O], dtype);
  const Y = floatData(out);
  const X = floatData(x as T);
  const skip = opts.valueUnread === true && isGradEnabled();
  if (skip) Y.fill(Number.NaN);
  else {
    if (bias) {
      // Seed every row with the bias, then accumulate the product on top (beta = 1).
      const bd = floatData(bias as T);
      for (let i = 0; i < N; i++) Y.set(bd, i * O);
    }
    // A frozen base weight is read from its packed form in inference (see ops/weight.ts).
    weightProduct(w, X, Y, N, bias ? 1 : 0);
  }
  const h = empty([N, r], dtype);
  const shared = xin === x;
  adapterForward(shared ? X : floatData(xin as T), A, B, scale, h, Y, N, C, O, r, skip);
  // Input slots: x, w, A, B, then bias and xin when present (xin is slot 0 when it is x).
  const inputs: Tensor[] = [x, w, A, B];
  const iBias = bias ? inputs.push(bias) - 1 : -1;
  const iXin = shared ? 0 : inputs.push(xin) - 1;
  const result = maybeRecord(out, op, inputs, (dy, needs) => {
    const dY = floatData(dy);
    const grads: (T | null)[] = inputs.map(() => null);
    if (needs[0]) {
      const dx = empty(x.shape, dtype);
      // Read now, not at forward time: a weight packed since then is unpacked here.
      gemm({ transA: false, transB: false, m: N, n: C, k: O, a: dY, b: weightData(w), c: floatData(dx) });
      grads[0] = dx;
    }
    if (needs[1]) {
      const dw = empty(w.shape, dtype);
      gemm({ transA: true, transB: false, m: O, n: C, k: N, a: dY, b: X, c: floatData(dw) });
      grads[1] = dw;
    }
    if (bias && needs[iBias]) {
      const db = empty([O], dtype);
      backend().reduce("sum", dY, [N, O], [0], floatData(db));
      grads[iBias] = db;
    }
    const [dxin, dA, dB] = adapterBackward(
      dY,
      xin,
      A,
      B,
      scale,
      h,
      dtype,
      N,
      C,
      O,
      r,
      { xin: needs[iXin], A: needs[2], B: needs[3] },
      shared ? grads[0] : null,
    );
    if (!shared) grads[iXin] = dxin;
    grads[2] = dA;
    grads[3] = dB;
    return grads;
  });
  return keepForBackward(result, h);
}

export interface LoraLinearOptions {
  /**
   * The caller will never read the output's values, only backpropagate through it (an
   * activation-checkpointing recompute of a block's last product, whose value the first
   * forward already gave): with grad recording on, the N×O products are skipped and the
   * output holds NaN; only h, which backward needs, is computed. Ignored without recording.
   */
  valueUnread?: boolean;
}

/**
 * Ops whose backward never reads their output, so that output may be overwritten afterwards
 * (by `loraDelta` in place) without changing any gradient.
 */
const OUTPUT_FREE_OPS: ReadonlySet<string> = new Set([
  "linear",
  "linear4bit",
  "loraLinear",
  "loraDelta",
  "add",
]);

export interface LoraDeltaOptions {
  /**
   * Add into y's own storage instead of a copy (the result is a view of y, and y's values
   * become the sum). Only when nothing reads y's values after this call: not the caller, and
   * no other op y was given to. Refused when y is a leaf that requires grad, or when the op
   * that made y may read its output in backward (y must come from linear, linear4bit,
   * loraLinear, loraDelta or add, or have no graph node).
   */
  inPlace?: boolean;
}

/**
 * y + scale·(xin·Aᵀ)·Bᵀ for a base output y that the caller computed (an NF4 Linear4bit, any
 * other base layer, or a previous adapter's sum): the LoRA branch of `loraLinear` without the
 * base GEMM. y: (..., O), xin: (..., C) with the same leading shape, A: (r, C), B: (O, r).
 * Keeps h = s·xin·Aᵀ (N×r) for backward; dy goes to y unchanged. Writes into a copy of y
 * (one out-sized buffer, as the composed path's add does, but without the delta and the
 * second r-sized temporary), or into y itself with `inPlace` (no out-sized buffer at all).
 *
 * @example
 * const base = linear4bit.forward(x); // fresh, and read by no one else
 * const y = loraDelta(base, dropout(x, p, rng), loraA.weight, loraB.weight, s, { inPlace: true });
 */
export function loraDelta(
  y: Tensor,
  xin: Tensor,
  A: Tensor,
  B: Tensor,
  scale: number,
  opts: LoraDeltaOptions = {},
): T {
  const op = "loraDelta";
  const dtype = commonFloat(op, ...computeInputs(y, xin, A, B));
  if (y.rank < 1 || xin.rank < 1)
    throw new ShapeError(
      `${op}: y ${fmtShape(y.shape)} and xin ${fmtShape(xin.shape)} need a feature dimension`,
    );
  const O = y.shape[y.rank - 1];
  const C = xin.shape[xin.rank - 1];
  if (!sameShape(y.shape.slice(0, -1), xin.shape.slice(0, -1)))
    throw new ShapeError(
      `${op}: y ${fmtShape(y.shape)} and xin ${fmtShape(xin.shape)} must have the same leading dimensions`,
    );
  const r = checkAdapter(op, A, B, C, O);
  const N = xin.size / C;
  let out: T;
  if (opts.inPlace) {
    if (y.requiresGrad && !y.node)
      throw new LorakitError(`${op}: cannot add in place into a leaf tensor that requires grad`);
    if (y.node && !OUTPUT_FREE_OPS.has(y.node.op))
      throw new LorakitError(
        `${op}: cannot add in place into the output of ${y.node.op}, whose backward may read it; pass inPlace: false`,
      );
    out = (y as T).view(y.shape) as T;
  } else {
    out = empty(y.shape, dtype);
    floatData(out).set(floatData(y as T));
  }
  const h = empty([N, r], dtype);
  adapterForward(floatData(xin as T), A, B, scale, h, floatData(out), N, C, O, r);
  const result = maybeRecord(out, op, [y, xin, A, B], (dy, needs) => {
    const [dxin, dA, dB] = adapterBackward(
      floatData(dy),
      xin,
      A,
      B,
      scale,
      h,
      dtype,
      N,
      C,
      O,
      r,
      { xin: needs[1], A: needs[2], B: needs[3] },
      null,
    );
    // A rule may hand its dy straight to an input (autograd never writes gradients in place).
    return [needs[0] ? dy : null, dxin, dA, dB];
  });
  return keepForBackward(result, h);
}
