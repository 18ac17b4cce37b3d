// The GGUF v3 container (llama.cpp's gguf-py/gguf/gguf_writer.py and ggml/src/gguf.cpp), as
// pure bytes: a header (magic, version, tensor count, metadata count), the metadata
// key/values, the tensor infos (name, dims innermost first, ggml type, offset into the data
// section), zero padding to the alignment, then each tensor's data padded to the alignment.
// Everything is little-endian. Browser-safe: the node writer streams the data after
// `encodeGgufHeader` has laid out the header.
import { ExportError } from "../errors.js";

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
/** GGUF_DEFAULT_ALIGNMENT: every tensor's data starts at a multiple of this. */
export const GGUF_ALIGNMENT = 32;
/** GGML_QNT_VERSION, written as general.quantization_version (as the converter does). */
export const GGML_QUANT_VERSION = 2;
/** GGML_MAX_DIMS and GGML_MAX_NAME (the name buffer holds 63 bytes and a NUL). */
export const GGML_MAX_DIMS = 4;
export const GGML_MAX_NAME = 64;

/** gguf_type: the metadata value types. */
export const GGUF_VALUE_TYPE = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;
export type GgufScalarType = Exclude<keyof typeof GGUF_VALUE_TYPE, "array">;

/** ggml_type of the tensor data lorakit writes (GGMLQuantizationType in gguf-py). */
export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type GgmlType = keyof typeof GGML_TYPE;

/** Q8_0: blocks of 32 weights, each an f16 scale then 32 int8 (quants.py / ggml-common.h). */
export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK;

/** One metadata entry. Arrays hold scalars of one type (the converter writes no nested arrays). */
export type GgufKv =
  | { key: string; type: GgufScalarType; value: number | bigint | boolean | string }
  | { key: string; type: "array"; itemType: GgufScalarType; value: readonly (number | boolean | string)[] };

export const kv = {
  u32: (key: string, value: number): GgufKv => ({ key, type: "u32", value }),
  i32: (key: string, value: number): GgufKv => ({ key, type: "i32", value }),
  f32: (key: string, value: number): GgufKv => ({ key, type: "f32", value }),
  bool: (key: string, value: boolean): GgufKv => ({ key, type: "bool", value }),
  str: (key: string, value: string): GgufKv => ({ key, type: "string", value }),
  strs: (key: string, value: readonly string[]): GgufKv => ({
    key,
    type: "array",
    itemType: "string",
    value,
  }),
  i32s: (key: string, value: readonly number[]): GgufKv => ({ key, type: "array", itemType: "i32", value }),
};

/** A tensor as GGUF lists it: `shape` in PyTorch order (outermost first), as the converter's numpy shape. */
export interface GgufTensorInfo {
  readonly name: string;
  readonly shape: readonly number[];
  readonly type: GgmlType;
}

