// The NF4 kernels of the native addon (native/src/nf4_gemm.cc), as the native backend's
// nf4Gemm / nf4Dequant / nf4Scales call them.

export interface Nf4Addon {
  /** out[j] = qmap[code(start+j)]·scales[(start+j)/blocksize] for j < count. */
  nf4Dequant(
    packed: Uint8Array,
    scales: Float32Array,
    blocksize: number,
    qmap: Float32Array,
    start: number,
    count: number,
    out: Float32Array,
  ): void;
  /** Double-quantised absmax expanded: out[b] = f32(code[q[b]]·nested[b/nbs]) + offset. */
  nf4Scales(
    q: Uint8Array,
    code: Float32Array,
    nestedAbsmax: Float32Array,
    nestedBlocksize: number,
    offset: number,
    out: Float32Array,
  ): void;
  /**
   * Fused NF4 GEMM, W [out, in] dequantised panel by panel while packing.
   * forward: c[rows, out] (+)= a[rows, in]·Wᵀ; backward: c[rows, in] (+)= a[rows, out]·W.
   * beta 0 overwrites c, 1 accumulates.
   */
  nf4Gemm(
    backward: boolean,
    rows: number,
    inFeatures: number,
    outFeatures: number,
    a: Float32Array,
    packed: Uint8Array,
    scales: Float32Array,
    blocksize: number,
    qmap: Float32Array,
    c: Float32Array,
    beta: number,
  ): void;
}

/** The addon's NF4 functions, or null (an addon built before nf4_gemm.cc). */
export function nf4AddonOf(addon: object): Nf4Addon | null {
  const a = addon as Partial<Nf4Addon>;
  return typeof a.nf4Gemm === "function" &&
    typeof a.nf4Dequant === "function" &&
    typeof a.nf4Scales === "function"
    ? (a as Nf4Addon)
    : null;
}
