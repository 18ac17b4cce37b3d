// safetensors: parse (a lazy view over the bytes) and serialize, byte for byte as the
// reference Rust crate (huggingface/safetensors, safetensors/src/tensor.rs) does.
//
// Layout: 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON
//   {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
// then the data; offsets are relative to the data start, contiguous from 0, in data order,
// and the last one ends at the end of the file.
import type { Shape, Tensor } from "../core/tensor.js";
import { SafetensorsError } from "./errors.js";
import type { DecodeOptions, RawTensor, SafetensorsDType } from "./safetensors-dtype.js";
import {
  decodeTensor,
  encodeTensor,
  isRawTensor,
  isSafetensorsDType,
  SAFETENSORS_BITS,
  SAFETENSORS_DTYPES,
  safetensorsDTypeRank,
} from "./safetensors-dtype.js";
import type { JsonValue } from "./strict-json.js";
import { parseStrictJson } from "./strict-json.js";

/** The Rust crate's MAX_HEADER_SIZE: a longer header is refused before it is read. */
export const MAX_HEADER_SIZE = 100_000_000;

/** Where one tensor lives and what it is. Offsets are relative to the start of the data. */
export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: Shape;
  /** [begin, end) in bytes from the start of the data section. */
  readonly dataOffsets: readonly [number, number];
  /** Absolute position of the first byte in the file (8 + header length + begin). */
  readonly fileOffset: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  /** The `__metadata__` map, or null when the file has none. */
  readonly metadata: Readonly<Record<string, string>> | null;
  /** Every tensor, in the order of its data in the file. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  /** N, the header's length in bytes (without the 8 length bytes). */
  readonly headerLength: number;
  /** 8 + N: where the data section starts. */
  readonly dataStart: number;
  /** Bytes of tensor data (the file is dataStart + dataLength long). */
  readonly dataLength: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8enc = new TextEncoder();

/**
 * Reads N from the first 8 bytes and checks it against the file size. Returns N.
 * @param fileSize the whole file's length in bytes
 */
export function readHeaderLength(first8: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || first8.length < 8)
    throw new SafetensorsError(
      "too_short",
      `not a safetensors file: it is ${fileSize} bytes long, shorter than the 8-byte header length`,
    );
  const lo = first8[0] | (first8[1] << 8) | (first8[2] << 16) | (first8[3] << 24);
  const hi = first8[4] | (first8[5] << 8) | (first8[6] << 16) | (first8[7] << 24);
  const n = (hi >>> 0) * 2 ** 32 + (lo >>> 0);
  if (n > MAX_HEADER_SIZE)
    throw new SafetensorsError(
      "header_too_large",
      `safetensors header length is ${hi === 0 ? n : `${hi >>> 0}·2^32 + ${lo >>> 0}`} bytes, over the ${MAX_HEADER_SIZE}-byte limit (the file is corrupt or not safetensors)`,
    );
  if (8 + n > fileSize)
    throw new SafetensorsError(
      "header_beyond_file",
      `safetensors header length ${n} runs past the end of the file (${fileSize} bytes; at most ${fileSize - 8} available): the file is truncated or corrupt`,
    );
  return n;
}

function describe(v: JsonValue): string {
  if (v instanceof Map) return "an object";
  if (Array.isArray(v)) return `[${v.map(describe).join(", ")}]`.slice(0, 80);
  return typeof v === "string" ? JSON.stringify(v).slice(0, 80) : String(v);
}

