// lorakit for Node: everything in the browser-safe entry plus files, corpora, backend
// selection with the native kernels, and the server.
export { mobyDickText, sotuText } from "./data/corpora.js";
export * from "./export/node/index.js";
export * from "./index.js";
export * from "./io/node/index.js";
export type { BackendKind } from "./kernels/select.js";
export { availableBackends, selectBackend } from "./kernels/select.js";
export * from "./models/node/index.js";
export * from "./peft/node/index.js";
export * from "./serve/index.js";
export { loadTokenizer, saveTokenizer } from "./tokenizer/node.js";
export * from "./train/node/index.js";
