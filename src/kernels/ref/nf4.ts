// NF4 kernels of the reference backend: bitsandbytes' dequantisation in float32, bit for bit
// (csrc/kernels.cu dDequantizeBlockwise / dequantize_blockwise), and the fused GEMM as a few
// rows of W dequantised at a time into a scratch panel that the reference GEMM multiplies.
// The float W never exists whole: at most PANEL_ELEMS of it at once. `nf4GemmWith` takes the
// GEMM, so the wasm backend runs the same panels on its own GEMM.
import type { GemmParams, Nf4GemmParams, Nf4Weight } from "../../core/backend.js";
import { gemm as refGemm } from "./gemm.js";
import { permute } from "./layout.js";

const fr = Math.fround;

/** Elements of W dequantised at once by the panel GEMM (1 MiB of f32). */
const PANEL_ELEMS = 1 << 18;

let scratchW = new Float32Array(0);
let scratchT = new Float32Array(0);
function panel(n: number): Float32Array {
  if (scratchW.length < n) scratchW = new Float32Array(n);
  return scratchW.subarray(0, n);
}
function transposed(n: number): Float32Array {
  if (scratchT.length < n) scratchT = new Float32Array(n);
  return scratchT.subarray(0, n);
}

/** out[j] = f32(quantMap[code(start+j)]·scales[⌊(start+j)/blocksize⌋]) for j < count. */
export function nf4DequantRange(
  packed: Uint8Array,
  scales: Float32Array,
  blocksize: number,
  quantMap: Float32Array,
  start: number,
  count: number,
  out: Float32Array,
): void {
  for (let j = 0; j < count; j++) {
    const i = start + j;
    const byte = packed[i >> 1];
    const c = i & 1 ? byte & 15 : byte >> 4;
    out[j] = fr(quantMap[c] * scales[Math.floor(i / blocksize)]);
  }
}

export function nf4Dequant(w: Nf4Weight, start: number, count: number, out: Float32Array): void {
  nf4DequantRange(w.packed, w.scales, w.blocksize, w.quantMap, start, count, out);
}

export function nf4Scales(
  q: Uint8Array,
  code: Float32Array,
  nestedAbsmax: Float32Array,
  nestedBlocksize: number,
  offset: number,
  out: Float32Array,
): void {
  for (let i = 0; i < q.length; i++)
    out[i] = fr(fr(code[q[i]] * nestedAbsmax[Math.floor(i / nestedBlocksize)]) + offset);
}

export function nf4Gemm(p: Nf4GemmParams): void {
  nf4GemmWith(refGemm, p);
}

/**
 * nf4Gemm with `gemm` multiplying the dequantised panels (the same calls, arguments and order)
 * and `dequant` filling them (it must give nf4Dequant's bits).
 */
export function nf4GemmWith(
  gemm: (p: GemmParams) => void,
  p: Nf4GemmParams,
  dequant: (w: Nf4Weight, start: number, count: number, out: Float32Array) => void = nf4Dequant,
): void {
  const { w, rows: N, a, c } = p;
  const C = w.inFeatures;
  const O = w.outFeatures;
  const ob = Math.max(1, Math.min(O, Math.floor(PANEL_ELEMS / C)));
  if (!p.backward) {
    // yᵀ[o0:o1, :] = W[o0:o1, :]·xᵀ, then one transpose (added to c when beta is 1).
    const yT = transposed(O * N);
    for (let o0 = 0; o0 < O; o0 += ob) {
      const o1 = Math.min(O, o0 + ob);
      const wp = panel((o1 - o0) * C);
      dequant(w, o0 * C, (o1 - o0) * C, wp);
      gemm({
        transA: false,
        transB: true,
        m: o1 - o0,
        n: N,
        k: C,
        batch: 1,
        a: wp,
        strideA: 0,
        b: a,
        strideB: 0,
        c: yT.subarray(o0 * N, o1 * N),
        strideC: 0,
        alpha: 1,
        beta: 0,
      });
    }
    if (p.beta === 0) permute(yT, [O, N], [1, 0], c);
    else for (let i = 0; i < N; i++) for (let o = 0; o < O; o++) c[i * O + o] += yT[o * N + i];
    return;
  }
  // dx = Σ_panels dy[:, o0:o1]·W[o0:o1, :], with dyᵀ made contiguous once.
  const dyT = transposed(O * N);
  permute(a, [N, O], [1, 0], dyT);
  for (let o0 = 0; o0 < O; o0 += ob) {
    const o1 = Math.min(O, o0 + ob);
    const wp = panel((o1 - o0) * C);
    dequant(w, o0 * C, (o1 - o0) * C, wp);
    gemm({
      transA: true,
      transB: false,
      m: N,
      n: C,
      k: o1 - o0,
      batch: 1,
      a: dyT.subarray(o0 * N, o1 * N),
      strideA: 0,
      b: wp,
      strideB: 0,
      c,
      strideC: 0,
      alpha: 1,
      beta: o0 === 0 ? p.beta : 1,
    });
  }
}
