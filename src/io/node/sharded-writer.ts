// Writing checkpoints as transformers' save_pretrained does (node only): tensors packed into
// shards by huggingface_hub's greedy split, model-0000K-of-0000N.safetensors plus
// model.safetensors.index.json, or one model.safetensors. Two writers share one plan:
// `saveShardedSafetensors` takes tensors already in memory; `streamShardedSafetensors`
// takes only their dtypes and shapes and asks for each tensor's bytes right when they are
// written, so a checkpoint larger than memory is written one tensor at a time.
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsError } from "../errors.js";
import type { SafetensorsEntries, SafetensorsLayout, SafetensorsTensorSpec } from "../safetensors.js";
import {
  compareCodePoints,
  planSafetensorsLayout,
  safetensorsByteLength,
  toCheckedRaw,
} from "../safetensors.js";
import type { RawTensor } from "../safetensors-dtype.js";
import {
  PT_METADATA,
  renameIntoPlace,
  writeFileAtomic,
  writeFully,
  writeTempBeside,
} from "./safetensors-file.js";

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

/**
 * huggingface_hub's split_state_dict_into_shards_factory: greedy, in the order given. A
 * tensor larger than `maxShardSize` becomes a shard of its own, appended at once (so before
 * the shard still being filled); otherwise a new shard starts when the next tensor would
 * take the current one past `maxShardSize`. Returns indices into `byteLengths`, per shard;
 * no tensors give one empty shard (a file with only the header).
 *
 * @example
 * planShards([256, 64, 128, 8, 512], 300); // [[0], [4], [1, 2, 3]]
 */
export function planShards(byteLengths: readonly number[], maxShardSize: number): number[][] {
  const shards: number[][] = [];
  let current: number[] = [];
  let currentSize = 0;
  byteLengths.forEach((size, i) => {
    if (size > maxShardSize) {
      shards.push([i]);
      return;
    }
    if (currentSize + size > maxShardSize && current.length > 0) {
      shards.push(current);
      current = [];
      currentSize = 0;
    }
    current.push(i);
    currentSize += size;
  });
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

/** One shard of a planned checkpoint: its file name and its layout (header and data order). */
interface PlannedShard {
  readonly fileName: string;
  readonly layout: SafetensorsLayout;
}

interface ShardedPlan {
  readonly shards: readonly PlannedShard[];
  readonly index: ShardedSaveResult["index"];
  readonly indexName: string;
  readonly prefix: string;
}

/**
 * Everything both writers decide before writing a byte: options, shard split, file names,
 * every shard's header and the index. Throws SafetensorsError "bad_input" on bad options,
 * specs (dtype, shape, a name twice) or a header over the readers' limit.
 */
function planCheckpoint(specs: readonly SafetensorsTensorSpec[], opts: ShardedSaveOptions): ShardedPlan {
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
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.name))
      throw new SafetensorsError("bad_input", `tensor ${JSON.stringify(s.name)} is listed twice`);
    seen.add(s.name);
  }
  const sizes = specs.map(safetensorsByteLength);
  const groups = planShards(sizes, max);
  const pad = (i: number): string => String(i).padStart(5, "0");
  const names =
    groups.length === 1
      ? [`${prefix}.safetensors`]
      : groups.map((_, i) => `${prefix}-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`);
  const shards = groups.map((g, i) => ({
    fileName: names[i],
    layout: planSafetensorsLayout(
      g.map((k) => specs[k]),
      metadata,
    ),
  }));
  let index: ShardedSaveResult["index"] = null;
  if (groups.length > 1) {
    const weightMap: Record<string, string> = {};
    groups.forEach((g, i) => {
      for (const k of g) weightMap[specs[k].name] = names[i];
    });
    index = { metadata: { total_size: sizes.reduce((a, b) => a + b, 0) }, weight_map: weightMap };
  }
  return { shards, index, indexName: `${prefix}.safetensors.index.json`, prefix };
}

/** Writes the index (or removes a stale one), then removes shards of an earlier save. */
function finishCheckpoint(dir: string, plan: ShardedPlan): void {
  if (plan.index !== null) {
    const text = new TextEncoder().encode(`${pythonJsonDumps(plan.index)}\n`);
    writeFileAtomic(join(dir, plan.indexName), (fd) => writeFully(fd, text));
  }
  // Clean out what an earlier save left (as transformers does), after the new files exist.
  const keep = new Set(plan.shards.map((s) => s.fileName));
  const esc = plan.prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const ours = new RegExp(`^${esc}(-\\d{5}-of-\\d{5})?\\.safetensors$`);
  for (const f of readdirSync(dir)) {
    if ((ours.test(f) && !keep.has(f)) || (f === plan.indexName && plan.index === null))
      rmSync(join(dir, f), { force: true });
  }
}

/** What `streamShardedSafetensors` tells `produce` about the tensor it asks for. */
export interface StreamedTensorInfo extends SafetensorsTensorSpec {
  /** The exact number of bytes `produce` must return. */
  readonly byteLength: number;
  /** The shard file the tensor goes to. */
  readonly file: string;
}

