// Node-only I/O: safetensors files and sharded checkpoints on disk.
export type { CheckpointTensorInfo, ShardedSaveOptions, ShardedSaveResult } from "./checkpoint.js";
export {
  INDEX_FILE_NAME,
  openCheckpoint,
  pythonJsonDumps,
  SafetensorsCheckpoint,
  SINGLE_FILE_NAME,
  saveShardedSafetensors,
} from "./checkpoint.js";
export {
  openSafetensors,
  PT_METADATA,
  SafetensorsFile,
  saveSafetensors,
  writeFileAtomic,
} from "./safetensors-file.js";