function isNonNegInt(v: JsonValue): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parses and validates the header bytes (the N bytes after the length) of a file of
 * `fileSize` bytes. Checks everything the Rust crate checks (and duplicate names): after
 * it returns, every tensor's bytes lie inside the file and match its shape and dtype.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const headerLength = headerBytes.length;
  const dataStart = 8 + headerLength;
  if (dataStart > fileSize)
    throw new SafetensorsError(
      "header_beyond_file",
      `safetensors header length ${headerLength} runs past the end of the file (${fileSize} bytes)`,
    );
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch (e) {
    throw new SafetensorsError("header_not_utf8", "safetensors header is not valid UTF-8", { cause: e });
  }
  const root = parseStrictJson(text);
  if (!(root instanceof Map))
    throw new SafetensorsError(
      "header_not_object",
      `safetensors header must be a JSON object of tensor entries, got ${describe(root)}`,
    );

  let metadata: Record<string, string> | null = null;
  const infos: { name: string; dtype: SafetensorsDType; shape: number[]; b: number; e: number }[] = [];
  for (const [name, v] of root) {
    if (name === "__metadata__") {
      if (!(v instanceof Map))
        throw new SafetensorsError(
          "bad_metadata",
          `safetensors __metadata__ must be an object of strings, got ${describe(v)}`,
        );
      metadata = Object.create(null) as Record<string, string>;
      for (const [k, s] of v) {
        if (typeof s !== "string")
          throw new SafetensorsError(
            "bad_metadata",
            `safetensors __metadata__[${JSON.stringify(k)}] must be a string, got ${describe(s)}`,
          );
        metadata[k] = s;
      }
      continue;
    }
    const where = `tensor ${JSON.stringify(name)}`;
    if (!(v instanceof Map))
      throw new SafetensorsError(
        "header_not_object",
        `${where}: entry must be an object {dtype, shape, data_offsets}, got ${describe(v)}`,
      );
    for (const k of ["dtype", "shape", "data_offsets"])
      if (!v.has(k)) throw new SafetensorsError("header_not_object", `${where}: entry has no "${k}" field`);
    const dtype = v.get("dtype")!;
    if (typeof dtype !== "string" || !isSafetensorsDType(dtype))
      throw new SafetensorsError(
        "unknown_dtype",
        `${where}: unknown dtype ${describe(dtype)}; safetensors dtypes are ${SAFETENSORS_DTYPES.join(", ")}`,
      );
    const shape = v.get("shape")!;
    if (!Array.isArray(shape) || !shape.every(isNonNegInt))
      throw new SafetensorsError(
        "bad_shape",
        `${where}: shape must be a list of non-negative integers, got ${describe(shape)}`,
      );
    const off = v.get("data_offsets")!;
    if (!Array.isArray(off) || off.length !== 2 || !isNonNegInt(off[0]) || !isNonNegInt(off[1]))
      throw new SafetensorsError(
        "bad_offsets",
        `${where}: data_offsets must be two non-negative integers [begin, end], got ${describe(off)}`,
      );
    const [b, e] = off as [number, number];
    if (e < b)
      throw new SafetensorsError("bad_offsets", `${where}: data_offsets [${b}, ${e}] end before they begin`);
    infos.push({ name, dtype, shape: shape as number[], b, e });
  }

  const dataLength = fileSize - dataStart;
  // As the Rust crate: order by offsets, then demand contiguity from 0.
  infos.sort((x, y) => x.b - y.b || x.e - y.e);
  const tensors = new Map<string, SafetensorsTensorInfo>();
  let pos = 0;
  let prev = "";
  for (const t of infos) {
    const where = `tensor ${JSON.stringify(t.name)}`;
    if (t.e > dataLength)
      throw new SafetensorsError(
        "offsets_out_of_range",
        `${where}: data_offsets [${t.b}, ${t.e}] run past the end of the data (${dataLength} bytes after the header): the file is truncated or the header lies`,
      );
    if (t.b < pos)
      throw new SafetensorsError(
        "offsets_overlap",
        `${where}: data_offsets [${t.b}, ${t.e}] overlap ${prev ? `tensor ${JSON.stringify(prev)}` : "another tensor"}, which ends at ${pos}`,
      );
    if (t.b > pos)
      throw new SafetensorsError(
        "offsets_gap",
        `${where}: data_offsets [${t.b}, ${t.e}] leave bytes ${pos}..${t.b} belonging to no tensor; offsets must be contiguous from 0`,
      );
    let n = 1;
    for (const d of t.shape) n *= d;
    const bits = n * SAFETENSORS_BITS[t.dtype];
    if (!Number.isSafeInteger(bits))
      throw new SafetensorsError(
        "bad_shape",
        `${where}: shape [${t.shape.join(", ")}] has more elements than any file can hold`,
      );
    if (bits % 8 !== 0)
      throw new SafetensorsError(
        "size_mismatch",
        `${where}: ${n} elements of ${t.dtype} (${SAFETENSORS_BITS[t.dtype]} bits) do not fill whole bytes`,
      );
    if (bits / 8 !== t.e - t.b)
      throw new SafetensorsError(
        "size_mismatch",
        `${where}: ${t.dtype} shape [${t.shape.join(", ")}] needs ${bits / 8} bytes but data_offsets [${t.b}, ${t.e}] give ${t.e - t.b}`,
      );
    tensors.set(t.name, {
      name: t.name,
      dtype: t.dtype,
      shape: Object.freeze([...t.shape]),
      dataOffsets: Object.freeze([t.b, t.e]) as readonly [number, number],
      fileOffset: dataStart + t.b,
      byteLength: t.e - t.b,
    });
    pos = t.e;
    prev = t.name;
  }
  if (pos !== dataLength)
    throw new SafetensorsError(
      "data_not_covered",
      `safetensors data is ${dataLength} bytes but the tensors cover only ${pos}: ${dataLength - pos} bytes at the end belong to no tensor`,
    );
  return Object.freeze({
    metadata: metadata ? Object.freeze(metadata) : null,
    tensors,
    headerLength,
    dataStart,
    dataLength,
  });
}

