// Hugging Face checkpoints on disk (node only): streaming load in a chosen dtype (NF4 on
// request), save, headers-only description, and file-to-file NF4 quantisation.
export type {
  CheckpointSummary,
  LoadedModel,
  LoadModelOptions,
  SaveModelOptions,
  WeightDType,
} from "./load.js";
export {
  describeCheckpoint,
  loadModel,
  readModelConfig,
  residentDType,
  residentWeightBytes,
  saveModel,
} from "./load.js";
export type { QuantizeCheckpointOptions, QuantizeCheckpointResult } from "./quantize-checkpoint.js";
export { quantizeCheckpoint } from "./quantize-checkpoint.js";
