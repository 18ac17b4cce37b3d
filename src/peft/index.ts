// The PEFT layer's public surface (browser-safe): LoRA and its family. Internals (state-dict
// key prefixes, row-owner markers, matching helpers) stay inside.

export { adaLoraFileAsLora } from "./adalora/convert.js";
export * from "./adalora/index.js";
export type { AdapterFiles, AdapterFolderLoadOptions } from "./adapter-folder.js";
export {
  adapterFiles,
  loadAdapterFromFiles,
  loadAdapterFromSource,
  loadAdapterFromUrl,
} from "./adapter-folder.js";
export type { InitLoraWeights, LoraBias, LoraConfig, TaskType } from "./config.js";
export {
  DEFAULT_TARGET_MODULES,
  LORA_CONFIG_DEFAULTS,
  loraConfig,
  loraConfigToJson,
  parseLoraConfig,
} from "./config.js";
export type { DepthRule, DynamicPatterns, DynamicRankOptions } from "./dynamic.js";
export { dynamicRankPattern, seedRule } from "./dynamic.js";
export { PeftError } from "./errors.js";
export type { AdapterLoadReport } from "./format.js";
export { adapterStateDict, loadAdapterTensors } from "./format.js";
export * from "./gora/index.js";
export { DoraVariant } from "./lora/dora.js";
export type { LoraInit } from "./lora/init.js";
export { initLora } from "./lora/init.js";
export type { LoraAdapterSpec } from "./lora/layer.js";
export { LoraLinear, loraScale, setLoraFusion } from "./lora/layer.js";
export type { PissaFactors } from "./lora/pissa.js";
export { convertPissaToLora, initPissa, pissaFactors } from "./lora/pissa.js";
export type { LoraVariant } from "./lora/variant.js";
export type { AdapterInit, BaseModel, ForwardOptions, PeftLossOptions } from "./model.js";
export { getPeftModel, PeftModel } from "./model.js";
export { ModulesToSaveWrapper } from "./modules-to-save.js";
export type { CountOptions, LayerCount, ModuleCount, ParamCount } from "./params.js";
export { countBaseParams, countLoraParams } from "./params.js";
export { findTargets, matchesTarget } from "./targets.js";
export type {
  MethodTrainerOptions,
  PreparedTraining,
  TrainingMethod,
  TrainingMethodSpec,
} from "./training-method.js";
export { adaLoraAsLora, finalRanks, prepareTraining } from "./training-method.js";
export type { CombinationType, WeightedAdapterOptions } from "./weighted.js";
export { addWeightedAdapter } from "./weighted.js";