/** Header lookups shared by the in-memory view and the lazy file reader (io/node). */
export class SafetensorsHeaderLookup {
  constructor(
    readonly header: SafetensorsHeader,
    /** Prefixed to "not found" messages (the file's path), or null. */
    private readonly label: string | null = null,
  ) {}

  get metadata(): Readonly<Record<string, string>> | null {
    return this.header.metadata;
  }

  /** Tensor names in the order of their data. */
  names(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    const i = this.header.tensors.get(name);
    if (!i) {
      const e = notFound(name, this.header.tensors);
      if (this.label !== null) e.message = `${this.label}: ${e.message}`;
      throw e;
    }
    return i;
  }
}

/** A parsed file in memory: the header, and one tensor materialised at a time. */
export class SafetensorsView extends SafetensorsHeaderLookup {
  constructor(
    header: SafetensorsHeader,
    private readonly bytes: Uint8Array,
  ) {
    super(header);
  }

  /** The tensor's bytes in the file (a view, not a copy). */
  raw(name: string): Uint8Array {
    const i = this.info(name);
    return this.bytes.subarray(i.fileOffset, i.fileOffset + i.byteLength);
  }

  /**
   * A new tensor with a copy of the data, converted if `opts.dtype` asks.
   * @example
   * const w = view.tensor("model.embed_tokens.weight", { dtype: "f32" }); // bf16 → f32
   */
  tensor(name: string, opts?: DecodeOptions): Tensor {
    const i = this.info(name);
    return decodeTensor(name, i.dtype, i.shape, this.raw(name), opts);
  }
}

export function notFound(name: string, tensors: ReadonlyMap<string, unknown>): SafetensorsError {
  const names = [...tensors.keys()];
  const close = names.filter((n) => n.endsWith(name) || name.endsWith(n)).slice(0, 3);
  return new SafetensorsError(
    "tensor_not_found",
    `no tensor ${JSON.stringify(name)} in the file (it has ${names.length}${close.length ? `; similar: ${close.map((c) => JSON.stringify(c)).join(", ")}` : ""})`,
  );
}

/**
 * Parses a whole safetensors file held in memory. Only the header is decoded; tensors are
 * copied out one at a time by `view.tensor(name)`. Throws SafetensorsError on any malformed file.
 *
 * @example
 * const view = parseSafetensors(bytes);
 * for (const name of view.names()) console.log(name, view.info(name).shape);
 * const w = view.tensor("lm_head.weight");
 */
export function parseSafetensors(bytes: Uint8Array): SafetensorsView {
  const n = readHeaderLength(bytes.subarray(0, 8), bytes.length);
  const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length);
  return new SafetensorsView(header, bytes);
}

