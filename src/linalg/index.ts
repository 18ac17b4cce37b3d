// Dense f64 linear algebra outside autograd: matrices and singular value decompositions.
export type { Matrix } from "./matrix.js";
export { frobenius, LinalgError, matmul, matmulTN, matrix, orthonormalColumns, transpose } from "./matrix.js";
export type { RandomizedSvdOptions, Svd } from "./svd.js";
export { lowRankSvd, randomizedSvd, reconstruct, svd, truncate, truncatedSvd } from "./svd.js";
