// Checkpoints that span files (node only): one model.safetensors, or shards listed by
// model.safetensors.index.json ({"metadata": {"total_size": N}, "weight_map": {name: shard}}),
// read lazily; and the sharded writer that transformers' save_pretrained mirrors.
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Tensor } from "../../core/tensor.js";
import { SafetensorsError } from "../errors.js";
import type { SafetensorsEntries, SafetensorsEntry, SafetensorsTensorInfo } from "../safetensors.js";
import { compareCodePoints, notFound } from "../safetensors.js";
import type { DecodeOptions } from "../safetensors-dtype.js";
import { encodeTensor, isRawTensor } from "../safetensors-dtype.js";
import {
  PT_METADATA,
  SafetensorsFile,
  saveSafetensors,
  writeFileAtomic,
  writeFully,
} from "./safetensors-file.js";

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
    const bad = (msg: string, cause?: unknown): SafetensorsError =>
      new SafetensorsError("bad_index", `${indexPath}: ${msg}`, cause === undefined ? undefined : { cause });
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(indexPath, "utf8"));
    } catch (e) {
      throw bad("cannot read it as JSON", e);
    }
    if (typeof json !== "object" || json === null || Array.isArray(json))
      throw bad("must be a JSON object with a weight_map");
    const wm = (json as Record<string, unknown>).weight_map;
    if (typeof wm !== "object" || wm === null || Array.isArray(wm))
      throw bad(`"weight_map" must be an object {tensor name: shard file}, got ${JSON.stringify(wm)}`);
    const meta = (json as Record<string, unknown>).metadata;
    const dir = dirname(indexPath);
    const shards = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
        if (
          typeof shard !== "string" ||
          shard === "" ||
          /[/\\]/.test(shard) ||
          shard === "." ||
          shard === ".."
        )
          throw bad(
            `weight_map[${JSON.stringify(name)}] must be a file name in the index's folder, got ${JSON.stringify(shard)}`,
          );
        let f = shards.get(shard);
        if (!f) {
          f = SafetensorsFile.open(join(dir, shard));
          shards.set(shard, f);
        }
        if (!f.has(name))
          throw bad(`weight_map puts ${JSON.stringify(name)} in ${shard}, but that shard has no such tensor`);
        where.set(name, f);
      }
    } catch (e) {
      for (const f of shards.values()) f.close();
      throw e;
    }
    const metaObj =
      typeof meta === "object" && meta !== null && !Array.isArray(meta)
        ? (meta as Record<string, unknown>)
        : {};
    return new SafetensorsCheckpoint(indexPath, [...shards.values()], where, Object.freeze({ ...metaObj }));
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

export interface ShardedSaveOptions {
  /**
   * Largest shard in bytes of tensor data (default 5e9, transformers' "5GB"). A tensor larger
   * than this gets a shard of its own.
   */
  maxShardSize?: number;
  /** `__metadata__` of every shard (default {format: "pt"}; null for none). */
  metadata?: Readonly<Record<string, string>> | null;
  /** File name stem (default "model": model.safetensors, model-00001-of-00002.safetensors). */
  prefix?: string;
}

export interface ShardedSaveResult {
  /** The files written, in shard order. */
  readonly files: readonly string[];
  /** The index written (null when everything fit in one file). */
  readonly index: { metadata: { total_size: number }; weight_map: Record<string, string> } | null;
}

/** JSON as Python's json.dumps(obj, indent=2, sort_keys=True) writes it (ensure_ascii included). */
export function pythonJsonDumps(v: unknown): string {
  const sortDeep = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sortDeep);
    if (x && typeof x === "object")
      return Object.fromEntries(
        Object.keys(x)
          .sort(compareCodePoints)
          .map((k) => [k, sortDeep((x as Record<string, unknown>)[k])]),
      );
    return x;
  };
  return JSON.stringify(sortDeep(v), null, 2).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function byteLengthOf(e: SafetensorsEntry): number {
  return isRawTensor(e) ? e.data.length : encodeTensor(e).data.length;
}

/**
 * Writes a checkpoint into `dir` as transformers' save_pretrained does: tensors are packed
 * into shards in the order given (a new shard starts when the next tensor would pass
 * `maxShardSize`), named model-00001-of-0000N.safetensors, plus model.safetensors.index.json
 * (indent 2, sorted keys); a checkpoint that fits one shard is a plain model.safetensors with
 * no index. Every file is written atomically; shards and indexes of an earlier save with the
 * same prefix that are not part of this one are removed afterwards.
 *
 * @example
 * saveShardedSafetensors("./merged", model.stateDict(), { maxShardSize: 2e9 });
 */
export function saveShardedSafetensors(
  dir: string,
  entries: SafetensorsEntries,
  opts: ShardedSaveOptions = {},
): ShardedSaveResult {
  const max = opts.maxShardSize ?? 5e9;
  const prefix = opts.prefix ?? "model";
  const metadata = opts.metadata === undefined ? PT_METADATA : opts.metadata;
  if (!(max > 0))
    throw new SafetensorsError("bad_input", `maxShardSize must be a positive number of bytes, got ${max}`);
  if (prefix === "" || /[/\\]/.test(prefix))
    throw new SafetensorsError(
      "bad_input",
      `prefix must be a plain file name stem, got ${JSON.stringify(prefix)}`,
    );
  const list: [string, SafetensorsEntry][] = entries instanceof Map ? [...entries] : Object.entries(entries);
  // huggingface_hub split_state_dict_into_shards_factory: greedy, in order.
  const shards: Map<string, SafetensorsEntry>[] = [];
  let current = new Map<string, SafetensorsEntry>();
  let currentSize = 0;
  let total = 0;
  for (const [name, t] of list) {
    const size = byteLengthOf(t);
    total += size;
    if (size > max) {
      shards.push(new Map([[name, t]]));
      continue;
    }
    if (currentSize + size > max && current.size > 0) {
      shards.push(current);
      current = new Map();
      currentSize = 0;
    }
    current.set(name, t);
    currentSize += size;
  }
  if (current.size > 0 || shards.length === 0) shards.push(current);

  const pad = (i: number): string => String(i).padStart(5, "0");
  const names =
    shards.length === 1
      ? [`${prefix}.safetensors`]
      : shards.map((_, i) => `${prefix}-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const indexName = `${prefix}.safetensors.index.json`;
  const files = names.map((n) => join(dir, n));
  shards.forEach((s, i) => {
    saveSafetensors(files[i], s, metadata);
  });
  let index: ShardedSaveResult["index"] = null;
  if (shards.length > 1) {
    const weightMap: Record<string, string> = {};
    shards.forEach((s, i) => {
      for (const name of s.keys()) weightMap[name] = names[i];
    });
    index = { metadata: { total_size: total }, weight_map: weightMap };
    const text = new TextEncoder().encode(`${pythonJsonDumps(index)}\n`);
    writeFileAtomic(join(dir, indexName), (fd) => writeFully(fd, text));
  }
  // Clean out what an earlier save left (as transformers does), after the new files exist.
  const keep = new Set(names);
  const esc = prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const ours = new RegExp(`^${esc}(-\\d{5}-of-\\d{5})?\\.safetensors$`);
  for (const f of readdirSync(dir)) {
    if ((ours.test(f) && !keep.has(f)) || (f === indexName && index === null))
      rmSync(join(dir, f), { force: true });
  }
  return { files, index };
}
