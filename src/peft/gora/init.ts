// GoRA's initialisation of B from the gradient (official code: gora.py
// LinearWithGoRA.grad_compress_init): with A random (r, in) and G the mean gradient
// (out, in),  B = G·Aᵀ·(A·Aᵀ + 1e-8·I)⁻¹ · γ/α,  the least-squares B with B·A ≈ G·γ/α
// ("LoRA as a gradient compressor"). The reference keeps the sign of G and does not
// subtract B·A from W (no change to the base weights), and so does this.

/** B (out, r) as f32, computed in f64. A: (r, in), G: (out, in), row-major. */
export function goraInitB(
  A: ArrayLike<number>,
  G: ArrayLike<number>,
  r: number,
  inFeatures: number,
  outFeatures: number,
  gamma: number,
  alpha: number,
): Float32Array {
  if (A.length !== r * inFeatures)
    throw new Error(`goraInitB: A has ${A.length} elements, expected ${r}×${inFeatures}`);
  if (G.length !== outFeatures * inFeatures)
    throw new Error(`goraInitB: G has ${G.length} elements, expected ${outFeatures}×${inFeatures}`);
  // M = A·Aᵀ + 1e-8·I (r×r, symmetric positive definite for a full-rank A)
  const M = new Float64Array(r * r);
  for (let i = 0; i < r; i++)
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < inFeatures; k++) s += A[i * inFeatures + k] * A[j * inFeatures + k];
      M[i * r + j] = s;
      M[j * r + i] = s;
    }
  for (let i = 0; i < r; i++) M[i * r + i] += 1e-8;
  // GAᵀ (out×r)
  const GA = new Float64Array(outFeatures * r);
  for (let o = 0; o < outFeatures; o++)
    for (let i = 0; i < r; i++) {
      let s = 0;
      for (let k = 0; k < inFeatures; k++) s += G[o * inFeatures + k] * A[i * inFeatures + k];
      GA[o * r + i] = s;
    }
  const Minv = invertSpd(M, r);
  const c = gamma / alpha;
  const B = new Float32Array(outFeatures * r);
  for (let o = 0; o < outFeatures; o++)
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let i = 0; i < r; i++) s += GA[o * r + i] * Minv[i * r + j];
      B[o * r + j] = s * c;
    }
  return B;
}

/** Inverse of an r×r matrix by Gauss–Jordan with partial pivoting (r is a LoRA rank: small). */
function invertSpd(M: Float64Array, r: number): Float64Array {
  const a = Float64Array.from(M);
  const inv = new Float64Array(r * r);
  for (let i = 0; i < r; i++) inv[i * r + i] = 1;
  for (let c = 0; c < r; c++) {
    let p = c;
    for (let i = c + 1; i < r; i++) if (Math.abs(a[i * r + c]) > Math.abs(a[p * r + c])) p = i;
    if (a[p * r + c] === 0) throw new Error("goraInitB: A·Aᵀ is singular (A must have full row rank)");
    if (p !== c)
      for (let j = 0; j < r; j++) {
        [a[c * r + j], a[p * r + j]] = [a[p * r + j], a[c * r + j]];
        [inv[c * r + j], inv[p * r + j]] = [inv[p * r + j], inv[c * r + j]];
      }
    const d = a[c * r + c];
    for (let j = 0; j < r; j++) {
      a[c * r + j] /= d;
      inv[c * r + j] /= d;
    }
    for (let i = 0; i < r; i++) {
      if (i === c) continue;
      const f = a[i * r + c];
      if (f === 0) continue;
      for (let j = 0; j < r; j++) {
        a[i * r + j] -= f * a[c * r + j];
        inv[i * r + j] -= f * inv[c * r + j];
      }
    }
  }
  return inv;
}
