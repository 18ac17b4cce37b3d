// Browser-safe export formats: GGUF (llama.cpp, Ollama, LM Studio) as bytes and plans. Files
// are written by export/node.
export { ExportError } from "./errors.js";
export { encodeGgmlData, quantizeQ8_0 } from "./gguf/encode.js";
export type { GgmlType, GgufKv, GgufLayout, GgufScalarType, GgufTensorInfo } from "./gguf/format.js";
export {
  encodeGgufHeader,
  GGML_TYPE,
  GGUF_ALIGNMENT,
  GGUF_VERSION,
  ggmlTensorBytes,
  kv,
} from "./gguf/format.js";
export type {
  GgufArch,
  GgufModelDType,
  GgufModelPlan,
  PlannedTensor,
  RopePermutation,
} from "./gguf/llama-arch.js";
export {
  ggufArch,
  ggufTensorName,
  llama3RopeFactors,
  permuteRopeRows,
  planModelGguf,
  ropePermutation,
} from "./gguf/llama-arch.js";
export type { AdapterGguf, GgufAdapterDType } from "./gguf/lora.js";
export { adapterGguf } from "./gguf/lora.js";
export type { ChatRenderer, GoTemplate } from "./gguf/modelfile.js";
export { chatTemplateToGo, modelfile } from "./gguf/modelfile.js";
export type { TokenizerGguf, TokenizerGgufInput } from "./gguf/tokenizer.js";
export { PRE_TOKENIZER_REGEX, tokenizerGguf } from "./gguf/tokenizer.js";
