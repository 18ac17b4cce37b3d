// Fused neural-net kernels: softmax family, cross-entropy, RMSNorm, RoPE, SiLU·mul,
// dropout. Row reductions run in f64; rows subtract their max before exponentiating.
import { dropoutUniform, type FloatArray } from "../../core/backend.js";
import { sigmoid } from "./elementwise.js";
import { SLOT, scratch } from "./scratch.js";

// x: (N,C) -> out: (N,C), softmax over C.
export function softmax(x: FloatArray, N: number, C: number, out: FloatArray): void {
  const e = scratch(SLOT.row, C);
  for (let r = 0; r < N; r++) {
    const o = r * C;
    let max = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < C; c++) if (x[o + c] > max) max = x[o + c];
    if (max === Number.NEGATIVE_INFINITY) max = 0; // an all −∞ row gives NaN, as torch
    let sum = 0;
    for (let c = 0; c < C; c++) {
      const v = Math.exp(x[o + c] - max);
      e[c] = v;
      sum += v;
    }
    const inv = 1 / sum;
    for (let c = 0; c < C; c++) out[o + c] = e[c] * inv;
  }
}

// y = softmax(x): (N,C); dx (+)= y ⊙ (dy − Σ dy⊙y).
export function softmaxBackward(
  y: FloatArray,
  dy: FloatArray,
  N: number,
  C: number,
  dx: FloatArray,
  acc: boolean,
): void {
  for (let r = 0; r < N; r++) {
    const o = r * C;
    let dot = 0;
    for (let c = 0; c < C; c++) dot += dy[o + c] * y[o + c];
    for (let c = 0; c < C; c++) {
      const g = y[o + c] * (dy[o + c] - dot);
      dx[o + c] = acc ? dx[o + c] + g : g;
    }
  }
}

/** max + log Σ exp(x − max) of row [o, o+C); −∞ for an all −∞ row. */
function rowLogSumExp(x: FloatArray, o: number, C: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let c = 0; c < C; c++) if (x[o + c] > max) max = x[o + c];
  if (max === Number.NEGATIVE_INFINITY || max === Number.POSITIVE_INFINITY) return max;
  let sum = 0;
  for (let c = 0; c < C; c++) sum += Math.exp(x[o + c] - max);
  return max + Math.log(sum);
}

// x: (N,C) -> out: (N,C) = x − logsumexp(x).
export function logSoftmax(x: FloatArray, N: number, C: number, out: FloatArray): void {
  for (let r = 0; r < N; r++) {
    const o = r * C;
    const lse = rowLogSumExp(x, o, C);
    for (let c = 0; c < C; c++) out[o + c] = x[o + c] - lse;
  }
}

// y = logSoftmax(x): (N,C); dx (+)= dy − exp(y)·Σ dy.
export function logSoftmaxBackward(
  y: FloatArray,
  dy: FloatArray,
  N: number,
  C: number,
  dx: FloatArray,
  acc: boolean,
): void {
  for (let r = 0; r < N; r++) {
    const o = r * C;
    let sum = 0;
    for (let c = 0; c < C; c++) sum += dy[o + c];
    for (let c = 0; c < C; c++) {
      const g = dy[o + c] - Math.exp(y[o + c]) * sum;
      dx[o + c] = acc ? dx[o + c] + g : g;
    }
  }
}

/** A target must be a class index or ignoreIndex (every backend raises this same error). */
export function checkTarget(t: number, V: number, ignoreIndex: number, row: number): void {
  if (t !== ignoreIndex && (t < 0 || t >= V)) {
    throw new RangeError(
      `crossEntropy: target ${t} of row ${row} is outside [0, ${V}) and is not ignoreIndex ${ignoreIndex}`,
    );
  }
}

// logits: (N,V), targets: (N) -> loss: (N) = lse − logit[target] (0 when ignored), lse: (N).
export function crossEntropy(
  logits: FloatArray,
  targets: Int32Array,
  N: number,
  V: number,
  ignoreIndex: number,
  loss: FloatArray,
  lse: FloatArray,
): void {
  for (let r = 0; r < N; r++) {
    const o = r * V;
    const t = targets[r];
    checkTarget(t, V, ignoreIndex, r);
    const l = rowLogSumExp(logits, o, V);
    lse[r] = l;
    loss[r] = t === ignoreIndex ? 0 : l - logits[o + t];
  }
}

// dlogits[r,:] (+)= gradScale[r]·(softmax(logits[r]) − onehot(target[r])); ignored rows get 0.
export function crossEntropyBackward(
  logits: FloatArray,
  targets: Int32Array,
  lse: FloatArray,
  gradScale: FloatArray,
  N: number,
  V: number,
  ignoreIndex: number,
  dlogits: FloatArray,
  acc: boolean,
): void {
  for (let r = 0; r < N; r++) {
    const o = r * V;
    const t = targets[r];
    checkTarget(t, V, ignoreIndex, r);
    if (t === ignoreIndex) {
      if (!acc) dlogits.fill(0, o, o + V);
      continue;
    }
    const s = gradScale[r];
    const l = lse[r];
    for (let c = 0; c < V; c++) {
      const g = s * (Math.exp(logits[o + c] - l) - (c === t ? 1 : 0));
      dlogits[o + c] = acc ? dlogits[o + c] + g : g;
    }
  }
}

