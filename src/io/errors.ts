// Errors raised while reading or writing safetensors files and checkpoints.
import { LorakitError } from "../core/errors.js";

/** What went wrong, as a stable string a caller can branch on. */
export type SafetensorsErrorCode =
  /** The file is shorter than the 8-byte header length. */
  | "too_short"
  /** The header length is over 100 MB (the Rust crate's MAX_HEADER_SIZE). */
  | "header_too_large"
  /** The header length points past the end of the file. */
  | "header_beyond_file"
  /** The header bytes are not valid UTF-8. */
  | "header_not_utf8"
  /** The header is not valid JSON (or nests too deeply, or has an integer beyond 2^53). */
  | "header_not_json"
  /** The header JSON is not an object, or an entry in it is not an object with the required fields. */
  | "header_not_object"
  /** A key appears twice in the header (a tensor name, or a field of one entry). */
  | "duplicate_name"
  /** `__metadata__` is not an object of string values. */
  | "bad_metadata"
  /** A dtype name the format does not define. */
  | "unknown_dtype"
  /** A shape that is not a list of non-negative integers, or whose size overflows. */
  | "bad_shape"
  /** `data_offsets` is not two non-negative integers [begin, end] with begin <= end. */
  | "bad_offsets"
  /** A tensor's bytes lie past the end of the file. */
  | "offsets_out_of_range"
  /** Two tensors share bytes. */
  | "offsets_overlap"
  /** Bytes between two tensors (or before the first) belong to no tensor. */
  | "offsets_gap"
  /** Bytes after the last tensor belong to no tensor. */
  | "data_not_covered"
  /** shape × dtype size differs from the byte length given by the offsets. */
  | "size_mismatch"
  /** A name that is not in the file. */
  | "tensor_not_found"
  /** A dtype lorakit can read the header of but cannot turn into a tensor (FP8, FP4, complex...), or an impossible conversion. */
  | "unsupported_dtype"
  /** A stored integer does not fit the dtype it is converted to (e.g. I64 → i32). */
  | "value_out_of_range"
  /** The writer got an entry it cannot write (data length does not match shape, bad name, header too large). */
  | "bad_input"
  /** A sharded checkpoint's index json is malformed or disagrees with its shards. */
  | "bad_index"
  /** Reading the file failed or returned fewer bytes than the header promised. */
  | "io";

/**
 * A safetensors file or checkpoint is malformed, or a request on it cannot be met.
 * `code` says which; the message names the tensor, the values and what was expected.
 */
export class SafetensorsError extends LorakitError {
  readonly code: SafetensorsErrorCode;
  constructor(code: SafetensorsErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