/** What the writer accepts for each name: a lorakit tensor (written in its own dtype) or file-form bytes. */
export type SafetensorsEntry = Tensor | RawTensor;
export type SafetensorsEntries =
  | ReadonlyMap<string, SafetensorsEntry>
  | Readonly<Record<string, SafetensorsEntry>>;

/** A tensor as the header describes it, before its bytes exist. */
export interface SafetensorsTensorSpec {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: Shape;
}

/** A planned file without its data: the header bytes and where each tensor goes. */
export interface SafetensorsLayout {
  /** 8-byte little-endian length followed by the space-padded JSON header. */
  readonly head: Uint8Array;
  /** Tensors in the order their bytes follow the header, with their sizes. */
  readonly order: readonly (SafetensorsTensorSpec & { readonly byteLength: number })[];
  /** Total file size in bytes. */
  readonly fileSize: number;
}

/** A planned file: its header bytes (length prefix included) and the tensors in data order. */
export interface SafetensorsPlan {
  /** 8-byte little-endian length followed by the space-padded JSON header. */
  readonly head: Uint8Array;
  /** Tensors in the order their bytes follow the header. */
  readonly order: readonly { readonly name: string; readonly raw: RawTensor }[];
  /** Total file size in bytes. */
  readonly fileSize: number;
}

/** Compares by Unicode code point, which is the byte order of UTF-8 (Rust's `String::cmp`). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

function entriesOf(e: SafetensorsEntries): [string, SafetensorsEntry][] {
  return e instanceof Map ? [...e.entries()] : Object.entries(e);
}

/**
 * The number of bytes a tensor of this dtype and shape takes in a file, after checking that
 * the writer can describe it (name not reserved, known dtype, whole bytes). Throws
 * SafetensorsError "bad_input" naming the tensor otherwise.
 *
 * @example
 * safetensorsByteLength({ name: "w", dtype: "BF16", shape: [4096, 4096] }); // 33554432
 */
export function safetensorsByteLength(spec: SafetensorsTensorSpec): number {
  const { name, dtype, shape } = spec;
  if (name === "__metadata__")
    throw new SafetensorsError("bad_input", `"__metadata__" is reserved and cannot name a tensor`);
  if (typeof dtype !== "string" || !isSafetensorsDType(dtype))
    throw new SafetensorsError("bad_input", `tensor ${JSON.stringify(name)}: unknown dtype ${String(dtype)}`);
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new SafetensorsError(
        "bad_input",
        `tensor ${JSON.stringify(name)}: shape [${shape.join(", ")}] must hold non-negative integers`,
      );
    n *= d;
  }
  const bits = n * SAFETENSORS_BITS[dtype];
  if (!Number.isSafeInteger(bits) || bits % 8 !== 0)
    throw new SafetensorsError(
      "bad_input",
      `tensor ${JSON.stringify(name)}: ${n} elements of ${dtype} do not fill whole bytes (or are more than a file can hold)`,
    );
  return bits / 8;
}

/**
 * Lays out a file as the Rust crate's `prepare()` does, from dtypes and shapes alone (the
 * streaming writers plan a file before its data exists): tensors sorted by dtype (descending
 * enum order: U64, I64, F64, C64, F32, U32, I32, BF16, F16, U16, I16, ..., U8, ..., BOOL) then
 * by name; offsets contiguous from 0 in that order; header JSON without spaces, tensor fields
 * in the order dtype, shape, data_offsets, `__metadata__` first when given; padded with spaces
 * to a multiple of 8 bytes. (The crate keeps `__metadata__` in a HashMap, so its key order is
 * unspecified there; lorakit sorts it so equal inputs give equal bytes.)
 *
 * @example
 * const { head, order } = planSafetensorsLayout([{ name: "w", dtype: "BF16", shape: [2, 2] }], { format: "pt" });
 */
