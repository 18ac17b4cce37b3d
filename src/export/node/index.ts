// Node-only export: GGUF files written tensor by tensor.
export type {
  ExportAdapterResult,
  ExportModelOptions,
  ExportModelResult,
  GgufDTypeOption,
} from "./export-gguf.js";
export {
  exportAdapterGguf,
  exportLoadedModelGguf,
  exportMergedGguf,
  exportModelGguf,
} from "./export-gguf.js";
export { writeGgufFile } from "./gguf-file.js";
