// lorakit: the browser-safe entry point. Each layer's index.ts lists what it makes public;
// node-only parts (native kernels, files, corpora, the server) live behind "lorakit/node".
export * from "./core/index.js";
export * from "./export/index.js";
export * from "./io/index.js";
// The WebAssembly kernels for browsers: loadWasmBackend fetches them, starts workers when the
// page is cross-origin isolated, and makes them the engine's backend.
export {
  type LoadWasmBackendOptions,
  loadWasmBackend,
  type WasmBackendHandle,
} from "./kernels/wasm/index.js";
export * as linalg from "./linalg/index.js";
export * from "./models/index.js";
export * from "./nn/index.js";
export * from "./optim/index.js";
export * from "./peft/index.js";
export * from "./quant/index.js";
export type {
  SplitPattern,
  TokenizerConfigJson,
  TokenizerJson,
  TrainBpeOptions,
  TrainedBpe,
} from "./tokenizer/bpe-trainer.js";
export { DEFAULT_CHAT_TEMPLATE, trainBpeTokenizer } from "./tokenizer/bpe-trainer.js";
export { TokenizerError } from "./tokenizer/errors.js";
export { loadTokenizerFromSource } from "./tokenizer/folder.js";
export type {
  ChatMessage,
  ChatTemplateOptions,
  DecodeOptions as TokenizerDecodeOptions,
  EncodeOptions,
} from "./tokenizer/tokenizer.js";
export { Tokenizer } from "./tokenizer/tokenizer.js";
export * from "./train/index.js";
