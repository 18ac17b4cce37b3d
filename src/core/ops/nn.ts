// The fused ops a transformer step needs, each with its own backward: dropout,
// softmax / log-softmax, cross-entropy, RMSNorm, RoPE, causal attention with GQA, SiLU·mul.
import type { AttentionParams } from "../backend.js";
import { backend } from "../engine.js";
import { DTypeError, fmtShape, ShapeError } from "../errors.js";
import type { Rng } from "../rng.js";
import type { Tensor } from "../tensor.js";
import { asFloat, empty } from "../tensor.js";
import { permute } from "./shape.js";
import type { T } from "./util.js";
import { activeTargetRows, commonFloat, floatData, maybeRecord, normAxis, sameShape } from "./util.js";

/**
 * Inverted dropout: zero each element with probability p, scale the rest by 1/(1−p).
 * The mask comes from a counter-based hash of (seed, index), so backward replays it
 * instead of storing it. Identity when p = 0 or `training` is false.
 */
export function dropout(x: Tensor, p: number, rng: Rng, training = true): T {
  const t = asFloat(x, "dropout");
  if (!(p >= 0 && p < 1)) throw new ShapeError(`dropout: p must be in [0, 1), got ${p}`);
  if (p === 0 || !training) return t;
  const seed = rng.nextSeed();
  const out = empty(t.shape, t.dtype);
  backend().dropout(floatData(t), floatData(out), p, seed, 0);
  return maybeRecord(out, "dropout", [t], (dy) => {
    const dx = empty(t.shape, t.dtype);
    backend().dropout(floatData(dy), floatData(dx), p, seed, 0);
    return [dx];
  });
}

function lastAxis(op: string, x: T, axis: number, fn: (t: T) => T): T {
  const ax = normAxis(op, axis, x.rank);
  if (ax === x.rank - 1) return fn(x);
  const perm = x.shape.map((_, i) => i);
  perm[ax] = x.rank - 1;
  perm[x.rank - 1] = ax;
  return permute(fn(permute(x, perm)), perm);
}

/** Softmax along `axis` (last by default). */
export function softmax(x: Tensor, axis = -1): T {
  return lastAxis("softmax", asFloat(x, "softmax"), axis, (t) => {
    const C = t.shape[t.rank - 1];
    const N = t.size / C;
    const out = empty(t.shape, t.dtype);
    backend().softmax(floatData(t), N, C, floatData(out));
    return maybeRecord(out, "softmax", [t], (dy) => {
      const dx = empty(t.shape, t.dtype);
      backend().softmaxBackward(floatData(out), floatData(dy), N, C, floatData(dx), false);
      return [dx];
    });
  });
}

/** log(softmax(x)) along `axis`, computed stably. */
export function logSoftmax(x: Tensor, axis = -1): T {
  return lastAxis("logSoftmax", asFloat(x, "logSoftmax"), axis, (t) => {
    const C = t.shape[t.rank - 1];
    const N = t.size / C;
    const out = empty(t.shape, t.dtype);
    backend().logSoftmax(floatData(t), N, C, floatData(out));
    return maybeRecord(out, "logSoftmax", [t], (dy) => {
      const dx = empty(t.shape, t.dtype);
      backend().logSoftmaxBackward(floatData(out), floatData(dy), N, C, floatData(dx), false);
      return [dx];
    });
  });
}

export interface CrossEntropyOptions {
  /** Targets equal to this contribute nothing (PyTorch's default −100). */
  ignoreIndex?: number;
  /** "mean" over non-ignored targets (PyTorch's default; NaN when all are ignored), "sum", or "none" (per row). */
  reduction?: "mean" | "sum" | "none";
}

