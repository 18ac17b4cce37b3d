// The models layer's public surface (browser-safe): the LLaMA family (llama, mistral, qwen2),
// its config, KV cache, generation and evaluation.
export type { LoadedModel, LoadModelOptions, WeightDType } from "./assemble.js";
export type { NllResult } from "./evaluate.js";
export { evaluateNll } from "./evaluate.js";
export type { GenerateOptions, GenerationStats } from "./generate.js";
export { generate, generationRates, greedyToken, nextToken, sampleToken } from "./generate.js";
export type { LayerType, LlamaConfig, LlamaModelType, RopeScaling } from "./llama/config.js";
export {
  ConfigError,
  computeRopeInvFreq,
  LLAMA_CONFIG_DEFAULTS,
  LLAMA_MODEL_TYPES,
  llamaConfigToJson,
  parseLlamaConfig,
} from "./llama/config.js";
export { KVCache, type KVCacheOptions, type KVDType } from "./llama/kv-cache.js";
export type { CausalLMForwardOptions } from "./llama/model.js";
export { LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP, LlamaModel } from "./llama/model.js";
export type { FolderLoadOptions, LoadedFolderModel } from "./load-folder.js";
export { loadModelFromFiles, loadModelFromSource, loadModelFromUrl } from "./load-folder.js";
