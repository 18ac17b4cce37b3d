// Browser-safe I/O: safetensors bytes in and out. File access lives in io/node.
export type { SafetensorsErrorCode } from "./errors.js";
export { SafetensorsError } from "./errors.js";
export type {
  FileLike,
  LoadProgress,
  ModelFolderSource,
  SourceOptions,
  UrlSourceOptions,
} from "./folder-source.js";
export { bytesFolderSource, filesFolderSource, urlFolderSource } from "./folder-source.js";
export type {
  SafetensorsEntries,
  SafetensorsEntry,
  SafetensorsHeader,
  SafetensorsPlan,
  SafetensorsTensorInfo,
} from "./safetensors.js";
export {
  compareCodePoints,
  MAX_HEADER_SIZE,
  parseSafetensors,
  parseSafetensorsHeader,
  planSafetensors,
  readHeaderLength,
  SafetensorsView,
  serializeSafetensors,
} from "./safetensors.js";
export type { DecodeOptions, RawTensor, SafetensorsDType } from "./safetensors-dtype.js";
export {
  decodeTensor,
  encodeTensor,
  naturalDType,
  READABLE_DTYPES,
  SAFETENSORS_BITS,
  SAFETENSORS_DTYPES,
  safetensorsDTypeOf,
} from "./safetensors-dtype.js";