/**
 * Cross-entropy from logits (..., V) and i32 targets (...), fused with log-softmax as
 * PyTorch's F.cross_entropy.
 *
 * @example
 * const loss = crossEntropy(logits.reshape([-1, V]), labels.reshape([-1])); // mean NLL
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): T {
  const x = asFloat(logits, "crossEntropy");
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? "mean";
  if (targets.dtype !== "i32")
    throw new DTypeError(`crossEntropy: targets must be i32, got ${targets.dtype}`);
  if (x.rank < 1 || !sameShape(x.shape.slice(0, -1), targets.shape))
    throw new ShapeError(
      `crossEntropy: logits ${fmtShape(x.shape)} need targets of shape ${fmtShape(x.shape.slice(0, -1))}, got ${fmtShape(targets.shape)}`,
    );
  const V = x.shape[x.rank - 1];
  const N = x.size / V;
  const tg = targets.data as Int32Array;
  const count = activeTargetRows("crossEntropy", tg, N, V, ignoreIndex).length;
  const loss = empty([N], x.dtype);
  const lse = empty([N], x.dtype);
  backend().crossEntropy(floatData(x), tg, N, V, ignoreIndex, floatData(loss), floatData(lse));
  let out: T;
  if (reduction === "none") out = loss.view(targets.shape);
  else {
    let s = 0;
    const ld = loss.data;
    for (let i = 0; i < N; i++) s += ld[i];
    out = empty([], x.dtype);
    out.data[0] = reduction === "mean" ? s / count : s;
  }
  return maybeRecord(out, "crossEntropy", [x], (dy) => {
    const scale = empty([N], x.dtype);
    const sd = scale.data;
    if (reduction === "none") sd.set(dy.data);
    else sd.fill(reduction === "mean" ? dy.data[0] / count : dy.data[0]);
    const dx = empty(x.shape, x.dtype);
    backend().crossEntropyBackward(
      floatData(x),
      tg,
      floatData(lse),
      sd,
      N,
      V,
      ignoreIndex,
      floatData(dx),
      false,
    );
    return [dx];
  });
}

/**
 * RMSNorm as Hugging Face's LlamaRMSNorm: y = x·rsqrt(mean(x², last axis) + eps)·w.
 * x: (..., C), w: (C).
 */
export function rmsNorm(x: Tensor, w: Tensor, eps: number): T {
  const dtype = commonFloat("rmsNorm", x, w);
  const C = w.size;
  if (w.rank !== 1 || x.shape[x.rank - 1] !== C)
    throw new ShapeError(
      `rmsNorm: weight ${fmtShape(w.shape)} does not match the last dim of ${fmtShape(x.shape)}`,
    );
  const N = x.size / C;
  const y = empty(x.shape, dtype);
  const rstd = empty([N], dtype);
  backend().rmsNorm(floatData(x as T), floatData(w as T), N, C, eps, floatData(y), floatData(rstd));
  return maybeRecord(y, "rmsNorm", [x, w], (dy, needs) => {
    const dx = needs[0] ? empty(x.shape, dtype) : null;
    const dw = needs[1] ? empty([C], dtype) : null;
    if (dw) dw.data.fill(0);
    backend().rmsNormBackward(
      floatData(x as T),
      floatData(w as T),
      floatData(rstd),
      floatData(dy),
      N,
      C,
      dx ? floatData(dx) : null,
      dw ? floatData(dw) : null,
      false,
    );
    return [dx, dw];
  });
}

/**
 * Rotary position embedding, HF rotate-half layout. x: (B, T, H, D); cos, sin: (T, D/2),
 * already evaluated at each token's position (see `ropeTables`).
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor): T {
  const dtype = commonFloat("rope", x, cos, sin);
  if (x.rank !== 4) throw new ShapeError(`rope: x must be (B, T, H, D), got ${fmtShape(x.shape)}`);
  const [B, T, H, D] = x.shape;
  if (D % 2 !== 0) throw new ShapeError(`rope: head dim ${D} must be even`);
  if (!sameShape(cos.shape, [T, D / 2]) || !sameShape(sin.shape, [T, D / 2]))
    throw new ShapeError(
      `rope: cos/sin tables ${fmtShape(cos.shape)}, ${fmtShape(sin.shape)} must be (T, D/2) = [${T}, ${D / 2}] for x ${fmtShape(x.shape)}`,
    );
  const out = empty(x.shape, dtype);
  const c = floatData(cos as T);
  const s = floatData(sin as T);
  backend().rope(floatData(x as T), c, s, B, T, H, D, false, floatData(out));
  return maybeRecord(out, "rope", [x], (dy) => {
    const dx = empty(x.shape, dtype);
    backend().rope(floatData(dy), c, s, B, T, H, D, true, floatData(dx));
    return [dx];
  });
}

/**
 * cos/sin tables (T, D/2) for positions `offset..offset+T-1` from inverse frequencies
 * (D/2). Angles are formed in f32 as transformers does (inv_freq and positions are f32
 * there), then cos/sin taken, so positions far out round the same way.
 */
export function ropeTables(
  invFreq: ArrayLike<number>,
  T: number,
  offset = 0,
  dtype: "f32" | "f64" = "f32",
): { cos: T; sin: T } {
  return ropeTablesAt(
    invFreq,
    Array.from({ length: T }, (_, t) => offset + t),
    dtype,
  );
}

