// Singular value decompositions in f64: exact (one-sided Jacobi), truncated, of a low-rank
// product, and randomised (Halko, Martinsson & Tropp 2011, as torch.svd_lowrank).
import { ShapeError } from "../core/errors.js";
import { Rng } from "../core/rng.js";
import type { Matrix } from "./matrix.js";
import {
  columnNorm,
  completeColumn,
  LinalgError,
  matmul,
  matmulTN,
  orthogonaliseAgainst,
  orthonormalColumns,
  scaleColumn,
  transpose,
} from "./matrix.js";

/** M ≈ U·diag(S)·Vᵀ with U (m×k) and Vt (k×n) orthonormal, S descending and ≥ 0. */
export interface Svd {
  U: Matrix;
  S: Float64Array;
  Vt: Matrix;
}

const EPS = 2.220446049250313e-16;
const MAX_SWEEPS = 80;

/**
 * Thin SVD of an m×n matrix: k = min(m, n) singular triplets, S descending.
 *
 * One-sided Jacobi (Hestenes 1958; Demmel & Veselić 1992): plane rotations applied to
 * the columns until every pair is orthogonal to working precision; the column norms are
 * then the singular values. It is slower than Golub–Kahan on large matrices but simple and
 * accurate to high relative precision, which is what adapter merging and tests need; use
 * `randomizedSvd` or `lowRankSvd` for large inputs. Left singular vectors of zero
 * singular values (rank deficiency) are completed to an orthonormal set.
 *
 * @example
 * const { U, S, Vt } = svd(matrix(3, 2, [3, 0, 0, 2, 0, 0])); // S = [3, 2]
 */
export function svd(a: Matrix): Svd {
  checkMatrix(a, "svd");
  if (a.rows < a.cols) {
    // Aᵀ = U'·S·V'ᵀ  ⇒  A = V'·S·U'ᵀ.
    const t = tallSvd(transpose(a));
    return { U: transpose(t.Vt), S: t.S, Vt: transpose(t.U) };
  }
  return tallSvd(a);
}

/** One-sided Jacobi on m×n with m ≥ n. */
function tallSvd(a: Matrix): Svd {
  const { rows: m, cols: n } = a;
  // Column-major work copies: column j of W at j·m, of V at j·n.
  const w = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) w[j * m + i] = a.data[i * n + j];
  const v = new Float64Array(n * n);
  for (let j = 0; j < n; j++) v[j * n + j] = 1;
  const tol = EPS * Math.sqrt(m);

  let sweep = 0;
  for (; sweep < MAX_SWEEPS; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      const op = p * m;
      for (let q = p + 1; q < n; q++) {
        const oq = q * m;
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          const x = w[op + i];
          const y = w[oq + i];
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= tol * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        // The rotation that diagonalises the 2×2 Gram matrix [[α, γ], [γ, β]].
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = w[op + i];
          const y = w[oq + i];
          w[op + i] = c * x - s * y;
          w[oq + i] = s * x + c * y;
        }
        const vp = p * n;
        const vq = q * n;
        for (let i = 0; i < n; i++) {
          const x = v[vp + i];
          const y = v[vq + i];
          v[vp + i] = c * x - s * y;
          v[vq + i] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  if (sweep === MAX_SWEEPS)
    throw new LinalgError(`svd: one-sided Jacobi did not converge in ${MAX_SWEEPS} sweeps (${m}×${n})`);

  const norms = new Float64Array(n);
  for (let j = 0; j < n; j++) norms[j] = columnNorm(w, j, m);
  const order = Array.from({ length: n }, (_, j) => j).sort((x, y) => norms[y] - norms[x] || x - y);
  const S = new Float64Array(n);
  const u = new Float64Array(m * n); // column-major, sorted
  const smax = n > 0 ? norms[order[0]] : 0;
  const zero = smax * Math.max(m, n) * EPS;
  for (let k = 0; k < n; k++) {
    const j = order[k];
    S[k] = norms[j];
    if (S[k] > zero && S[k] > 0) {
      u.set(w.subarray(j * m, j * m + m), k * m);
      scaleColumn(u, k, m, 1 / S[k]);
    } else {
      // Numerically zero: its direction is noise; complete U orthonormally instead.
      completeColumn(u, k, m);
    }
  }
  // Re-orthogonalise the computed columns once against the earlier ones: free accuracy
  // for clustered, tiny singular values (a no-op to rounding for well-separated ones).
  for (let k = 1; k < n; k++) {
    if (!(S[k] > zero)) continue;
    orthogonaliseAgainst(u, k, m, k);
    scaleColumn(u, k, m, 1 / columnNorm(u, k, m));
  }
  const U = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let k = 0; k < n; k++) U[i * n + k] = u[k * m + i];
  const Vt = new Float64Array(n * n);
  for (let k = 0; k < n; k++) Vt.set(v.subarray(order[k] * n, order[k] * n + n), k * n);
  return { U: { rows: m, cols: n, data: U }, S, Vt: { rows: n, cols: n, data: Vt } };
}

/**
 * The first `rank` singular triplets: the best rank-`rank` approximation in Frobenius and
 * spectral norm (Eckart–Young). A rank above min(m, n) gives min(m, n) triplets.
 */
export function truncatedSvd(a: Matrix, rank: number): Svd {
  checkRank(rank, "truncatedSvd");
  return truncate(svd(a), rank);
}

/** Keeps the first `rank` triplets of a decomposition. */
export function truncate(d: Svd, rank: number): Svd {
  const k = Math.min(rank, d.S.length);
  if (k === d.S.length) return d;
  const m = d.U.rows;
  const n = d.Vt.cols;
  const U = new Float64Array(m * k);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) U[i * k + j] = d.U.data[i * d.U.cols + j];
  return {
    U: { rows: m, cols: k, data: U },
    S: d.S.slice(0, k),
    Vt: { rows: k, cols: n, data: d.Vt.data.slice(0, k * n) },
  };
}

