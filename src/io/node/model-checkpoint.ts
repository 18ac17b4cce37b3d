// Checkpoints that span files (node only): one model.safetensors, or shards listed by
// model.safetensors.index.json ({"metadata": {"total_size": N}, "weight_map": {name: shard}}),
// read lazily. The writers that mirror transformers' save_pretrained are in sharded-writer.ts.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Tensor } from "../../core/tensor.js";
import { parseCheckpointIndex, shardLacksTensor } from "../checkpoint-index.js";
import { SafetensorsError } from "../errors.js";
import type { SafetensorsTensorInfo } from "../safetensors.js";
import { notFound } from "../safetensors.js";
import type { DecodeOptions } from "../safetensors-dtype.js";
import { SafetensorsFile } from "./safetensors-file.js";

export const SINGLE_FILE_NAME = "model.safetensors";
export const INDEX_FILE_NAME = "model.safetensors.index.json";

/** Where a tensor of a checkpoint lives. */
export interface CheckpointTensorInfo extends SafetensorsTensorInfo {
  /** Path of the file that holds it. */
  readonly file: string;
}

/**
 * A checkpoint opened for lazy reading: one file or many shards. Only headers are read at
 * open; `tensor(name)` reads that tensor from its shard.
 *
 * @example
 * using ckpt = openCheckpoint("./Llama-3.2-1B");
 * for (const name of ckpt.names()) model.load(name, ckpt.tensor(name, { dtype: "f32" }));
 */
export class SafetensorsCheckpoint {
  private constructor(
    /** The file or index the checkpoint was opened from. */
    readonly path: string,
    private readonly files: readonly SafetensorsFile[],
    private readonly where: ReadonlyMap<string, SafetensorsFile>,
    /** The index's "metadata" object (null for a single file). */
    readonly indexMetadata: Readonly<Record<string, unknown>> | null,
  ) {}

  /** Opens a single .safetensors file as a checkpoint. */
  static fromFile(path: string): SafetensorsCheckpoint {
    const f = SafetensorsFile.open(path);
    return new SafetensorsCheckpoint(path, [f], new Map(f.names().map((n) => [n, f])), null);
  }

  /** Opens the shards listed by an index json (headers only) and checks that they agree with it. */
  static fromIndex(indexPath: string): SafetensorsCheckpoint {
    let text: string;
    try {
      text = readFileSync(indexPath, "utf8");
    } catch (e) {
      throw new SafetensorsError("bad_index", `${indexPath}: cannot read it as JSON`, { cause: e });
    }
    const index = parseCheckpointIndex(indexPath, text);
    const dir = dirname(indexPath);
    const shards = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shard] of index.weightMap) {
        let f = shards.get(shard);
        if (!f) {
          f = SafetensorsFile.open(join(dir, shard));
          shards.set(shard, f);
        }
        if (!f.has(name)) throw shardLacksTensor(indexPath, name, shard);
        where.set(name, f);
      }
    } catch (e) {
      for (const f of shards.values()) f.close();
      throw e;
    }
    return new SafetensorsCheckpoint(indexPath, [...shards.values()], where, index.metadata);
  }

  /** Tensor names: the weight_map's order for a sharded checkpoint, data order for one file. */
  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  private fileOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) {
      const e = notFound(name, this.where);
      e.message = `${this.path}: ${e.message}`;
      throw e;
    }
    return f;
  }

  info(name: string): CheckpointTensorInfo {
    const f = this.fileOf(name);
    return { ...f.info(name), file: f.path };
  }

  /** `__metadata__` of the file holding `name` (shards usually all carry {format: "pt"}). */
  fileMetadata(name: string): Readonly<Record<string, string>> | null {
    return this.fileOf(name).metadata;
  }

  tensor(name: string, opts?: DecodeOptions): Tensor {
    return this.fileOf(name).tensor(name, opts);
  }

  /** The tensor's bytes as stored (little-endian), read now. */
  raw(name: string): Uint8Array {
    return this.fileOf(name).raw(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Opens a checkpoint from a .safetensors file, an index json, or a folder holding
 * model.safetensors.index.json (preferred, as transformers does) or model.safetensors.
 */
export function openCheckpoint(path: string): SafetensorsCheckpoint {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch (e) {
    throw new SafetensorsError("io", `${path}: no such file or folder`, { cause: e });
  }
  if (st.isDirectory()) {
    const index = join(path, INDEX_FILE_NAME);
    if (existsSync(index)) return SafetensorsCheckpoint.fromIndex(index);
    const single = join(path, SINGLE_FILE_NAME);
    if (existsSync(single)) return SafetensorsCheckpoint.fromFile(single);
    const found = readdirSync(path).filter((f) => f.endsWith(".safetensors") || f.endsWith(".index.json"));
    throw new SafetensorsError(
      "io",
      `${path}: no ${INDEX_FILE_NAME} or ${SINGLE_FILE_NAME} in this folder${found.length ? `; found ${found.slice(0, 5).join(", ")}: open one of them directly` : ""}`,
    );
  }
  return path.endsWith(".json")
    ? SafetensorsCheckpoint.fromIndex(path)
    : SafetensorsCheckpoint.fromFile(path);
}
