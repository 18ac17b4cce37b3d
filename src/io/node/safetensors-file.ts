// safetensors files on disk (node only). Opening reads the 8 length bytes and the header;
// each tensor is then read with positioned reads at its offset, straight into the array
// that becomes the tensor, so a checkpoint larger than memory loads one tensor at a time.
// Writes go to a temporary file in the same folder, are fsync'ed, then renamed over the
// target, so a crash never leaves a half-written checkpoint under the real name.
import { randomBytes } from "node:crypto";
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Tensor } from "../../core/tensor.js";
import { fromArray } from "../../core/tensor.js";
import { SafetensorsError } from "../errors.js";
import type { SafetensorsEntries, SafetensorsHeader } from "../safetensors.js";
import {
  parseSafetensorsHeader,
  planSafetensors,
  readHeaderLength,
  SafetensorsHeaderLookup,
} from "../safetensors.js";
import type { DecodeOptions } from "../safetensors-dtype.js";
import { checkReadable, convertFromFile, naturalDType, SAFETENSORS_BITS } from "../safetensors-dtype.js";

/** One positioned read is at most this many bytes (fs reads are limited to 2 GiB). */
const READ_CHUNK = 1 << 30;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function ioError(path: string, what: string, cause?: unknown): SafetensorsError {
  return new SafetensorsError("io", `${path}: ${what}`, cause === undefined ? undefined : { cause });
}

/** Fills `dst` from the file at `position`, looping over short reads. */
function readFully(fd: number, path: string, dst: Uint8Array, position: number): void {
  let done = 0;
  while (done < dst.length) {
    const len = Math.min(READ_CHUNK, dst.length - done);
    let got: number;
    try {
      got = readSync(fd, dst, done, len, position + done);
    } catch (e) {
      throw ioError(path, `read of ${len} bytes at ${position + done} failed`, e);
    }
    if (got === 0)
      throw ioError(
        path,
        `file ended at ${position + done} while reading ${dst.length} bytes at ${position} (was it truncated after it was opened?)`,
      );
    done += got;
  }
}

/**
 * An open safetensors file. The header is parsed and validated at open; tensors are read
 * on demand. Close it (or use `using`) when done.
 *
 * @example
 * using f = openSafetensors("model.safetensors");
 * const w = f.tensor("model.layers.0.self_attn.q_proj.weight", { dtype: "f32" });
 */
export class SafetensorsFile extends SafetensorsHeaderLookup {
  private fd: number | null;

  private constructor(
    readonly path: string,
    fd: number,
    header: SafetensorsHeader,
    readonly fileSize: number,
  ) {
    super(header, path);
    this.fd = fd;
  }

  /** Opens `path` and reads its header (nothing else). */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw ioError(path, "cannot open", e);
    }
    try {
      const size = fstatSync(fd).size;
      const first = new Uint8Array(Math.min(8, size));
      readFully(fd, path, first, 0);
      let n: number;
      let header: SafetensorsHeader;
      try {
        n = readHeaderLength(first, size);
        const hb = new Uint8Array(n);
        readFully(fd, path, hb, 8);
        header = parseSafetensorsHeader(hb, size);
      } catch (e) {
        if (e instanceof SafetensorsError) e.message = `${path}: ${e.message}`;
        throw e;
      }
      return new SafetensorsFile(path, fd, header, size);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  private handle(): number {
    if (this.fd === null) throw ioError(this.path, "the file was closed");
    return this.fd;
  }

  /** The tensor's bytes as stored (little-endian), read now. */
  raw(name: string): Uint8Array {
    const i = this.info(name);
    const out = new Uint8Array(i.byteLength);
    readFully(this.handle(), this.path, out, i.fileOffset);
    return out;
  }

  /**
   * Reads one tensor, converted if `opts.dtype` asks. Memory used: the tensor itself (plus
   * one raw copy when a conversion changes the element size).
   */
  tensor(name: string, opts: DecodeOptions = {}): Tensor {
    const i = this.info(name);
    checkReadable(name, i.dtype);
    const target = opts.dtype ?? naturalDType(i.dtype);
    const size = SAFETENSORS_BITS[i.dtype] / 8;
    let n = 1;
    for (const d of i.shape) n *= d;
    const buf = new ArrayBuffer(i.byteLength);
    const u8 = new Uint8Array(buf);
    readFully(this.handle(), this.path, u8, i.fileOffset);
    if (!LITTLE_ENDIAN_HOST && size > 1)
      for (let k = 0; k + size <= u8.length; k += size) u8.subarray(k, k + size).reverse();
    return fromArray(convertFromFile(name, i.dtype, buf, n, target), i.shape, target);
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Opens a safetensors file and reads its header. See SafetensorsFile. */
export function openSafetensors(path: string): SafetensorsFile {
  return SafetensorsFile.open(path);
}

/** Writes all of `src` at the current position, looping over short writes. */
export function writeFully(fd: number, src: Uint8Array): void {
  let done = 0;
  while (done < src.length) done += writeSync(fd, src, done, Math.min(READ_CHUNK, src.length - done));
}

/**
 * The first half of an atomic write: writes a temporary file beside `path` (same folder, so
 * the later rename stays on one file system), fsyncs and closes it, and returns its path.
 * The caller renames it over `path` or removes it. On failure nothing is left behind;
 * errors that are not SafetensorsError come back as "io" errors naming `path`.
 */
export function writeTempBeside(path: string, write: (fd: number) => void): string {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  let fd: number | null = null;
  try {
    fd = openSync(tmp, "wx");
    write(fd);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    return tmp;
  } catch (e) {
    if (fd !== null) closeSync(fd);
    rmSync(tmp, { force: true });
    if (e instanceof SafetensorsError) throw e;
    throw ioError(path, "write failed", e);
  }
}

/** Renames a temporary file from `writeTempBeside` over `path` (removing it if that fails). */
export function renameIntoPlace(tmp: string, path: string): void {
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw ioError(path, "write failed", e);
  }
}

/** Writes `path` atomically: a temporary file beside it, fsync, then rename over it. */
export function writeFileAtomic(path: string, write: (fd: number) => void): void {
  renameIntoPlace(writeTempBeside(path, write), path);
}

/** Default `__metadata__` of the node writers: what transformers and PEFT write. */
export const PT_METADATA: Readonly<Record<string, string>> = Object.freeze({ format: "pt" });

/**
 * Writes one safetensors file atomically, tensor by tensor (never the whole file in memory).
 * `metadata` defaults to {format: "pt"}, which transformers' loader expects of a file that
 * has metadata; pass null for none.
 *
 * @example
 * saveSafetensors("adapter_model.safetensors", { "base_model.model.lm_head.lora_A.weight": a });
 */
export function saveSafetensors(
  path: string,
  entries: SafetensorsEntries,
  metadata: Readonly<Record<string, string>> | null = PT_METADATA,
): void {
  renameIntoPlace(saveSafetensorsBeside(path, entries, metadata), path);
}

/**
 * The first half of saveSafetensors: the file written (and fsynced) under a temporary name
 * beside `path`, returned for the caller to rename into place with others as one unit.
 */
export function saveSafetensorsBeside(
  path: string,
  entries: SafetensorsEntries,
  metadata: Readonly<Record<string, string>> | null = PT_METADATA,
): string {
  const plan = planSafetensors(entries, metadata);
  return writeTempBeside(path, (fd) => {
    writeFully(fd, plan.head);
    for (const { raw } of plan.order) writeFully(fd, raw.data);
  });
}
