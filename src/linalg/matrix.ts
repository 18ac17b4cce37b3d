// Dense f64 matrices for the decompositions lorakit needs outside autograd (SVD for adapter
// merging and initialisation). Row-major, plain TypeScript, browser-safe.
import { LorakitError, ShapeError } from "../core/errors.js";

/** A decomposition that cannot be computed (non-finite input, no convergence). */
export class LinalgError extends LorakitError {}

/** A row-major f64 matrix: element (i, j) is data[i·cols + j]. */
export interface Matrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

/**
 * A matrix from rows × cols values (copied to f64), or zeros when none are given.
 *
 * @example
 * const m = matrix(2, 3, [1, 2, 3, 4, 5, 6]);
 */
export function matrix(rows: number, cols: number, values?: ArrayLike<number>): Matrix {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0)
    throw new ShapeError(`matrix: dimensions must be non-negative integers, got ${rows}×${cols}`);
  const data = new Float64Array(rows * cols);
  if (values) {
    if (values.length !== rows * cols)
      throw new ShapeError(`matrix: ${values.length} values do not fill ${rows}×${cols}`);
    for (let i = 0; i < data.length; i++) data[i] = values[i];
  }
  return { rows, cols, data };
}

export function transpose(a: Matrix): Matrix {
  const out = new Float64Array(a.rows * a.cols);
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < a.cols; j++) out[j * a.rows + i] = a.data[i * a.cols + j];
  return { rows: a.cols, cols: a.rows, data: out };
}

/** a (m×k) · b (k×n) → (m×n). */
export function matmul(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.rows)
    throw new ShapeError(`matmul: inner dimensions differ: ${a.rows}×${a.cols} · ${b.rows}×${b.cols}`);
  const m = a.rows;
  const k = a.cols;
  const n = b.cols;
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const o = i * n;
    for (let p = 0; p < k; p++) {
      const av = a.data[i * k + p];
      if (av === 0) continue;
      const bo = p * n;
      for (let j = 0; j < n; j++) out[o + j] += av * b.data[bo + j];
    }
  }
  return { rows: m, cols: n, data: out };
}

/** aᵀ (k×m)ᵀ · b (k×n) → (m×n), without forming aᵀ. */
export function matmulTN(a: Matrix, b: Matrix): Matrix {
  if (a.rows !== b.rows)
    throw new ShapeError(`matmulTN: row counts differ: (${a.rows}×${a.cols})ᵀ · ${b.rows}×${b.cols}`);
  const k = a.rows;
  const m = a.cols;
  const n = b.cols;
  const out = new Float64Array(m * n);
  for (let p = 0; p < k; p++) {
    const bo = p * n;
    for (let i = 0; i < m; i++) {
      const av = a.data[p * m + i];
      if (av === 0) continue;
      const o = i * n;
      for (let j = 0; j < n; j++) out[o + j] += av * b.data[bo + j];
    }
  }
  return { rows: m, cols: n, data: out };
}

/** Frobenius norm. */
export function frobenius(a: Matrix): number {
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += a.data[i] * a.data[i];
  return Math.sqrt(s);
}

/**
 * Orthonormal basis of the column space of a (m×n, m ≥ n): Q (m×n) with QᵀQ = I, by
 * modified Gram–Schmidt run twice per column ("twice is enough", Giraud et al. 2005). A
 * column that is (numerically) dependent on the earlier ones is replaced by a unit vector
 * orthogonal to them, so Q is always orthonormal — what randomised range finders need.
 */
export function orthonormalColumns(a: Matrix): Matrix {
  const { rows: m, cols: n } = a;
  if (n > m) throw new ShapeError(`orthonormalColumns: needs rows ≥ cols, got ${m}×${n}`);
  // Column-major work copy: column j is cols[j·m … j·m+m).
  const q = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) q[j * m + i] = a.data[i * n + j];
  for (let j = 0; j < n; j++) {
    const before = columnNorm(q, j, m);
    orthogonaliseAgainst(q, j, m, j);
    orthogonaliseAgainst(q, j, m, j);
    const after = columnNorm(q, j, m);
    if (!(after > 1e-10 * before) || after === 0) completeColumn(q, j, m);
    else scaleColumn(q, j, m, 1 / after);
  }
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[i * n + j] = q[j * m + i];
  return { rows: m, cols: n, data: out };
}

// Column helpers on column-major storage (column j at offset j·m). Exported for svd.ts.

export function columnNorm(q: Float64Array, j: number, m: number): number {
  let s = 0;
  const o = j * m;
  for (let i = 0; i < m; i++) s += q[o + i] * q[o + i];
  return Math.sqrt(s);
}

export function scaleColumn(q: Float64Array, j: number, m: number, f: number): void {
  const o = j * m;
  for (let i = 0; i < m; i++) q[o + i] *= f;
}

/** Removes from column j its components along columns 0…count−1 (assumed orthonormal). */
export function orthogonaliseAgainst(q: Float64Array, j: number, m: number, count: number): void {
  const oj = j * m;
  for (let p = 0; p < count; p++) {
    const op = p * m;
    let d = 0;
    for (let i = 0; i < m; i++) d += q[op + i] * q[oj + i];
    if (d === 0) continue;
    for (let i = 0; i < m; i++) q[oj + i] -= d * q[op + i];
  }
}

/**
 * Sets column j to a unit vector orthogonal to columns 0…j−1 (orthonormal): the first
 * standard basis vector whose remainder after projection has norm > 1/2, else the one with
 * the largest remainder (the squared remainders sum to m − j ≥ 1, so one is ≥ 1/√m).
 */
export function completeColumn(q: Float64Array, j: number, m: number): void {
  if (j >= m)
    throw new ShapeError(`completeColumn: cannot extend ${j} orthonormal columns in dimension ${m}`);
  const oj = j * m;
  let best = -1;
  let bestNorm = -1;
  const trial = (e: number): number => {
    q.fill(0, oj, oj + m);
    q[oj + e] = 1;
    orthogonaliseAgainst(q, j, m, j);
    orthogonaliseAgainst(q, j, m, j);
    return columnNorm(q, j, m);
  };
  for (let e = 0; e < m; e++) {
    const nrm = trial(e);
    if (nrm > 0.5) {
      scaleColumn(q, j, m, 1 / nrm);
      return;
    }
    if (nrm > bestNorm) {
      bestNorm = nrm;
      best = e;
    }
  }
  scaleColumn(q, j, m, 1 / trial(best));
}
