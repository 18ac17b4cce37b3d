// Loading a Hugging Face model folder from anywhere a ModelFolderSource reaches (a URL, the
// files a user dropped on a page, bytes in memory), browser-safe. The checks and the assembly
// are the node loader's (assemble.ts, io/checkpoint-index.ts, tokenizer/folder.ts), so a folder
// fails here with the message `loadModel` gives for it on disk. Memory: the model plus one chunk
// of a file (io/folder-safetensors.ts), or one whole shard where the source cannot read ranges.
import { parseCheckpointIndex, shardLacksTensor, shardsInOrder } from "../io/checkpoint-index.js";
import { FolderSafetensors } from "../io/folder-safetensors.js";
import type { FileLike, LoadProgress, ModelFolderSource } from "../io/folder-source.js";
import { filesFolderSource, urlFolderSource } from "../io/folder-source.js";
import type { LoadReport } from "../nn/state.js";
import { loadTokenizerFromSource } from "../tokenizer/folder.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import type { LoadModelOptions } from "./assemble.js";
import {
  CHECKPOINT_FILES,
  checkWeightDType,
  chooseCheckpointFile,
  ModelAssembly,
  noConfigError,
  PICKLE_FILES,
  parseConfigJson,
  parseConfigText,
} from "./assemble.js";
import type { LlamaConfig } from "./llama/config.js";
import type { LlamaForCausalLM } from "./llama/model.js";
import { Nf4ShardCarry } from "./nf4-shard-carry.js";

export interface FolderLoadOptions extends LoadModelOptions {
  /** The fetch a URL folder uses (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Called as file bytes arrive: drive a progress bar. */
  onProgress?: (p: LoadProgress) => void;
  /** Read the folder's tokenizer too (default true). */
  tokenizer?: boolean;
  /**
   * Bytes of checkpoint read at once where the source reads ranges (files, disk): memory peaks
   * at the model plus this (or one tensor, if larger). Default 16 MiB (bench/load-folder.ts: larger
   * chunks were no faster).
   */
  chunkBytes?: number;
}

const DEFAULT_CHUNK_BYTES = 16 << 20;

export interface LoadedFolderModel {
  model: LlamaForCausalLM;
  /** null only when `tokenizer: false` was asked. */
  tokenizer: Tokenizer | null;
  report: LoadReport;
  config: LlamaConfig;
}

/**
 * Loads a Hugging Face LLaMA / Mistral / Qwen2 folder from any source: config.json,
 * model.safetensors or the shards of model.safetensors.index.json, and the tokenizer.
 *
 * @example
 * const { model, tokenizer } = await loadModelFromSource(bytesFolderSource(files, "demo"));
 */
export async function loadModelFromSource(
  source: ModelFolderSource,
  opts: FolderLoadOptions = {},
): Promise<LoadedFolderModel> {
  if (!(await source.has("config.json"))) throw noConfigError(source.label);
  const configPath = source.pathOf("config.json");
  const configText = await source.readText("config.json");
  const config = parseConfigText(configPath, configText);
  checkWeightDType(opts.dtype ?? "auto");
  const present = new Map<string, boolean>();
  for (const f of [...CHECKPOINT_FILES, ...PICKLE_FILES]) present.set(f, await source.has(f));
  const file = chooseCheckpointFile(source.label, (f) => present.get(f) === true);
  const asm = new ModelAssembly(source.label, config, parseConfigJson(configPath, configText), opts);
  // A bitsandbytes 4-bit module's tensors must arrive together: one chunk per file then.
  const chunkBytes = asm.bnb4bit ? Number.POSITIVE_INFINITY : (opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
  let allNames: string[];
  if (file === "model.safetensors") {
    const st = await FolderSafetensors.open(source, file);
    allNames = st.names();
    for await (const chunk of st.chunks(allNames, chunkBytes)) asm.addPart(chunk);
    st.close();
  } else {
    const indexPath = source.pathOf(file);
    const index = parseCheckpointIndex(indexPath, await source.readText(file));
    allNames = [...index.weightMap.keys()];
    const order = shardsInOrder(index);
    // A 4-bit module's tensors may straddle shards; they join the shard that completes them.
    const carry = asm.bnb4bit ? new Nf4ShardCarry(index.weightMap, order) : null;
    for (const shard of order) {
      // One shard open at a time, its tensors read chunk by chunk (the whole shard only where
      // the source cannot read ranges); nothing of it is kept once its tensors are loaded.
      const st = await FolderSafetensors.open(source, shard);
      const names: string[] = [];
      for (const [name, s] of index.weightMap) {
        if (s !== shard) continue;
        if (!st.has(name)) throw shardLacksTensor(indexPath, name, shard);
        names.push(name);
      }
      for await (const chunk of st.chunks(names, chunkBytes))
        asm.addPart(carry ? carry.partFor(shard, chunk) : chunk);
      st.close();
    }
  }
  const { model, report } = asm.finish(allNames);
  const tokenizer = opts.tokenizer === false ? null : await loadTokenizerFromSource(source);
  return { model, tokenizer, report, config };
}

/**
 * Loads a model folder served over HTTP(S) (a static server, or a Hugging Face repository as
 * `https://huggingface.co/ORG/NAME/resolve/main/`).
 *
 * @example
 * const { model, tokenizer } = await loadModelFromUrl("/models/demo-base/", {
 *   onProgress: (p) => console.log(p.file, p.loaded, p.total),
 * });
 */
export function loadModelFromUrl(
  baseUrl: string | URL,
  opts: FolderLoadOptions = {},
): Promise<LoadedFolderModel> {
  return loadModelFromSource(
    urlFolderSource(baseUrl, { fetch: opts.fetch, onProgress: opts.onProgress }),
    opts,
  );
}

/**
 * Loads a model folder a user picked (`<input type="file" webkitdirectory>`) or dropped: files
 * are matched by base name.
 *
 * @example
 * input.onchange = async () => { const { model } = await loadModelFromFiles(input.files!); };
 */
export function loadModelFromFiles(
  files: ArrayLike<FileLike> | Iterable<FileLike>,
  opts: FolderLoadOptions = {},
): Promise<LoadedFolderModel> {
  return loadModelFromSource(filesFolderSource(files, { onProgress: opts.onProgress }), opts);
}
