// Training off the main thread (browser-safe): WorkerTrainer on the page, runTrainerWorker in
// the Worker, and the typed messages between them.
export type { WorkerTrainerSource } from "./client.js";
export { WorkerTrainer } from "./client.js";
export type { MessageLike, TrainerWorkerOptions, WorkerPortLike } from "./handler.js";
export { runTrainerWorker } from "./handler.js";
export type {
  WorkerAdapterFiles,
  WorkerEvaluateOptions,
  WorkerEvaluateResult,
  WorkerGenerateOptions,
  WorkerGenerateResult,
  WorkerLoadOptions,
  WorkerModelInfo,
  WorkerModelSource,
  WorkerProgress,
  WorkerTrainRequest,
  WorkerTrainResult,
} from "./protocol.js";
export { WorkerError, WorkerProtocolError } from "./protocol.js";
export { WORKER_TRAIN_DEFAULTS } from "./session.js";
