// SVD: torch/numpy reference values, reconstruction, orthogonality, rank deficiency, and
// the truncated, low-rank-product and randomised variants.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Rng } from "../../src/core/rng.js";
import type { Matrix, Svd } from "../../src/linalg/index.js";
import {
  frobenius,
  LinalgError,
  lowRankSvd,
  matmul,
  matmulTN,
  matrix,
  randomizedSvd,
  reconstruct,
  svd,
  transpose,
  truncatedSvd,
} from "../../src/linalg/index.js";

function randn(m: number, n: number, seed: number): Matrix {
  const r = new Rng(seed);
  return matrix(
    m,
    n,
    Array.from({ length: m * n }, () => r.normal()),
  );
}

function maxAbsDiff(a: Matrix, b: Matrix): number {
  assert.deepEqual([a.rows, a.cols], [b.rows, b.cols]);
  let d = 0;
  for (let i = 0; i < a.data.length; i++) d = Math.max(d, Math.abs(a.data[i] - b.data[i]));
  return d;
}

/** max |XᵀX − I| over the columns of X. */
function orthoError(x: Matrix): number {
  const g = matmulTN(x, x);
  let e = 0;
  for (let i = 0; i < g.rows; i++)
    for (let j = 0; j < g.cols; j++) e = Math.max(e, Math.abs(g.data[i * g.cols + j] - (i === j ? 1 : 0)));
  return e;
}

function checkDecomposition(a: Matrix, d: Svd, tol: number): void {
  const k = Math.min(a.rows, a.cols);
  assert.deepEqual([d.U.rows, d.U.cols, d.S.length, d.Vt.rows, d.Vt.cols], [a.rows, k, k, k, a.cols]);
  const scale = Math.max(1, frobenius(a));
  assert.ok(maxAbsDiff(reconstruct(d), a) < tol * scale, "U·S·Vᵀ reconstructs the matrix");
  assert.ok(orthoError(d.U) < tol, `UᵀU = I (${orthoError(d.U)})`);
  assert.ok(orthoError(transpose(d.Vt)) < tol, "V orthonormal");
  for (let i = 0; i < k; i++) assert.ok(d.S[i] >= 0, "singular values are non-negative");
  for (let i = 1; i < k; i++) assert.ok(d.S[i - 1] >= d.S[i], "descending");
}

// torch.linalg.svd(A, full_matrices=False) in float64 (torch 1.13), printed to 17 digits.
const A54 = matrix(5, 4, [4, 1, -2, 3, 1, -3, 0.5, 2, -2, 0.5, 5, -1, 0, 2, 1, 1.5, 3, -1, 2, 0]);
const TORCH_S = [7.2170103608520515, 4.856189784794503, 3.813499379079251, 2.3535939987971117];
const TORCH_U = [
  [-0.7073058971313673, 0.2283344170028921, -0.43058203572778253, 0.055320111043889564],
  [-0.18499113436181167, 0.4804470925366773, 0.574345359214858, 0.6340199419213777],
  [0.67456734326183, 0.4744226200020083, -0.28040576551690377, 0.13282106020745377],
  [0.007029166202599121, 0.12008445867907169, -0.6356026211671254, 0.4316711199871755],
  [-0.10201048141193736, 0.6910404370940877, 0.045917681640446156, -0.6252815435421801],
];
const TORCH_VT = [
  [-0.6469965567702848, 0.041709790668303603, 0.6232443798568501, -0.4372895972540988],
  [0.5185260344871477, -0.29378321967753396, 0.7532310941786282, 0.27832551115088344],
  [-0.11784929354036916, -0.9468846225372534, -0.20911484574577283, -0.21399074022779763],
  [-0.5464775851747851, -0.1239404082645823, 0.021916729410151548, 0.8279617630499048],
];
// numpy.linalg.svd(B, compute_uv=False) for a nearly rank-2 3×5 matrix (m < n).
const B35 = matrix(3, 5, [1, 2, 3, 4, 5, 2, 4, 6, 8, 10.5, 0, 1, 0, 1, 0]);
const NUMPY_S = [16.907328962482936, 1.1734497393885965, 0.12346280214925186];

