// lorakit: browser-safe entry point. Node-only parts (native kernels, files, CLI, server)
// live behind "lorakit/node".
export * from "./core/index.js";
export * from "./export/index.js";
export * from "./io/index.js";
export * as linalg from "./linalg/index.js";
export * from "./models/evaluate.js";
export * from "./models/generate.js";
export * from "./models/llama/config.js";
export * from "./models/llama/kv-cache.js";
export * from "./models/llama/model.js";
export * from "./nn/layers.js";
export * from "./nn/module.js";
export * from "./nn/state.js";
export * from "./optim/index.js";
export * from "./peft/config.js";
export * from "./peft/dynamic.js";
export * from "./peft/errors.js";
export * from "./peft/format.js";
export * from "./peft/lora/init.js";
export * from "./peft/lora/layer.js";
export * from "./peft/model.js";
export * from "./peft/params.js";
export * from "./peft/targets.js";
export * from "./peft/weighted.js";
export * from "./tokenizer/bpe-trainer.js";
export { TokenizerError } from "./tokenizer/errors.js";
export type {
  ChatMessage,
  ChatTemplateOptions,
  DecodeOptions as TokenizerDecodeOptions,
  EncodeOptions,
} from "./tokenizer/tokenizer.js";
export { Tokenizer } from "./tokenizer/tokenizer.js";
export * from "./train/data.js";
export * from "./train/trainer.js";
