// Node-only I/O: safetensors files and sharded checkpoints on disk.
export { nodeFolderSource } from "./folder-source.js";
export type { CheckpointTensorInfo } from "./model-checkpoint.js";
export {
  INDEX_FILE_NAME,
  openCheckpoint,
  SafetensorsCheckpoint,
  SINGLE_FILE_NAME,
} from "./model-checkpoint.js";
export {
  openSafetensors,
  PT_METADATA,
  SafetensorsFile,
  saveSafetensors,
  writeFileAtomic,
} from "./safetensors-file.js";
export type { ShardedSaveOptions, ShardedSaveResult, StreamedTensorInfo } from "./sharded-writer.js";
export {
  planShards,
  pythonJsonDumps,
  saveShardedSafetensors,
  streamShardedSafetensors,
} from "./sharded-writer.js";
