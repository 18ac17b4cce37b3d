// Scaled-dot-product attention with GQA, causal offset and a KV capacity, one query row
// at a time: a row of S scores lives in an f64 scratch buffer, never the full T×S matrix.
// The backward recomputes the probabilities from the saved lse, as FlashAttention-2:
// Dᵢ = Σ dout⊙out, dS = P⊙(dP − Dᵢ). bf16 k/v (a KV cache kept in bf16) are widened to
// f32 first, so their result is by definition that of the widened values.
import type { AttentionParams, FloatArray } from "../../core/backend.js";
import { SLOT, scratch } from "./scratch.js";

function check(p: AttentionParams): number {
  const { H, Hkv, S, kvCapacity, offset } = p;
  if (Hkv <= 0 || H % Hkv !== 0) {
    throw new RangeError(`attention: H=${H} query heads must be a multiple of Hkv=${Hkv} kv heads`);
  }
  if (S > kvCapacity) throw new RangeError(`attention: S=${S} valid keys exceed kvCapacity=${kvCapacity}`);
  if (offset < 0) throw new RangeError(`attention: offset=${offset} must be ≥ 0`);
  return H / Hkv;
}

/**
 * The first S rows per batch of bf16 k, v widened to f32 (B,S,Hkv,D): a bf16 value is the
 * top half of the f32 with the same bits, so widening is exact.
 */
function widenKV(p: AttentionParams): AttentionParams {
  const { k, v } = p;
  if (!(k instanceof Uint16Array) || !(v instanceof Uint16Array))
    throw new TypeError("attention: k and v are both floats or both bf16 (Uint16Array)");
  const row = p.Hkv * p.D;
  const widen = (src: Uint16Array): Float32Array => {
    const bits = new Uint32Array(p.B * p.S * row);
    for (let b = 0; b < p.B; b++) {
      const from = b * p.kvCapacity * row;
      const to = b * p.S * row;
      for (let i = 0; i < p.S * row; i++) bits[to + i] = src[from + i] << 16;
    }
    return new Float32Array(bits.buffer);
  };
  return { ...p, k: widen(k), v: widen(v), kvCapacity: p.S };
}

function isBf16(p: AttentionParams): boolean {
  return p.k instanceof Uint16Array || p.v instanceof Uint16Array;
}

/** Keys query t may see: 0..limit−1. */
function keyLimit(p: AttentionParams, t: number): number {
  return p.causal ? Math.min(p.S, p.offset + t + 1) : p.S;
}

// q: (B,T,H,D), k, v: (B,kvCapacity,Hkv,D) -> out: (B,T,H,D), lse: (B,H,T).
export function attention(p: AttentionParams, out: FloatArray, lse: FloatArray): void {
  const group = check(p);
  if (isBf16(p)) p = widenKV(p);
  const { q, B, T, S, H, Hkv, D, kvCapacity, scale } = p;
  const k = p.k as FloatArray;
  const v = p.v as FloatArray;
  const sc = scratch(SLOT.row, S);
  const acc = scratch(SLOT.row2, D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = (h / group) | 0;
      const kvBase = b * kvCapacity * Hkv + hk;
      for (let t = 0; t < T; t++) {
        const qo = ((b * T + t) * H + h) * D;
        const limit = keyLimit(p, t);
        const lo = (b * H + h) * T + t;
        if (limit <= 0) {
          out.fill(0, qo, qo + D);
          lse[lo] = Number.NEGATIVE_INFINITY;
          continue;
        }
        let max = Number.NEGATIVE_INFINITY;
        for (let s = 0; s < limit; s++) {
          const ko = (kvBase + s * Hkv) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
          const z = dot * scale;
          sc[s] = z;
          if (z > max) max = z;
        }
        acc.fill(0, 0, D);
        let sum = 0;
        for (let s = 0; s < limit; s++) {
          const e = Math.exp(sc[s] - max);
          sum += e;
          const vo = (kvBase + s * Hkv) * D;
          for (let d = 0; d < D; d++) acc[d] += e * v[vo + d];
        }
        const inv = 1 / sum;
        for (let d = 0; d < D; d++) out[qo + d] = acc[d] * inv;
        lse[lo] = max + Math.log(sum);
      }
    }
  }
}

// Writes dq (B,T,H,D); adds into dk, dv (B,kvCapacity,Hkv,D). Per (b, kv head) the key
// gradients gather in f64 scratch over the group's query heads, then are added once.
export function attentionBackward(
  p: AttentionParams,
  out: FloatArray,
  lse: FloatArray,
  dout: FloatArray,
  dq: FloatArray | null,
  dk: FloatArray | null,
  dv: FloatArray | null,
): void {
  const group = check(p);
  if (isBf16(p))
    throw new TypeError("attentionBackward: k and v must be floats (a bf16 KV cache is inference-only)");
  const { q, B, T, S, H, Hkv, D, kvCapacity, scale } = p;
  const k = p.k as FloatArray;
  const v = p.v as FloatArray;
  if (!dq && !dk && !dv) return;
  const dqAcc = scratch(SLOT.row2, D);
  const dkAcc = dk ? scratch(SLOT.acc, S * D) : null;
  const dvAcc = dv ? scratch(SLOT.acc2, S * D) : null;
  for (let b = 0; b < B; b++) {
    for (let hk = 0; hk < Hkv; hk++) {
      const kvBase = b * kvCapacity * Hkv + hk;
      if (dkAcc) dkAcc.fill(0, 0, S * D);
      if (dvAcc) dvAcc.fill(0, 0, S * D);
      for (let h = hk * group; h < (hk + 1) * group; h++) {
        for (let t = 0; t < T; t++) {
          const qo = ((b * T + t) * H + h) * D;
          const limit = keyLimit(p, t);
          if (limit <= 0) {
            if (dq) dq.fill(0, qo, qo + D);
            continue;
          }
          const l = lse[(b * H + h) * T + t];
          let Di = 0;
          for (let d = 0; d < D; d++) Di += dout[qo + d] * out[qo + d];
          dqAcc.fill(0, 0, D);
          for (let s = 0; s < limit; s++) {
            const ko = (kvBase + s * Hkv) * D;
            let dot = 0;
            let dP = 0;
            for (let d = 0; d < D; d++) {
              dot += q[qo + d] * k[ko + d];
              dP += dout[qo + d] * v[ko + d];
            }
            const pr = Math.exp(dot * scale - l);
            const dS = pr * (dP - Di) * scale;
            if (dq) for (let d = 0; d < D; d++) dqAcc[d] += dS * k[ko + d];
            const ao = s * D;
            if (dkAcc) for (let d = 0; d < D; d++) dkAcc[ao + d] += dS * q[qo + d];
            if (dvAcc) for (let d = 0; d < D; d++) dvAcc[ao + d] += pr * dout[qo + d];
          }
          if (dq) for (let d = 0; d < D; d++) dq[qo + d] = dqAcc[d];
        }
      }
      for (let s = 0; s < S; s++) {
        const ko = (kvBase + s * Hkv) * D;
        const ao = s * D;
        if (dk && dkAcc) for (let d = 0; d < D; d++) dk[ko + d] += dkAcc[ao + d];
        if (dv && dvAcc) for (let d = 0; d < D; d++) dv[ko + d] += dvAcc[ao + d];
      }
    }
  }
}
