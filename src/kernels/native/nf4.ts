// Node-only: the NF4 kernels of the native addon (native/src/nf4_gemm.cc), loaded through
// the same loader as the rest; null when the addon is missing or predates them.
import { loadAddon } from "./loader.js";

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

let cached: Nf4Addon | null | undefined;

/** The addon's NF4 functions, or null (no addon, or an addon built before nf4_gemm.cc). */
export function loadNf4Addon(): Nf4Addon | null {
  if (cached !== undefined) return cached;
  const r = loadAddon();
  const a = "addon" in r ? (r.addon as unknown as Partial<Nf4Addon>) : null;
  cached =
    a &&
    typeof a.nf4Gemm === "function" &&
    typeof a.nf4Dequant === "function" &&
    typeof a.nf4Scales === "function"
      ? (a as Nf4Addon)
      : null;
  return cached;
}
