// The NF4 kernels of the native addon (native/src/nf4_gemm.cc, nf4_packed.cc), as the native
// backend's nf4Gemm / nf4Dequant / nf4Scales / nf4Pack / nf4GemmPacked call them.
import type { Backend, Nf4Weight, PackedNf4 } from "../../core/backend.js";
import { BackendError } from "../../core/errors.js";
import { alignedArrays } from "./aligned.js";

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
  /** { panel } where this CPU has the packed NF4 kernels (AVX2), else null; absent in older addons. */
  nf4PackedLayout?(): { panel: number } | null;
  /** The bitsandbytes codes and f32 absmax of an out×in weight into the packed codes and scales. */
  nf4Pack?(
    packed: Uint8Array,
    scales: Float32Array,
    blocksize: number,
    outFeatures: number,
    inFeatures: number,
    codes: Uint8Array,
    pscales: Float32Array,
  ): void;
  /** The packed codes back into the bitsandbytes packing. */
  nf4Unpack?(codes: Uint8Array, outFeatures: number, inFeatures: number, packed: Uint8Array): void;
  /** nf4Gemm on the packed codes and scales. */
  nf4GemmPacked?(
    backward: boolean,
    rows: number,
    inFeatures: number,
    outFeatures: number,
    a: Float32Array,
    codes: Uint8Array,
    pscales: Float32Array,
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

/**
 * Whether the packed layout holds a weight of this shape: in-features a multiple of 8 and of
 * the block size (a power of two ≥ 8). Every LLaMA-family projection with block 64 qualifies.
 */
export function nf4Packable(inFeatures: number, blocksize: number): boolean {
  return (
    blocksize >= 8 &&
    (blocksize & (blocksize - 1)) === 0 &&
    inFeatures > 0 &&
    inFeatures % 8 === 0 &&
    inFeatures % blocksize === 0
  );
}

class NativePackedNf4 implements PackedNf4 {
  readonly backend = "native";
  readonly byteLength: number;
  constructor(
    private readonly addon: Required<Nf4Addon>,
    readonly codes: Uint8Array,
    readonly scales: Float32Array,
    readonly blocksize: number,
    readonly quantMap: Float32Array,
    readonly outFeatures: number,
    readonly inFeatures: number,
  ) {
    this.byteLength = codes.byteLength + scales.byteLength;
  }
  unpackCodes(out: Uint8Array): void {
    this.addon.nf4Unpack(this.codes, this.outFeatures, this.inFeatures, out);
  }
}

/** Backend.nf4Pack and nf4GemmPacked on the addon, or nothing where it (or this CPU) has none. */
export function nf4PackedKernels(nf4: Nf4Addon | null): Pick<Backend, "nf4Pack" | "nf4GemmPacked"> {
  if (
    !nf4 ||
    typeof nf4.nf4PackedLayout !== "function" ||
    typeof nf4.nf4Pack !== "function" ||
    typeof nf4.nf4Unpack !== "function" ||
    typeof nf4.nf4GemmPacked !== "function"
  )
    return {};
  const layout = nf4.nf4PackedLayout();
  if (!layout) return {};
  const addon = nf4 as Required<Nf4Addon>;
  const panel = layout.panel;
  // The kernels read codes and scales in place, a vector at a time.
  const arrays = alignedArrays(nf4);
  return {
    nf4Pack(w: Nf4Weight): PackedNf4 | null {
      const O = w.outFeatures;
      const C = w.inFeatures;
      if (O <= 0 || !nf4Packable(C, w.blocksize)) return null;
      const padded = Math.ceil(O / panel) * panel;
      const codes = arrays.u8((padded * C) / 2);
      const scales = arrays.f32((padded * C) / w.blocksize);
      addon.nf4Pack(w.packed, w.scales, w.blocksize, O, C, codes, scales);
      return new NativePackedNf4(addon, codes, scales, w.blocksize, w.quantMap, O, C);
    },
    nf4GemmPacked(p) {
      const w = p.w;
      if (!(w instanceof NativePackedNf4))
        throw new BackendError(`native nf4GemmPacked: the weight was packed by the ${w.backend} backend`);
      addon.nf4GemmPacked(
        p.backward,
        p.rows,
        w.inFeatures,
        w.outFeatures,
        p.a,
        w.codes,
        w.scales,
        w.blocksize,
        w.quantMap,
        p.c,
        p.beta,
      );
    },
  };
}
