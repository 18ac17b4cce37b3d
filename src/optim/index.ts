// Optimizers, learning-rate schedules, gradient clipping and LoRA+ parameter groups.
export type { AdamWGroup, AdamWOptions, AdamWParamGroup, AdamWState } from "./adamw.js";
export { ADAMW_DEFAULTS, AdamW } from "./adamw.js";
export { clipGradNorm } from "./clip.js";
export type { LoraPlusGroupName, LoraPlusOptions } from "./lora-plus.js";
export { createLoraPlusOptimizer, defaultIsNoDecay, LORA_PLUS_GROUPS, loraPlusGroupOf } from "./lora-plus.js";
export type {
  GroupOptionValue,
  OptimizerStateDict,
  ParamGroupBase,
  ParamGroupState,
  ParamStateDict,
} from "./optimizer.js";
export { Optimizer, OptimizerError } from "./optimizer.js";
export type {
  CosineOptions,
  DecayOptions,
  LrLambda,
  LrSchedulerState,
  Schedulable,
  ScheduleName,
  WarmupOptions,
} from "./schedule.js";
export {
  constantScheduleWithWarmup,
  cosineScheduleWithWarmup,
  LrScheduler,
  linearScheduleWithWarmup,
  SCHEDULE_NAMES,
  scheduleByName,
} from "./schedule.js";
export type { SGDGroup, SGDOptions, SGDParamGroup, SGDState } from "./sgd.js";
export { SGD, SGD_DEFAULTS } from "./sgd.js";
