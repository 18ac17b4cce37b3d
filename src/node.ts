// lorakit for Node: everything in the browser-safe entry plus files, corpora and backend
// selection with the native kernels.

export * from "./data/corpora.js";
export * from "./export/node/index.js";
export * from "./index.js";
export * from "./io/node/index.js";
export { availableBackends, selectBackend } from "./kernels/select.js";
export * from "./models/node/load.js";
export * from "./peft/node/io.js";
export { loadTokenizer, saveTokenizer } from "./tokenizer/node.js";
export * from "./train/data-node.js";
export * from "./train/node/checkpoint.js";
