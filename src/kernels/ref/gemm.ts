// Batched GEMM, C = alpha·op(A)·op(B) + beta·C, in the GotoBLAS shape scaled down to
// JavaScript: a panel of op(B) (k × NB columns) is packed once into f64, 4 columns
// interleaved per strip; for every 4 rows of op(A) a k×4 sliver is packed the same way;
// a 4×4 micro-kernel then runs the whole k loop in 16 local f64 accumulators. Packing
// reads each operand along its contiguous axis, so the four transpose forms cost the
// same and the inner loop never strides. bf16 B is widened while packing.
import type { FloatArray, GemmParams } from "../../core/backend.js";
import { bf16ToF32 } from "../../core/dtype.js";
import { SLOT, scratch } from "./scratch.js";

const MR = 4;
const NR = 4;
const tile = new Float64Array(MR * NR);

/** ap[p·4 + r] = op(A)[i0 + r, p], rows past m zero. */
function packA(
  a: FloatArray,
  off: number,
  transA: boolean,
  m: number,
  k: number,
  i0: number,
  mr: number,
  ap: Float64Array,
): void {
  if (mr < MR) ap.fill(0, 0, k * MR);
  if (transA) {
    // A stored k×m: row p holds op(A)[·, p] contiguously.
    for (let p = 0; p < k; p++) {
      const src = off + p * m + i0;
      for (let r = 0; r < mr; r++) ap[p * MR + r] = a[src + r];
    }
  } else {
    for (let r = 0; r < mr; r++) {
      const src = off + (i0 + r) * k;
      for (let p = 0; p < k; p++) ap[p * MR + r] = a[src + p];
    }
  }
}

/** bp[s·k·4 + p·4 + c] = op(B)[p, j0 + 4s + c], columns past nb zero. */
function packB(
  b: FloatArray | Uint16Array,
  off: number,
  transB: boolean,
  n: number,
  k: number,
  j0: number,
  nb: number,
  bp: Float64Array,
): void {
  const strips = Math.ceil(nb / NR);
  if (nb % NR !== 0) bp.fill(0, (strips - 1) * k * NR, strips * k * NR);
  const bf16 = b instanceof Uint16Array;
  if (transB) {
    // B stored n×k: row j holds op(B)[·, j] contiguously.
    for (let jj = 0; jj < nb; jj++) {
      const src = off + (j0 + jj) * k;
      const dst = (jj >> 2) * k * NR + (jj & 3);
      if (bf16) for (let p = 0; p < k; p++) bp[dst + p * NR] = bf16ToF32(b[src + p]);
      else for (let p = 0; p < k; p++) bp[dst + p * NR] = b[src + p];
    }
  } else {
    for (let p = 0; p < k; p++) {
      const src = off + p * n + j0;
      for (let jj = 0; jj < nb; jj++) {
        const v = bf16 ? bf16ToF32(b[src + jj]) : b[src + jj];
        bp[(jj >> 2) * k * NR + p * NR + (jj & 3)] = v;
      }
    }
  }
}

/** tile = sliver(ap) · strip(bp at bo), full k. */
function micro(ap: Float64Array, bp: Float64Array, bo: number, k: number): void {
  let c00 = 0;
  let c01 = 0;
  let c02 = 0;
  let c03 = 0;
  let c10 = 0;
  let c11 = 0;
  let c12 = 0;
  let c13 = 0;
  let c20 = 0;
  let c21 = 0;
  let c22 = 0;
  let c23 = 0;
  let c30 = 0;
  let c31 = 0;
  let c32 = 0;
  let c33 = 0;
  for (let p = 0; p < k; p++) {
    const ai = p * MR;
    const bi = bo + p * NR;
    const a0 = ap[ai];
    const a1 = ap[ai + 1];
    const a2 = ap[ai + 2];
    const a3 = ap[ai + 3];
    const b0 = bp[bi];
    const b1 = bp[bi + 1];
    const b2 = bp[bi + 2];
    const b3 = bp[bi + 3];
    c00 += a0 * b0;
    c01 += a0 * b1;
    c02 += a0 * b2;
    c03 += a0 * b3;
    c10 += a1 * b0;
    c11 += a1 * b1;
    c12 += a1 * b2;
    c13 += a1 * b3;
    c20 += a2 * b0;
    c21 += a2 * b1;
    c22 += a2 * b2;
    c23 += a2 * b3;
    c30 += a3 * b0;
    c31 += a3 * b1;
    c32 += a3 * b2;
    c33 += a3 * b3;
  }
  tile[0] = c00;
  tile[1] = c01;
  tile[2] = c02;
  tile[3] = c03;
  tile[4] = c10;
  tile[5] = c11;
  tile[6] = c12;
  tile[7] = c13;
  tile[8] = c20;
  tile[9] = c21;
  tile[10] = c22;
  tile[11] = c23;
  tile[12] = c30;
  tile[13] = c31;
  tile[14] = c32;
  tile[15] = c33;
}

function checkSize(name: string, arr: { length: number }, batch: number, stride: number, size: number): void {
  const need = (batch - 1) * stride + size;
  if (arr.length < need) {
    throw new RangeError(
      `gemm: ${name} holds ${arr.length} elements but batch=${batch}, stride=${stride} and a ${size}-element matrix need ${need}`,
    );
  }
}

// a: (batch, m×k or k×m), b: (batch, k×n or n×k), c: (batch, m, n).
export function gemm(p: GemmParams): void {
  const { transA, transB, m, n, k, batch, a, strideA, b, strideB, c, strideC, alpha, beta } = p;
  if (batch <= 0 || m <= 0 || n <= 0) return;
  checkSize("A", a, batch, strideA, m * k);
  checkSize("B", b, batch, strideB, k * n);
  checkSize("C", c, batch, strideC, m * n);
  if (alpha === 0) {
    // As BLAS: the product is not formed, so Inf/NaN in A or B cannot leak into C.
    for (let bi = 0; bi < batch; bi++) {
      const o = bi * strideC;
      if (beta === 0) c.fill(0, o, o + m * n);
      else for (let i = o; i < o + m * n; i++) c[i] *= beta;
    }
    return;
  }
  // A packed B panel of about 256 KiB stays in L2 while every row of A streams past it.
  const NB = Math.max(16, Math.min(256, Math.floor(32768 / Math.max(k, 1) / NR) * NR));
  const bp = scratch(SLOT.gemmB, Math.max(k, 1) * NB);
  const ap = scratch(SLOT.gemmA, Math.max(k, 1) * MR);
  for (let bi = 0; bi < batch; bi++) {
    const offA = bi * strideA;
    const offB = bi * strideB;
    const offC = bi * strideC;
    for (let j0 = 0; j0 < n; j0 += NB) {
      const nb = Math.min(NB, n - j0);
      packB(b, offB, transB, n, k, j0, nb, bp);
      for (let i0 = 0; i0 < m; i0 += MR) {
        const mr = Math.min(MR, m - i0);
        packA(a, offA, transA, m, k, i0, mr, ap);
        for (let jj = 0; jj < nb; jj += NR) {
          micro(ap, bp, (jj / NR) * k * NR, k);
          const nr = Math.min(NR, nb - jj);
          for (let r = 0; r < mr; r++) {
            const co = offC + (i0 + r) * n + j0 + jj;
            for (let q = 0; q < nr; q++) {
              const v = alpha * tile[r * NR + q];
              // beta = 0 never reads C: it may hold NaN from the buffer pool.
              c[co + q] = beta === 0 ? v : v + beta * c[co + q];
            }
          }
        }
      }
    }
  }
}