// x: (N,C), w: (C) -> y: (N,C) = x·rsqrt(mean(x²)+eps)·w, rstd: (N).
export function rmsNorm(
  x: FloatArray,
  w: FloatArray,
  N: number,
  C: number,
  eps: number,
  y: FloatArray,
  rstd: FloatArray,
): void {
  for (let r = 0; r < N; r++) {
    const o = r * C;
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[o + c] * x[o + c];
    const rs = 1 / Math.sqrt(ss / C + eps);
    rstd[r] = rs;
    for (let c = 0; c < C; c++) y[o + c] = x[o + c] * rs * w[c];
  }
}

// With r = rstd, y_j = x_j·r·w_j and ∂r/∂x_j = −r³x_j/C:
// dx_j = r·(w_j·dy_j − x_j·r²·Σ_i dy_i·w_i·x_i / C);  dw_j += Σ_rows dy_j·x_j·r.
export function rmsNormBackward(
  x: FloatArray,
  w: FloatArray,
  rstd: FloatArray,
  dy: FloatArray,
  N: number,
  C: number,
  dx: FloatArray | null,
  dw: FloatArray | null,
  accDx: boolean,
): void {
  let dwAcc: Float64Array | null = null;
  if (dw) {
    dwAcc = scratch(SLOT.acc, C);
    dwAcc.fill(0, 0, C);
  }
  for (let r = 0; r < N; r++) {
    const o = r * C;
    const rs = rstd[r];
    if (dwAcc) for (let c = 0; c < C; c++) dwAcc[c] += dy[o + c] * x[o + c] * rs;
    if (!dx) continue;
    let dot = 0;
    for (let c = 0; c < C; c++) dot += dy[o + c] * w[c] * x[o + c];
    const k = (rs * rs * dot) / C;
    for (let c = 0; c < C; c++) {
      const g = rs * (w[c] * dy[o + c] - x[o + c] * k);
      dx[o + c] = accDx ? dx[o + c] + g : g;
    }
  }
  if (dw && dwAcc) for (let c = 0; c < C; c++) dw[c] += dwAcc[c];
}

// x: (B,T,H,D), cos, sin: (T, D/2) -> out: (B,T,H,D), HF rotate-half layout; out may alias x.
// out_i = x_i·cos − x_{i+D/2}·sin, out_{i+D/2} = x_{i+D/2}·cos + x_i·sin; inverse uses −sin.
export function rope(
  x: FloatArray,
  cos: FloatArray,
  sin: FloatArray,
  B: number,
  T: number,
  H: number,
  D: number,
  inverse: boolean,
  out: FloatArray,
): void {
  if (D % 2 !== 0) throw new RangeError(`rope: head dim D=${D} must be even`);
  const half = D / 2;
  const sgn = inverse ? -1 : 1;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const tab = t * half;
      for (let h = 0; h < H; h++) {
        const o = ((b * T + t) * H + h) * D;
        for (let i = 0; i < half; i++) {
          const c = cos[tab + i];
          const s = sgn * sin[tab + i];
          const x1 = x[o + i];
          const x2 = x[o + i + half];
          out[o + i] = x1 * c - x2 * s;
          out[o + i + half] = x2 * c + x1 * s;
        }
      }
    }
  }
}

// gate, up: (n) -> out = silu(gate)·up.
export function siluMul(gate: FloatArray, up: FloatArray, out: FloatArray): void {
  const n = gate.length;
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    out[i] = g * sigmoid(g) * up[i];
  }
}

// dgate (+)= dy·up·σ(g)·(1 + g·(1−σ(g))), dup (+)= dy·silu(g).
export function siluMulBackward(
  gate: FloatArray,
  up: FloatArray,
  dy: FloatArray,
  dgate: FloatArray | null,
  dup: FloatArray | null,
  acc: boolean,
): void {
  const n = gate.length;
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    const s = sigmoid(g);
    const d = dy[i];
    if (dgate) {
      const v = d * up[i] * s * (1 + g * (1 - s));
      dgate[i] = acc ? dgate[i] + v : v;
    }
    if (dup) {
      const v = d * g * s;
      dup[i] = acc ? dup[i] + v : v;
    }
  }
}

// Inverted dropout: keep x[i]·1/(1−p) when dropoutUniform(seed, offset+i) ≥ p, else 0.
export function dropout(x: FloatArray, out: FloatArray, p: number, seed: number, offset: number): void {
  const n = x.length;
  const scale = p < 1 ? 1 / (1 - p) : 0;
  for (let i = 0; i < n; i++) out[i] = dropoutUniform(seed, offset + i) >= p ? x[i] * scale : 0;
}
