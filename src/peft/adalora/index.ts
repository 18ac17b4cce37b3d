export type { Allocation, BudgetStep } from "./allocator.js";
export { RankAllocator } from "./allocator.js";
export type { AdaLoraConfig, AdaLoraRankPattern } from "./config.js";
export { ADALORA_CONFIG_DEFAULTS, adaLoraConfig, adaLoraConfigToJson, parseAdaLoraConfig } from "./config.js";
export type { AdaLoraAdapterSpec } from "./layer.js";
export { AdaLoraLinear, initAdaLora } from "./layer.js";
export type { AdaLoraInit, LoraConversion } from "./model.js";
export {
  AdaLoraModel,
  adaLoraStateDict,
  adaLoraToLora,
  getAdaLoraModel,
  loadAdaLoraTensors,
  savedRankPattern,
} from "./model.js";
export type { ResumeState } from "./resume-state.js";
export { adaLoraResumeState } from "./resume-state.js";
