// The safetensors dtypes and their conversion to and from lorakit's storage dtypes.
// Data in a file is little-endian; every conversion copies into a fresh, aligned buffer
// (so a tensor never keeps a whole file's buffer alive) and swaps bytes on a big-endian host.
import type { AnyArray, DType } from "../core/dtype.js";
import { BYTES_PER_ELEMENT, convertArray } from "../core/dtype.js";
import type { Shape } from "../core/tensor.js";
import { fromArray, numel, Tensor } from "../core/tensor.js";
import { SafetensorsError } from "./errors.js";

/**
 * Every dtype the format defines, in the order of the Rust crate's `Dtype` enum
 * (safetensors/src/tensor.rs: "They MUST be in increasing alignment order"). The writer
 * sorts tensors by this order, descending, then by name, exactly as `prepare()` does.
 */
export const SAFETENSORS_DTYPES = [
  "BOOL",
  "F4",
  "F6_E2M3",
  "F6_E3M2",
  "U8",
  "I8",
  "F8_E5M2",
  "F8_E4M3",
  "F8_E8M0",
  "F8_E4M3FNUZ",
  "F8_E5M2FNUZ",
  "I16",
  "U16",
  "F16",
  "BF16",
  "I32",
  "U32",
  "F32",
  "C64",
  "F64",
  "I64",
  "U64",
] as const;
export type SafetensorsDType = (typeof SAFETENSORS_DTYPES)[number];

/** Bits per element (`Dtype::bitsize` in the Rust crate). */
export const SAFETENSORS_BITS: Readonly<Record<SafetensorsDType, number>> = Object.freeze({
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
});

const RANK: Readonly<Record<string, number>> = Object.freeze(
  Object.fromEntries(SAFETENSORS_DTYPES.map((d, i) => [d, i])),
);

export function isSafetensorsDType(s: string): s is SafetensorsDType {
  return Object.hasOwn(RANK, s);
}

/** The enum position of a dtype (the Rust crate's derived `Ord`). */
export function safetensorsDTypeRank(d: SafetensorsDType): number {
  return RANK[d];
}

/** The dtypes lorakit turns into tensors (the others parse, but refuse to materialise). */
export const READABLE_DTYPES: readonly SafetensorsDType[] = [
  "BOOL",
  "U8",
  "I8",
  "I16",
  "U16",
  "F16",
  "BF16",
  "I32",
  "U32",
  "F32",
  "F64",
  "I64",
  "U64",
];

/** The lorakit dtype a file dtype becomes when no conversion is asked for. */
export function naturalDType(d: SafetensorsDType): DType {
  switch (d) {
    case "F32":
      return "f32";
    case "F64":
      return "f64";
    case "F16":
      return "f16";
    case "BF16":
      return "bf16";
    case "BOOL":
    case "U8":
      return "u8";
    case "I8":
    case "I16":
    case "U16":
    case "I32":
    case "U32":
    case "I64":
    case "U64":
      return "i32";
    default:
      throw unsupported(d);
  }
}

/** The file dtype a lorakit tensor is written as by default. */
export function safetensorsDTypeOf(d: DType): SafetensorsDType {
  switch (d) {
    case "f32":
      return "F32";
    case "f64":
      return "F64";
    case "f16":
      return "F16";
    case "bf16":
      return "BF16";
    case "i32":
      return "I32";
    case "u8":
      return "U8";
    default:
      throw new SafetensorsError("bad_input", `unknown dtype ${d satisfies never}`);
  }
}

/** Throws unless lorakit can turn `dtype` into a tensor. */
export function checkReadable(name: string, dtype: SafetensorsDType): void {
  if (!READABLE_DTYPES.includes(dtype)) throw unsupported(dtype, name);
}

