// Training (browser-safe): the Trainer, the data pipeline, and the memory model and planner.
export * from "./data.js";
export type {
  LinearName,
  PlanChoice,
  PlanResult,
  TrainingMemory,
  TrainingShape,
} from "./memory-plan.js";
export { estimateTrainingMemory, parseByteSize, planTraining } from "./memory-plan.js";
export type { TrainableModel, TrainEvent, TrainerOptions, TrainerState } from "./trainer.js";
export { evaluateBatches, Trainer, TrainingError } from "./trainer.js";
export * from "./worker/index.js";