/**
 * Writes a checkpoint exactly as `saveShardedSafetensors` would write the same tensors (same
 * shard split, file names, headers, index and bytes), without holding them: the caller lists
 * each tensor's name, safetensors dtype and shape up front, in state-dict order (which
 * decides the split), and `produce(name, info)` returns that tensor's raw little-endian bytes
 * when the writer reaches it.
 *
 * `produce` is called once per tensor in the order the bytes go to disk: shard by shard, and
 * within a shard in the safetensors data order (dtype, then name: model.layers.10 comes before
 * model.layers.2), which is not the order of `specs`; derive each tensor from its name. It
 * must return a Uint8Array of exactly `info.byteLength` bytes: raw bytes because the spec has
 * already fixed the dtype and shape (a Tensor would repeat them and leave a conversion to
 * guess; use `encodeTensor(t, dtype).data` to write a lorakit tensor). The bytes are written
 * before `produce` is called again and are not kept, so the caller may reuse one buffer:
 * memory peaks at the largest tensor plus the headers.
 *
 * Every shard goes to a fsync'ed temporary file first; only when all of them are complete are
 * they renamed over the real names, then the index is written and shards of an earlier save
 * removed. A `produce` that throws or returns the wrong number of bytes (SafetensorsError
 * "bad_input" naming the tensor) leaves the folder as it was: temporary files removed, an
 * earlier checkpoint untouched.
 *
 * @example
 * streamShardedSafetensors(
 *   "./Llama-2-7b-random",
 *   [{ name: "model.embed_tokens.weight", dtype: "BF16", shape: [32000, 4096] }, ...],
 *   (name, info) => randomBf16Bytes(name, info.byteLength),
 *   { maxShardSize: 10e9 },
 * );
 */
export function streamShardedSafetensors(
  dir: string,
  specs: readonly SafetensorsTensorSpec[],
  produce: (name: string, info: StreamedTensorInfo) => Uint8Array,
  opts: ShardedSaveOptions = {},
): ShardedSaveResult {
  const plan = planCheckpoint(specs, opts);
  const files = plan.shards.map((s) => join(dir, s.fileName));
  const temps: string[] = [];
  // An error thrown by produce() is the caller's and goes back unchanged, not as an "io" error.
  let fromProduce: { error: unknown } | null = null;
  try {
    plan.shards.forEach((shard, i) => {
      temps.push(
        writeTempBeside(files[i], (fd) => {
          writeFully(fd, shard.layout.head);
          for (const t of shard.layout.order) {
            let bytes: Uint8Array;
            try {
              bytes = produce(t.name, { ...t, file: shard.fileName });
            } catch (e) {
              fromProduce = { error: e };
              throw e;
            }
            if (!(bytes instanceof Uint8Array) || bytes.length !== t.byteLength)
              throw new SafetensorsError(
                "bad_input",
                `tensor ${JSON.stringify(t.name)}: produce() returned ${bytes instanceof Uint8Array ? `${bytes.length} bytes` : `a ${Object.prototype.toString.call(bytes).slice(8, -1)}, not a Uint8Array`}; ${t.dtype} shape [${t.shape.join(", ")}] needs ${t.byteLength} bytes`,
              );
            writeFully(fd, bytes);
          }
        }),
      );
    });
  } catch (e) {
    for (const t of temps) rmSync(t, { force: true });
    throw fromProduce !== null ? (fromProduce as { error: unknown }).error : e;
  }
  for (let i = 0; i < temps.length; i++) {
    try {
      renameIntoPlace(temps[i], files[i]);
    } catch (e) {
      for (const t of temps.slice(i + 1)) rmSync(t, { force: true });
      throw e;
    }
  }
  finishCheckpoint(dir, plan);
  return { files, index: plan.index };
}

/**
 * Writes a checkpoint into `dir` as transformers' save_pretrained does: tensors are packed
 * into shards in the order given (a new shard starts when the next tensor would pass
 * `maxShardSize`), named model-00001-of-0000N.safetensors, plus model.safetensors.index.json
 * (indent 2, sorted keys); a checkpoint that fits one shard is a plain model.safetensors with
 * no index. Every file is written atomically; shards and indexes of an earlier save with the
 * same prefix that are not part of this one are removed afterwards. Every tensor is already
 * in memory; `streamShardedSafetensors` writes the same files one tensor at a time.
 *
 * @example
 * saveShardedSafetensors("./merged", model.stateDict(), { maxShardSize: 2e9 });
 */
export function saveShardedSafetensors(
  dir: string,
  entries: SafetensorsEntries,
  opts: ShardedSaveOptions = {},
): ShardedSaveResult {
  // Sizes are checked up front, so a bad entry fails before any file is written.
  const raws = new Map<string, RawTensor>();
  for (const [name, t] of entries instanceof Map ? entries : Object.entries(entries))
    raws.set(name, toCheckedRaw(name, t));
  return streamShardedSafetensors(
    dir,
    [...raws].map(([name, r]) => ({ name, dtype: r.dtype, shape: r.shape })),
    (name) => raws.get(name)!.data,
    opts,
  );
}