function unsupported(d: SafetensorsDType, name?: string): SafetensorsError {
  return new SafetensorsError(
    "unsupported_dtype",
    `${name ? `tensor ${JSON.stringify(name)}: ` : ""}dtype ${d} is valid safetensors but lorakit cannot turn it into a tensor; readable dtypes are ${READABLE_DTYPES.join(", ")}`,
  );
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverses each `size`-byte group in place (little-endian file ↔ big-endian host). */
function swapBytes(b: Uint8Array, size: number): void {
  if (size === 1 || LITTLE_ENDIAN_HOST) return;
  for (let i = 0; i + size <= b.length; i += size) b.subarray(i, i + size).reverse();
}

function isFloatFile(d: SafetensorsDType): boolean {
  return d === "F32" || d === "F64";
}
function isHalfFile(d: SafetensorsDType): boolean {
  return d === "F16" || d === "BF16";
}

export interface DecodeOptions {
  /**
   * The lorakit dtype of the result. Default: the file's own (F32→f32, F64→f64, F16→f16,
   * BF16→bf16, U8/BOOL→u8, other integers→i32). Floats never convert to integers.
   */
  dtype?: DType;
}

/**
 * Turns one tensor's little-endian bytes into a lorakit tensor (copied; the input is not kept).
 * `bytes.length` must be numel(shape) × the dtype size.
 */
export function decodeTensor(
  name: string,
  dtype: SafetensorsDType,
  shape: Shape,
  bytes: Uint8Array,
  opts: DecodeOptions = {},
): Tensor {
  checkReadable(name, dtype);
  const n = numel(shape);
  const size = SAFETENSORS_BITS[dtype] / 8;
  if (bytes.length !== n * size)
    throw new SafetensorsError(
      "size_mismatch",
      `tensor ${JSON.stringify(name)}: ${dtype} shape [${shape.join(", ")}] needs ${n * size} bytes, got ${bytes.length}`,
    );
  const target = opts.dtype ?? naturalDType(dtype);
  const buf = new ArrayBuffer(bytes.length);
  const u8 = new Uint8Array(buf);
  u8.set(bytes);
  swapBytes(u8, size);
  return fromArray(convertFromFile(name, dtype, buf, n, target), shape, target);
}

/**
 * Converts an aligned, host-endian buffer holding n elements of file dtype `dtype` into an
 * array of lorakit dtype `target`. Takes ownership of `buf` (may return a view of it).
 */
export function convertFromFile(
  name: string,
  dtype: SafetensorsDType,
  buf: ArrayBuffer,
  n: number,
  target: DType,
): AnyArray {
  const bad = (why: string): never => {
    throw new SafetensorsError(
      "unsupported_dtype",
      `tensor ${JSON.stringify(name)}: cannot convert ${dtype} to ${target}: ${why}`,
    );
  };
  if (isFloatFile(dtype) || isHalfFile(dtype)) {
    if (target === "i32" || target === "u8") bad("floats are never truncated to integers; ask for f32");
    const src: AnyArray =
      dtype === "F32"
        ? new Float32Array(buf)
        : dtype === "F64"
          ? new Float64Array(buf)
          : new Uint16Array(buf);
    const from: DType = dtype === "F32" ? "f32" : dtype === "F64" ? "f64" : dtype === "F16" ? "f16" : "bf16";
    return from === target ? src : convertArray(src, from, target);
  }
  // integers
  const rangeErr = (i: number, v: number | bigint): never => {
    throw new SafetensorsError(
      "value_out_of_range",
      `tensor ${JSON.stringify(name)}: element ${i} is ${v}, which does not fit ${target}${target === "i32" ? " (range -2147483648..2147483647)" : target === "u8" ? " (range 0..255)" : " exactly (|v| > 2^53)"}`,
    );
  };
  if (dtype === "I64" || dtype === "U64") {
    // Read each 64-bit value as (lo, hi) 32-bit halves: no BigInt per element.
    const w = new Int32Array(buf);
    const out = allocFor(target, n);
    const signed = dtype === "I64";
    for (let i = 0; i < n; i++) {
      const lo = w[2 * i];
      const hi = w[2 * i + 1];
      let v: number;
      if (signed ? hi === lo >> 31 : hi === 0 && lo >= 0) v = lo;
      else if (target === "i32" || target === "u8") return rangeErr(i, read64(buf, i, signed));
      else {
        const h = signed ? hi : hi >>> 0;
        if (h >= 2 ** 21 || h < -(2 ** 21)) return rangeErr(i, read64(buf, i, signed));
        v = h * 2 ** 32 + (lo >>> 0);
      }
      out[i] = v;
    }
    return finishInts(out, target);
  }
  const src =
    dtype === "I8"
      ? new Int8Array(buf)
      : dtype === "U8" || dtype === "BOOL"
        ? new Uint8Array(buf)
        : dtype === "I16"
          ? new Int16Array(buf)
          : dtype === "U16"
            ? new Uint16Array(buf)
            : dtype === "I32"
              ? new Int32Array(buf)
              : dtype === "U32"
                ? new Uint32Array(buf)
                : bad("unknown integer dtype");
  if (dtype === "BOOL") for (let i = 0; i < n; i++) if (src[i] > 1) src[i] = 1;
  if (target === "i32" && src instanceof Int32Array) return src;
  if (target === "u8" && src instanceof Uint8Array) return src;
  const out = allocFor(target, n);
  if (target === "i32") {
    for (let i = 0; i < n; i++) {
      const v = src[i];
      if (v > 0x7fffffff) rangeErr(i, v);
      out[i] = v;
    }
  } else if (target === "u8") {
    for (let i = 0; i < n; i++) {
      const v = src[i];
      if (v < 0 || v > 255) rangeErr(i, v);
      out[i] = v;
    }
  } else for (let i = 0; i < n; i++) out[i] = src[i];
  return finishInts(out, target);
}

function read64(buf: ArrayBuffer, i: number, signed: boolean): bigint {
  const dv = new DataView(buf);
  return signed ? dv.getBigInt64(8 * i, LITTLE_ENDIAN_HOST) : dv.getBigUint64(8 * i, LITTLE_ENDIAN_HOST);
}

/** i32/u8/f32/f64 are filled directly; f16/bf16 go through f64 and are rounded once. */
function allocFor(target: DType, n: number): Float64Array | Float32Array | Int32Array | Uint8Array {
  switch (target) {
    case "f32":
      return new Float32Array(n);
    case "i32":
      return new Int32Array(n);
    case "u8":
      return new Uint8Array(n);
    default:
      return new Float64Array(n);
  }
}
function finishInts(out: Float64Array | Float32Array | Int32Array | Uint8Array, target: DType): AnyArray {
  if (target === "f16" || target === "bf16") return convertArray(out as Float64Array, "f64", target);
  return out;
}

/** A tensor already in file form: dtype, shape and little-endian bytes. */
export interface RawTensor {
  readonly dtype: SafetensorsDType;
  readonly shape: Shape;
  readonly data: Uint8Array;
}

export function isRawTensor(x: unknown): x is RawTensor {
  // A lorakit u8 Tensor also has a string dtype and Uint8Array data: tell them apart by class.
  return (
    typeof x === "object" &&
    x !== null &&
    !(x instanceof Tensor) &&
    typeof (x as RawTensor).dtype === "string" &&
    (x as RawTensor).data instanceof Uint8Array &&
    Array.isArray((x as RawTensor).shape)
  );
}

/** The little-endian bytes of an array (a view of it on a little-endian host, else a swapped copy). */
export function littleEndianBytes(a: AnyArray, elementSize: number): Uint8Array {
  const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (LITTLE_ENDIAN_HOST || elementSize === 1) return b;
  const c = b.slice();
  swapBytes(c, elementSize);
  return c;
}

/**
 * Turns a lorakit tensor into file form, optionally as another file dtype
 * (f32 → BF16 or F16 to halve a checkpoint, i32 → I64 for token ids as PyTorch keeps them).
 * Without a conversion the bytes are a view of the tensor's storage on little-endian hosts.
 *
 * @example
 * const raw = encodeTensor(w, "BF16"); // round to nearest even, as torch's .bfloat16()
 */
export function encodeTensor(t: Tensor, as?: SafetensorsDType): RawTensor {
  const src = t.data as AnyArray;
  const natural = safetensorsDTypeOf(t.dtype);
  const to = as ?? natural;
  const shape = t.shape;
  if (to === natural) return { dtype: to, shape, data: littleEndianBytes(src, BYTES_PER_ELEMENT[t.dtype]) };
  const isFloatSrc = t.dtype === "f32" || t.dtype === "f64" || t.dtype === "f16" || t.dtype === "bf16";
  const bad = (why: string): never => {
    throw new SafetensorsError(
      "bad_input",
      `encodeTensor${t.name ? ` (${t.name})` : ""}: cannot write a ${t.dtype} tensor as ${to}: ${why}`,
    );
  };
  switch (to) {
    case "F32":
    case "F64":
    case "F16":
    case "BF16": {
      const dt: DType = to === "F32" ? "f32" : to === "F64" ? "f64" : to === "F16" ? "f16" : "bf16";
      return {
        dtype: to,
        shape,
        data: littleEndianBytes(convertArray(src, t.dtype, dt), BYTES_PER_ELEMENT[dt]),
      };
    }
    case "I64":
    case "U64":
    case "I32":
    case "U32":
    case "I16":
    case "U16":
    case "I8":
    case "U8":
    case "BOOL": {
      if (isFloatSrc) bad("floats are never truncated to integers");
      const bits = SAFETENSORS_BITS[to];
      const signed = to[0] === "I";
      const lo = to === "BOOL" ? 0 : signed ? -(2 ** (bits - 1)) : 0;
      const hi = to === "BOOL" ? 1 : signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
      const n = src.length;
      const out = new Uint8Array(n * (bits / 8));
      const dv = new DataView(out.buffer);
      for (let i = 0; i < n; i++) {
        const v = src[i];
        if (v < lo || v > hi) bad(`element ${i} is ${v}, outside ${lo}..${hi}`);
        if (bits === 8) out[i] = v & 0xff;
        else if (bits === 16) dv.setUint16(2 * i, v & 0xffff, true);
        else if (bits === 32) dv.setUint32(4 * i, v >>> 0, true);
        else {
          dv.setUint32(8 * i, v >>> 0, true);
          dv.setUint32(8 * i + 4, v < 0 ? 0xffffffff : 0, true);
        }
      }
      return { dtype: to, shape, data: out };
    }
    default:
      return bad(`lorakit does not write ${to}; write it as a RawTensor with its bytes`);
  }
}