/** Bytes of a tensor's data (without the padding that follows it). */
export function ggmlTensorBytes(t: GgufTensorInfo): number {
  const n = t.shape.reduce((a, b) => a * b, 1);
  switch (t.type) {
    case "F32":
      return n * 4;
    case "F16":
    case "BF16":
      return n * 2;
    case "Q8_0": {
      const row = t.shape[t.shape.length - 1] ?? 1;
      if (row % Q8_0_BLOCK !== 0)
        throw new ExportError(
          `GGUF: ${t.name} [${t.shape.join(", ")}] cannot be Q8_0: its rows hold ${row} values, not a multiple of ${Q8_0_BLOCK}`,
        );
      return (n / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
    }
    default:
      throw new ExportError(`GGUF: unknown tensor type ${String(t.type satisfies never)}`);
  }
}

export const padTo = (x: number, align: number): number => Math.ceil(x / align) * align;

/** The planned file: the header bytes (padded), and where each tensor's data goes. */
export interface GgufLayout {
  /** Header, metadata, tensor infos and the padding up to the data section. */
  readonly head: Uint8Array;
  /** Per tensor, in the order given: its data's offset in the file and its byte length. */
  readonly tensors: readonly { info: GgufTensorInfo; offset: number; bytes: number }[];
  /** Total file size. */
  readonly fileBytes: number;
}

const textEncoder = new TextEncoder();

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.room(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  i8(v: number): void {
    this.room(1);
    this.view.setInt8(this.length, v);
    this.length += 1;
  }
  u16(v: number): void {
    this.room(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
  }
  i16(v: number): void {
    this.room(2);
    this.view.setInt16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number): void {
    this.room(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.room(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.room(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number): void {
    this.room(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  u64(v: number | bigint): void {
    this.room(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: number | bigint): void {
    this.room(8);
    this.view.setBigInt64(this.length, BigInt(v), true);
    this.length += 8;
  }
  /** gguf_str: u64 byte length, then UTF-8 bytes (no terminator). */
  str(s: string): void {
    const b = textEncoder.encode(s);
    this.u64(b.length);
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  zeros(n: number): void {
    this.room(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function checkScalar(key: string, type: GgufScalarType, v: unknown): void {
  const bad = (want: string) =>
    new ExportError(`GGUF metadata ${key}: ${JSON.stringify(v)} is not ${want} (type ${type})`);
  switch (type) {
    case "string":
      if (typeof v !== "string") throw bad("a string");
      return;
    case "bool":
      if (typeof v !== "boolean") throw bad("a boolean");
      return;
    case "f32":
    case "f64":
      if (typeof v !== "number" || Number.isNaN(v)) throw bad("a number");
      return;
    case "u64":
    case "i64":
      if (typeof v !== "bigint" && !(typeof v === "number" && Number.isInteger(v))) throw bad("an integer");
      return;
    default: {
      const [lo, hi] = {
        u8: [0, 255],
        i8: [-128, 127],
        u16: [0, 65535],
        i16: [-32768, 32767],
        u32: [0, 2 ** 32 - 1],
        i32: [-(2 ** 31), 2 ** 31 - 1],
      }[type];
      if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi)
        throw bad(`an integer in [${lo}, ${hi}]`);
    }
  }
}

function writeScalar(w: ByteWriter, type: GgufScalarType, v: number | bigint | boolean | string): void {
  if (type === "bool") w.u8(v ? 1 : 0);
  else if (type === "string") w.str(v as string);
  else if (type === "u64" || type === "i64") w[type](v as number | bigint);
  else w[type](v as number);
}

/**
 * Lays out a GGUF v3 file: the header bytes (up to and including the padding before the
 * data section) and each tensor's offset, exactly as gguf_writer.py does (metadata in the
 * order given, tensor infos in the order given, each tensor's data at the next multiple of
 * the alignment). Throws ExportError on a key twice, a tensor name twice or longer than
 * ggml allows, a shape ggml cannot hold, or a value that does not fit its type.
 *
 * @example
 * const layout = encodeGgufHeader([kv.str("general.architecture", "llama")], [
 *   { name: "token_embd.weight", shape: [32000, 4096], type: "F16" },
 * ]);
 */
export function encodeGgufHeader(
  metadata: readonly GgufKv[],
  tensors: readonly GgufTensorInfo[],
): GgufLayout {
  const keys = new Set<string>();
  for (const e of metadata) {
    if (keys.has(e.key)) throw new ExportError(`GGUF metadata key ${e.key} is given twice`);
    keys.add(e.key);
  }
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new ExportError(`GGUF tensor ${t.name} is given twice`);
    names.add(t.name);
    if (textEncoder.encode(t.name).length >= GGML_MAX_NAME)
      throw new ExportError(`GGUF tensor name ${t.name} is longer than ggml's ${GGML_MAX_NAME - 1} bytes`);
    if (t.shape.length < 1 || t.shape.length > GGML_MAX_DIMS)
      throw new ExportError(
        `GGUF tensor ${t.name} has ${t.shape.length} dimensions; ggml holds 1 to ${GGML_MAX_DIMS}`,
      );
    if (t.shape.some((d) => !Number.isSafeInteger(d) || d < 1))
      throw new ExportError(
        `GGUF tensor ${t.name} has shape [${t.shape.join(", ")}]; dimensions must be ≥ 1`,
      );
  }
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const e of metadata) {
    w.str(e.key);
    w.u32(GGUF_VALUE_TYPE[e.type]);
    if (e.type === "array") {
      if (e.value.length === 0) throw new ExportError(`GGUF metadata ${e.key}: an array may not be empty`);
      w.u32(GGUF_VALUE_TYPE[e.itemType]);
      w.u64(e.value.length);
      for (const v of e.value) {
        checkScalar(e.key, e.itemType, v);
        writeScalar(w, e.itemType, v);
      }
    } else {
      checkScalar(e.key, e.type, e.value);
      writeScalar(w, e.type, e.value);
    }
  }
  const placed: { info: GgufTensorInfo; offset: number; bytes: number }[] = [];
  let rel = 0;
  for (const t of tensors) {
    const bytes = ggmlTensorBytes(t);
    w.str(t.name);
    w.u32(t.shape.length);
    for (let j = t.shape.length - 1; j >= 0; j--) w.u64(t.shape[j]); // ne[0] is the innermost
    w.u32(GGML_TYPE[t.type]);
    w.u64(rel);
    placed.push({ info: t, offset: rel, bytes });
    rel += padTo(bytes, GGUF_ALIGNMENT);
  }
  w.zeros(padTo(w.length, GGUF_ALIGNMENT) - w.length);
  const start = w.length;
  return {
    head: w.bytes(),
    tensors: placed.map((p) => ({ ...p, offset: start + p.offset })),
    fileBytes: start + rel,
  };
}