/** cos/sin tables (N, D/2) whose row n rotates by position positions[n] (rows of a decode batch sit at their own positions). */
export function ropeTablesAt(
  invFreq: ArrayLike<number>,
  positions: readonly number[],
  dtype: "f32" | "f64" = "f32",
): { cos: T; sin: T } {
  const half = invFreq.length;
  const N = positions.length;
  const cos = empty([N, half], dtype);
  const sin = empty([N, half], dtype);
  const cd = cos.data;
  const sd = sin.data;
  const round = dtype === "f32" ? Math.fround : (v: number) => v;
  for (let t = 0; t < N; t++)
    for (let i = 0; i < half; i++) {
      const ang = round(round(invFreq[i]) * positions[t]);
      cd[t * half + i] = Math.cos(ang);
      sd[t * half + i] = Math.sin(ang);
    }
  return { cos, sin };
}

export interface AttentionOptions {
  /** Causal mask (default true). */
  causal?: boolean;
  /** Softmax scale (default 1/√D). */
  scale?: number;
  /** Absolute position of the first query (default S − T: the queries are the last T keys). */
  offset?: number;
}

/**
 * Scaled-dot-product attention with grouped-query heads: q (B, T, H, D), k and v
 * (B, S, Hkv, D), H a multiple of Hkv; query heads h·Hkv/H share a kv head as HF's
 * repeat_kv. Returns (B, T, H, D). Never materialises the T×S matrix on a tiled backend.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): T {
  const dtype = commonFloat("attention", q, k, v);
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4)
    throw new ShapeError(
      `attention: q, k, v must be (B, T, H, D), (B, S, Hkv, D), (B, S, Hkv, D); got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}, ${fmtShape(v.shape)}`,
    );
  const [B, T, H, D] = q.shape;
  const [Bk, S, Hkv, Dk] = k.shape;
  if (Bk !== B || Dk !== D || !sameShape(k.shape, v.shape))
    throw new ShapeError(
      `attention: k ${fmtShape(k.shape)} and v ${fmtShape(v.shape)} must be (B=${B}, S, Hkv, D=${D}) for q ${fmtShape(q.shape)}`,
    );
  if (H % Hkv !== 0)
    throw new ShapeError(
      `attention: ${H} query heads cannot be grouped over ${Hkv} kv heads (Hkv must divide H)`,
    );
  const causal = opts.causal ?? true;
  const offset = opts.offset ?? S - T;
  if (causal && (offset < 0 || offset + T > S))
    throw new ShapeError(
      `attention: causal queries at positions ${offset}..${offset + T - 1} need that many keys, got S=${S}`,
    );
  const p: AttentionParams = {
    q: floatData(q as T),
    k: floatData(k as T),
    v: floatData(v as T),
    B,
    T,
    S,
    H,
    Hkv,
    D,
    kvCapacity: S,
    scale: opts.scale ?? 1 / Math.sqrt(D),
    offset,
    causal,
  };
  const out = empty([B, T, H, D], dtype);
  const lse = empty([B, H, T], dtype);
  backend().attention(p, floatData(out), floatData(lse));
  return maybeRecord(out, "attention", [q, k, v], (dy, needs) => {
    const dq = needs[0] ? empty(q.shape, dtype) : null;
    const dk = needs[1] ? empty(k.shape, dtype) : null;
    const dv = needs[2] ? empty(v.shape, dtype) : null;
    dk?.data.fill(0);
    dv?.data.fill(0);
    backend().attentionBackward(
      p,
      floatData(out),
      floatData(lse),
      floatData(dy),
      dq ? floatData(dq) : null,
      dk ? floatData(dk) : null,
      dv ? floatData(dv) : null,
    );
    return [dq, dk, dv];
  });
}

/** silu(gate)·up, the LLaMA MLP's gating, fused. */
export function siluMul(gate: Tensor, up: Tensor): T {
  const dtype = commonFloat("siluMul", gate, up);
  if (!sameShape(gate.shape, up.shape))
    throw new ShapeError(
      `siluMul: gate ${fmtShape(gate.shape)} and up ${fmtShape(up.shape)} must have the same shape`,
    );
  const out = empty(gate.shape, dtype);
  backend().siluMul(floatData(gate as T), floatData(up as T), floatData(out));
  return maybeRecord(out, "siluMul", [gate, up], (dy, needs) => {
    const dg = needs[0] ? empty(gate.shape, dtype) : null;
    const du = needs[1] ? empty(up.shape, dtype) : null;
    backend().siluMulBackward(
      floatData(gate as T),
      floatData(up as T),
      floatData(dy),
      dg ? floatData(dg) : null,
      du ? floatData(du) : null,
      false,
    );
    return [dg, du];
  });
}