export function planSafetensorsLayout(
  specs: readonly SafetensorsTensorSpec[],
  metadata?: Readonly<Record<string, string>> | null,
): SafetensorsLayout {
  const seen = new Set<string>();
  const list = specs.map((s) => {
    const byteLength = safetensorsByteLength(s);
    if (seen.has(s.name))
      throw new SafetensorsError("bad_input", `tensor ${JSON.stringify(s.name)} is listed twice`);
    seen.add(s.name);
    return { name: s.name, dtype: s.dtype, shape: s.shape, byteLength };
  });
  list.sort(
    (a, b) =>
      safetensorsDTypeRank(b.dtype) - safetensorsDTypeRank(a.dtype) || compareCodePoints(a.name, b.name),
  );
  const parts: string[] = [];
  if (metadata) {
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== "string")
        throw new SafetensorsError(
          "bad_input",
          `metadata[${JSON.stringify(k)}] must be a string, got ${typeof v}`,
        );
    const keys = Object.keys(metadata).sort(compareCodePoints);
    parts.push(
      `"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(",")}}`,
    );
  }
  let offset = 0;
  for (const { name, dtype, shape, byteLength } of list) {
    const end = offset + byteLength;
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${shape.join(",")}],"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  const json = utf8enc.encode(`{${parts.join(",")}}`);
  const n = Math.ceil(json.length / 8) * 8;
  if (n > MAX_HEADER_SIZE)
    throw new SafetensorsError(
      "bad_input",
      `safetensors header would be ${n} bytes, over the ${MAX_HEADER_SIZE}-byte limit readers enforce; split the tensors over shards`,
    );
  const head = new Uint8Array(8 + n).fill(0x20, 8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(n), true);
  head.set(json, 8);
  return { head, order: list, fileSize: head.length + offset };
}

/**
 * A writer entry in file form (a lorakit tensor encoded in its own dtype), after checking
 * that its bytes have exactly the size its dtype and shape need. Throws "bad_input" naming it.
 */
export function toCheckedRaw(name: string, t: SafetensorsEntry): RawTensor {
  const raw = isRawTensor(t) ? t : encodeTensor(t);
  const need = safetensorsByteLength({ name, dtype: raw.dtype, shape: raw.shape });
  if (need !== raw.data.length)
    throw new SafetensorsError(
      "bad_input",
      `tensor ${JSON.stringify(name)}: ${raw.dtype} shape [${raw.shape.join(", ")}] needs ${need} bytes, got ${raw.data.length}`,
    );
  return raw;
}

/**
 * Lays out a file of tensors already in memory: `planSafetensorsLayout` of their dtypes and
 * shapes, after checking that each one's bytes have exactly the size its shape needs.
 */
export function planSafetensors(
  entries: SafetensorsEntries,
  metadata?: Readonly<Record<string, string>> | null,
): SafetensorsPlan {
  const raws = new Map<string, RawTensor>();
  for (const [name, t] of entriesOf(entries)) raws.set(name, toCheckedRaw(name, t));
  const layout = planSafetensorsLayout(
    [...raws].map(([name, raw]) => ({ name, dtype: raw.dtype, shape: raw.shape })),
    metadata,
  );
  return {
    head: layout.head,
    order: layout.order.map(({ name }) => ({ name, raw: raws.get(name)! })),
    fileSize: layout.fileSize,
  };
}

/**
 * Serializes tensors to the bytes of one safetensors file (as `safetensors.torch.save`).
 * Lorakit tensors are written in their own dtype (f32→F32, bf16→BF16, i32→I32, u8→U8, ...);
 * pass `encodeTensor(t, "BF16")` or a RawTensor to write another.
 *
 * @example
 * const bytes = serializeSafetensors({ "lora_A.weight": a, "lora_B.weight": b }, { format: "pt" });
 */
export function serializeSafetensors(
  entries: SafetensorsEntries,
  metadata?: Readonly<Record<string, string>> | null,
): Uint8Array {
  const plan = planSafetensors(entries, metadata);
  const out = new Uint8Array(plan.fileSize);
  out.set(plan.head, 0);
  let pos = plan.head.length;
  for (const { raw } of plan.order) {
    out.set(raw.data, pos);
    pos += raw.data.length;
  }
  return out;
}
