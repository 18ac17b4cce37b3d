// The grouped LoRA product of the reference backend (core/backend.ts LoraGroupedParams): per
// adapter group, two GEMMs with the arguments LoraLinear's fused op gives them — h = s·x·Aᵀ
// with s as the alpha, then y += h·Bᵀ with beta = 1 — on the rows where they lie when they
// are contiguous, else on gathered copies of x's and y's rows (y's written back), so a row's
// bits do not depend on where it sits in the batch. `loraGroupedWith` takes the GEMM, so the
// wasm backend runs the same steps on its own GEMM.
import type { FloatArray, GemmParams, LoraGroupedParams } from "../../core/backend.js";
import { gemm as refGemm } from "./gemm.js";

type Gemm = (p: GemmParams) => void;

function gemmNT(
  gemm: Gemm,
  a: FloatArray,
  b: FloatArray,
  c: FloatArray,
  m: number,
  n: number,
  k: number,
  alpha: number,
  beta: number,
): void {
  gemm({
    transA: false,
    transB: true,
    m,
    n,
    k,
    batch: 1,
    a,
    strideA: 0,
    b,
    strideB: 0,
    c,
    strideC: 0,
    alpha,
    beta,
  });
}

function alloc(like: FloatArray, n: number): FloatArray {
  return like instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

export function loraGrouped(p: LoraGroupedParams): void {
  loraGroupedWith(refGemm, p);
}

/** loraGrouped with `gemm` doing the products (the same calls, arguments and order). */
export function loraGroupedWith(gemm: Gemm, p: LoraGroupedParams): void {
  const { x, y, inFeatures: inF, outFeatures: outF, rows, starts } = p;
  for (let g = 0; g + 1 < starts.length; g++) {
    const s0 = starts[g];
    const n = starts[g + 1] - s0;
    if (n <= 0) continue;
    const a = p.slots ? p.slots[g] : g;
    if (!(a >= 0 && a < p.A.length))
      throw new RangeError(`loraGrouped: group ${g}'s slot ${a} is not one of the ${p.A.length} adapters`);
    const r = p.ranks[a];
    const alpha = x instanceof Float32Array ? Math.fround(p.scales[a]) : p.scales[a];
    const h = alloc(x, n * r);
    const first = rows[s0];
    let contiguous = true;
    for (let j = 1; j < n && contiguous; j++) contiguous = rows[s0 + j] === first + j;
    if (contiguous) {
      gemmNT(gemm, x.subarray(first * inF, (first + n) * inF), p.A[a], h, n, r, inF, alpha, 0);
      gemmNT(gemm, h, p.B[a], y.subarray(first * outF, (first + n) * outF), n, outF, r, 1, 1);
      continue;
    }
    const xs = alloc(x, n * inF);
    for (let j = 0; j < n; j++) xs.set(x.subarray(rows[s0 + j] * inF, (rows[s0 + j] + 1) * inF), j * inF);
    gemmNT(gemm, xs, p.A[a], h, n, r, inF, alpha, 0);
    // The rows of y gathered too, so the sum is the GEMM's beta = 1 accumulation as in place.
    const ys = alloc(y, n * outF);
    for (let j = 0; j < n; j++) ys.set(y.subarray(rows[s0 + j] * outF, (rows[s0 + j] + 1) * outF), j * outF);
    gemmNT(gemm, h, p.B[a], ys, n, outF, r, 1, 1);
    for (let j = 0; j < n; j++) y.set(ys.subarray(j * outF, (j + 1) * outF), rows[s0 + j] * outF);
  }
}