/**
 * SVD of the product L·R (L: m×k, R: k×n) without forming it: with L = Q_L·R_L and
 * Rᵀ = Q_R·R_R (orthonormal Q), L·R = Q_L·(R_L·R_Rᵀ)·Q_Rᵀ, so only the k×k core is
 * decomposed. Exact (not an approximation) and O((m + n)·k²) — the way to take the SVD of
 * a LoRA update B·A when d and k are large. Returns min(k, m, n) triplets.
 *
 * @example
 * const { U, S, Vt } = lowRankSvd(B, A); // ΔW = B·A, B: out×r, A: r×in
 */
export function lowRankSvd(left: Matrix, right: Matrix): Svd {
  checkMatrix(left, "lowRankSvd");
  checkMatrix(right, "lowRankSvd");
  if (left.cols !== right.rows)
    throw new ShapeError(
      `lowRankSvd: inner dimensions differ: ${left.rows}×${left.cols} · ${right.rows}×${right.cols}`,
    );
  const k = left.cols;
  if (k > left.rows || k > right.cols) return svd(matmul(left, right));
  const qL = orthonormalColumns(left); // m×k
  const rL = matmulTN(qL, left); // k×k
  const rt = transpose(right); // n×k
  const qR = orthonormalColumns(rt); // n×k
  const rR = matmulTN(qR, rt); // k×k: Rᵀ = Q_R·R_R
  const core = matmul(rL, transpose(rR)); // k×k
  const c = svd(core);
  return { U: matmul(qL, c.U), S: c.S, Vt: transpose(matmul(qR, transpose(c.Vt))) };
}

export interface RandomizedSvdOptions {
  /** Subspace (power) iterations; torch.svd_lowrank's default is 2. */
  niter?: number;
  /** Seed of the Gaussian test matrix. */
  seed?: number;
  /**
   * Extra sample columns beyond `rank` (Halko et al. recommend 5–10); the result is still
   * cut to `rank`. torch.svd_lowrank samples exactly q columns, i.e. 0 here (the default).
   */
  oversample?: number;
}

/**
 * Randomised truncated SVD (Halko, Martinsson & Tropp 2011, Algorithms 4.4 + 5.1), as
 * torch.svd_lowrank: sample the range with a Gaussian test matrix, sharpen it with `niter`
 * power iterations (re-orthonormalising between products for stability), then take the
 * exact SVD of the small projection QᵀM. Cost O(m·n·q·(2·niter + 2)) for q = rank +
 * oversample, instead of O(m·n·min(m, n)).
 *
 * @example
 * const { U, S, Vt } = randomizedSvd(W, 16, { niter: 4, seed: 0 });
 */
export function randomizedSvd(a: Matrix, rank: number, opts: RandomizedSvdOptions = {}): Svd {
  checkMatrix(a, "randomizedSvd");
  checkRank(rank, "randomizedSvd");
  const niter = opts.niter ?? 2;
  const oversample = opts.oversample ?? 0;
  if (!Number.isInteger(niter) || niter < 0)
    throw new ShapeError(`randomizedSvd: niter must be a non-negative integer, got ${niter}`);
  if (!Number.isInteger(oversample) || oversample < 0)
    throw new ShapeError(`randomizedSvd: oversample must be a non-negative integer, got ${oversample}`);
  if (a.rows < a.cols) {
    const t = randomizedSvd(transpose(a), rank, opts);
    return { U: transpose(t.Vt), S: t.S, Vt: transpose(t.U) };
  }
  const { rows: m, cols: n } = a;
  const q = Math.min(rank + oversample, n);
  if (q >= n) return truncatedSvd(a, rank); // sampling the whole range: do it exactly
  const rng = new Rng(opts.seed ?? 0);
  const omega = new Float64Array(n * q);
  for (let i = 0; i < omega.length; i++) omega[i] = rng.normal();
  let Q = orthonormalColumns(matmul(a, { rows: n, cols: q, data: omega })); // m×q
  for (let it = 0; it < niter; it++) {
    const Z = orthonormalColumns(matmulTN(a, Q)); // n×q
    Q = orthonormalColumns(matmul(a, Z)); // m×q
  }
  const small = svd(matmulTN(Q, a)); // (q×n) = U_b·S·Vt
  return truncate({ U: matmul(Q, small.U), S: small.S, Vt: small.Vt }, Math.min(rank, m, n));
}

/** U·diag(S)·Vt, the matrix a decomposition represents. */
export function reconstruct(d: Svd): Matrix {
  const m = d.U.rows;
  const k = d.S.length;
  const us = new Float64Array(m * k);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) us[i * k + j] = d.U.data[i * d.U.cols + j] * d.S[j];
  return matmul({ rows: m, cols: k, data: us }, d.Vt);
}

function checkMatrix(a: Matrix, op: string): void {
  if (a.data.length !== a.rows * a.cols)
    throw new ShapeError(`${op}: ${a.rows}×${a.cols} matrix holds ${a.data.length} values`);
  for (let i = 0; i < a.data.length; i++)
    if (!Number.isFinite(a.data[i]))
      throw new LinalgError(`${op}: the matrix has a non-finite value (${a.data[i]}) at index ${i}`);
}

function checkRank(rank: number, op: string): void {
  if (!Number.isInteger(rank) || rank <= 0)
    throw new ShapeError(`${op}: rank must be a positive integer, got ${rank}`);
}