describe("svd", () => {
  test("matches torch.linalg.svd on a 5×4 matrix (singular vectors up to sign)", () => {
    const d = svd(A54);
    checkDecomposition(A54, d, 1e-13);
    for (let k = 0; k < 4; k++) {
      assert.ok(Math.abs(d.S[k] - TORCH_S[k]) < 1e-13 * TORCH_S[0], `S[${k}]`);
      // Fix each triplet's sign by the torch U column.
      let dot = 0;
      for (let i = 0; i < 5; i++) dot += d.U.data[i * 4 + k] * TORCH_U[i][k];
      const sgn = Math.sign(dot);
      for (let i = 0; i < 5; i++) assert.ok(Math.abs(sgn * d.U.data[i * 4 + k] - TORCH_U[i][k]) < 1e-12);
      for (let j = 0; j < 4; j++) assert.ok(Math.abs(sgn * d.Vt.data[k * 4 + j] - TORCH_VT[k][j]) < 1e-12);
    }
  });

  test("matches numpy on a wide, nearly rank-deficient 3×5 matrix", () => {
    const d = svd(B35);
    checkDecomposition(B35, d, 1e-13);
    for (let k = 0; k < 3; k++) assert.ok(Math.abs(d.S[k] - NUMPY_S[k]) / NUMPY_S[k] < 1e-12, `S[${k}]`);
  });

  for (const [m, n] of [
    [40, 12],
    [12, 40],
    [33, 33],
    [1, 7],
    [7, 1],
  ])
    test(`random ${m}×${n}: reconstruction and orthogonality to 1e-12`, () => {
      checkDecomposition(randn(m, n, m * 100 + n), svd(randn(m, n, m * 100 + n)), 1e-12);
    });

  test("rank-deficient input: zero singular values and an orthonormal U all the same", () => {
    const a = matmul(randn(9, 3, 1), randn(3, 7, 2)); // rank 3
    const d = svd(a);
    checkDecomposition(a, d, 1e-12);
    for (let k = 3; k < 7; k++) assert.ok(d.S[k] < 1e-13 * d.S[0], `S[${k}] = ${d.S[k]}`);
    const z = svd(matrix(4, 3));
    assert.deepEqual(Array.from(z.S), [0, 0, 0]);
    assert.ok(orthoError(z.U) < 1e-15);
    const wide = svd(transpose(a));
    checkDecomposition(transpose(a), wide, 1e-12);
  });

  test("singular values of a diagonal matrix with repeated entries", () => {
    const d = svd(matrix(3, 3, [2, 0, 0, 0, -5, 0, 0, 0, 2]));
    assert.deepEqual(Array.from(d.S), [5, 2, 2]);
    checkDecomposition(matrix(3, 3, [2, 0, 0, 0, -5, 0, 0, 0, 2]), d, 1e-15);
  });

  test("non-finite input is refused by name", () => {
    assert.throws(() => svd(matrix(2, 2, [1, Number.NaN, 0, 1])), LinalgError);
  });
});

describe("truncated, low-rank-product and randomised SVD", () => {
  test("truncatedSvd is the Eckart–Young best approximation", () => {
    const a = randn(20, 15, 3);
    const full = svd(a);
    const t = truncatedSvd(a, 4);
    assert.equal(t.S.length, 4);
    assert.deepEqual([t.U.cols, t.Vt.rows], [4, 4]);
    const r = reconstruct(t);
    let err2 = 0;
    for (let i = 0; i < r.data.length; i++) err2 += (r.data[i] - a.data[i]) ** 2;
    let tail = 0;
    for (let k = 4; k < 15; k++) tail += full.S[k] ** 2;
    assert.ok(Math.abs(err2 - tail) < 1e-10 * tail, "‖A − A_k‖² = Σ_{i>k} σ_i²");
    assert.equal(truncatedSvd(a, 99).S.length, 15, "a rank past min(m, n) gives min(m, n)");
  });

  test("lowRankSvd(L, R) equals the SVD of L·R without forming it", () => {
    const L = randn(60, 5, 4);
    const R = randn(5, 45, 5);
    const p = matmul(L, R);
    const d = lowRankSvd(L, R);
    assert.equal(d.S.length, 5);
    assert.ok(maxAbsDiff(reconstruct(d), p) < 1e-12 * frobenius(p));
    assert.ok(orthoError(d.U) < 1e-13 && orthoError(transpose(d.Vt)) < 1e-13);
    const ref = svd(p);
    for (let k = 0; k < 5; k++) assert.ok(Math.abs(d.S[k] - ref.S[k]) < 1e-12 * ref.S[0]);
    // Rank-deficient factors (two equal columns of L) and an inner size above min(m, n).
    const L2 = matrix(6, 3, [1, 1, 0, 2, 2, 1, 0, 0, 3, 1, 1, 1, 4, 4, 0, 5, 5, 2]);
    const d2 = lowRankSvd(L2, randn(3, 8, 6));
    assert.ok(maxAbsDiff(reconstruct(d2), matmul(L2, randn(3, 8, 6))) < 1e-12 * 20);
    assert.ok(d2.S[2] < 1e-13 * d2.S[0]);
    const d3 = lowRankSvd(randn(4, 6, 7), randn(6, 5, 8));
    assert.ok(maxAbsDiff(reconstruct(d3), matmul(randn(4, 6, 7), randn(6, 5, 8))) < 1e-12 * 20);
  });

  test("randomizedSvd recovers an exactly low-rank matrix and approximates a decaying spectrum", () => {
    const p = matmul(randn(120, 6, 9), randn(6, 90, 10)); // rank 6
    const ref = svd(p);
    const d = randomizedSvd(p, 6, { niter: 2, seed: 1 });
    assert.equal(d.S.length, 6);
    for (let k = 0; k < 6; k++) assert.ok(Math.abs(d.S[k] - ref.S[k]) < 1e-10 * ref.S[0], `S[${k}]`);
    assert.ok(maxAbsDiff(reconstruct(d), p) < 1e-10 * frobenius(p));
    assert.ok(orthoError(d.U) < 1e-12 && orthoError(transpose(d.Vt)) < 1e-12);
    // Wide input, fast-decaying spectrum σ_k = 2^-k plus the exact rank-6 part.
    const u = svd(randn(50, 50, 11));
    const decay = new Float64Array(50).map((_, k) => 100 * 0.5 ** k);
    const a = reconstruct({ U: u.U, S: decay, Vt: transpose(svd(randn(80, 50, 12)).U) });
    const w = transpose(a); // 50×80 → wide
    const r = randomizedSvd(w, 5, { niter: 4, seed: 3, oversample: 5 });
    for (let k = 0; k < 5; k++) assert.ok(Math.abs(r.S[k] - decay[k]) < 1e-9 * decay[0], `σ_${k}`);
    // Deterministic in the seed.
    assert.deepEqual(randomizedSvd(w, 5, { seed: 3 }).S, randomizedSvd(w, 5, { seed: 3 }).S);
  });
});
