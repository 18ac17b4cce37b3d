// Training files (node only): data files by extension, and resumable training checkpoints.
export type { DataFileType, LoadDatasetOptions, LoadSplitsOptions } from "../data-node.js";
export { dataFileType, loadDataset, loadSplits } from "../data-node.js";
export { CheckpointError, latestCheckpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.js";
