// Storage dtypes and conversion. Compute happens in f32 (f64 for gradient checks);
// f16 and bf16 are storage formats for frozen weights, i32 for token ids, u8 for masks
// and packed quantised codes.
import { DTypeError } from "./errors.js";

export const DTYPES = ["f32", "f64", "f16", "bf16", "i32", "u8"] as const;
export type DType = (typeof DTYPES)[number];
export type FloatDType = "f32" | "f64";

export interface DTypeArrays {
  f32: Float32Array;
  f64: Float64Array;
  f16: Uint16Array;
  bf16: Uint16Array;
  i32: Int32Array;
  u8: Uint8Array;
}
export type AnyArray = DTypeArrays[DType];

export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, f64: 8, f16: 2, bf16: 2, i32: 4, u8: 1 };

export function isFloatDType(d: DType): d is FloatDType {
  return d === "f32" || d === "f64";
}

export function allocArray<D extends DType>(dtype: D, n: number): DTypeArrays[D] {
  switch (dtype) {
    case "f32":
      return new Float32Array(n) as DTypeArrays[D];
    case "f64":
      return new Float64Array(n) as DTypeArrays[D];
    case "f16":
    case "bf16":
      return new Uint16Array(n) as DTypeArrays[D];
    case "i32":
      return new Int32Array(n) as DTypeArrays[D];
    case "u8":
      return new Uint8Array(n) as DTypeArrays[D];
    default:
      throw new DTypeError(`unknown dtype ${dtype satisfies never}`);
  }
}

export function dtypeOfArray(a: AnyArray, hint?: "f16" | "bf16"): DType {
  if (a instanceof Float32Array) return "f32";
  if (a instanceof Float64Array) return "f64";
  if (a instanceof Int32Array) return "i32";
  if (a instanceof Uint8Array) return "u8";
  if (a instanceof Uint16Array) {
    if (!hint) throw new DTypeError("a Uint16Array holds f16 or bf16: say which");
    return hint;
  }
  throw new DTypeError(`unsupported array type ${(a as object).constructor.name}`);
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** IEEE half → float. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** float → IEEE half, round to nearest even (as PyTorch's .half()). */
export function f32ToF16(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

export function bf16ToF32(h: number): number {
  u32buf[0] = h << 16;
  return f32buf[0];
}

/** float → bfloat16, round to nearest even (as PyTorch's .bfloat16()); NaN stays NaN. */
export function f32ToBf16(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * Writes src rounded to bfloat16 into dst from index `at`: f32ToBf16 element by element
 * (round to nearest even, NaN stays NaN), read through the f32 bits in bulk.
 */
export function f32ToBf16Into(src: Float32Array, dst: Uint16Array, at = 0): void {
  const x = new Uint32Array(src.buffer, src.byteOffset, src.length);
  if (at < 0 || at + x.length > dst.length)
    throw new DTypeError(`f32ToBf16Into: ${x.length} values from ${at} overrun ${dst.length}`);
  for (let i = 0; i < x.length; i++) {
    const u = x[i];
    dst[at + i] =
      (u & 0x7f800000) === 0x7f800000 && u & 0x7fffff
        ? (u >>> 16) | 0x40
        : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
}

/** Convert a whole array between dtypes (float ↔ half formats, ints by value). */
export function convertArray(src: AnyArray, from: DType, to: DType): AnyArray {
  const n = src.length;
  if (from === to) return src.slice();
  const out = allocArray(to, n);
  if (from === "f16" || from === "bf16") {
    const dec = from === "f16" ? f16ToF32 : bf16ToF32;
    if (to === "bf16" || to === "f16") {
      const enc = to === "f16" ? f32ToF16 : f32ToBf16;
      for (let i = 0; i < n; i++) out[i] = enc(dec(src[i]));
    } else for (let i = 0; i < n; i++) out[i] = dec(src[i]);
    return out;
  }
  if (to === "f16" || to === "bf16") {
    const enc = to === "f16" ? f32ToF16 : f32ToBf16;
    for (let i = 0; i < n; i++) out[i] = enc(src[i]);
    return out;
  }
  if (to === "i32" || to === "u8") {
    for (let i = 0; i < n; i++) out[i] = Math.trunc(src[i]);
    return out;
  }
  (out as Float32Array | Float64Array).set(src);
  return out;
}
