// model.safetensors.index.json, the shard index of a large checkpoint:
// {"metadata": {"total_size": N}, "weight_map": {tensor name: shard file name}}. Parsed and
// checked here for every reader (the node files reader and the browser folder loader), so a
// malformed index fails with the same message wherever it is opened.
import { SafetensorsError } from "./errors.js";

export interface CheckpointIndex {
  /** Tensor name → shard file name, in the index's order. */
  weightMap: Map<string, string>;
  /** The index's "metadata" object ({} when absent). */
  metadata: Readonly<Record<string, unknown>>;
}

function badIndex(indexPath: string, msg: string, cause?: unknown): SafetensorsError {
  return new SafetensorsError(
    "bad_index",
    `${indexPath}: ${msg}`,
    cause === undefined ? undefined : { cause },
  );
}

/** Parses the index's text; `indexPath` names it in errors. */
export function parseCheckpointIndex(indexPath: string, text: string): CheckpointIndex {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw badIndex(indexPath, "cannot read it as JSON", e);
  }
  return checkCheckpointIndex(indexPath, json);
}

/** Checks a parsed index: a weight_map of tensor name → a file name in the index's own folder. */
export function checkCheckpointIndex(indexPath: string, json: unknown): CheckpointIndex {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw badIndex(indexPath, "must be a JSON object with a weight_map");
  const wm = (json as Record<string, unknown>).weight_map;
  if (typeof wm !== "object" || wm === null || Array.isArray(wm))
    throw badIndex(
      indexPath,
      `"weight_map" must be an object {tensor name: shard file}, got ${JSON.stringify(wm)}`,
    );
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof shard !== "string" || shard === "" || /[/\\]/.test(shard) || shard === "." || shard === "..")
      throw badIndex(
        indexPath,
        `weight_map[${JSON.stringify(name)}] must be a file name in the index's folder, got ${JSON.stringify(shard)}`,
      );
    weightMap.set(name, shard);
  }
  const meta = (json as Record<string, unknown>).metadata;
  const metadata =
    typeof meta === "object" && meta !== null && !Array.isArray(meta)
      ? (meta as Record<string, unknown>)
      : {};
  return { weightMap, metadata: Object.freeze({ ...metadata }) };
}

/** The error for a weight_map entry whose shard lacks the tensor. */
export function shardLacksTensor(indexPath: string, name: string, shard: string): SafetensorsError {
  return badIndex(
    indexPath,
    `weight_map puts ${JSON.stringify(name)} in ${shard}, but that shard has no such tensor`,
  );
}

/** Shard file names in the order the index first names them. */
export function shardsInOrder(index: CheckpointIndex): string[] {
  return [...new Set(index.weightMap.values())];
}
