// Loading a Hugging Face model folder from anywhere a ModelFolderSource reaches (a URL, the
// files a user dropped on a page, bytes in memory), browser-safe. The checks and the assembly
// are the node loader's (assemble.ts, io/checkpoint-index.ts, tokenizer/folder.ts), so a folder
// fails here with the message `loadModel` gives for it on disk. Memory: one shard's bytes at a
// time (read, its tensors copied into their resident dtype, dropped), plus the model.

import { parseCheckpointIndex, shardLacksTensor, shardsInOrder } from "../io/checkpoint-index.js";
import { SafetensorsError } from "../io/errors.js";
import type { FileLike, LoadProgress, ModelFolderSource } from "../io/folder-source.js";
import { filesFolderSource, urlFolderSource } from "../io/folder-source.js";
import type { SafetensorsView } from "../io/safetensors.js";
import { parseSafetensors } from "../io/safetensors.js";
import type { LoadReport } from "../nn/state.js";
import { loadTokenizerFromSource } from "../tokenizer/folder.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import type { CheckpointPart, LoadModelOptions } from "./assemble.js";
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

export interface FolderLoadOptions extends LoadModelOptions {
  /** The fetch a URL folder uses (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Called as file bytes arrive: drive a progress bar. */
  onProgress?: (p: LoadProgress) => void;
  /** Read the folder's tokenizer too (default true). */
  tokenizer?: boolean;
}

export interface LoadedFolderModel {
  model: LlamaForCausalLM;
  /** null only when `tokenizer: false` was asked. */
  tokenizer: Tokenizer | null;
  report: LoadReport;
  config: LlamaConfig;
}

/** A parsed in-memory safetensors file as a checkpoint part, restricted to `names` when given. */
function viewPart(view: SafetensorsView, names?: readonly string[]): CheckpointPart {
  const list = names ? [...names] : view.names();
  const set = new Set(list);
  return {
    names: () => list,
    has: (n) => set.has(n),
    info: (n) => view.info(n),
    tensor: (n, o) => view.tensor(n, o),
  };
}

/** Parses a safetensors file's bytes, naming the file in errors as the node reader does. */
function parseNamed(path: string, bytes: Uint8Array): SafetensorsView {
  try {
    return parseSafetensors(bytes);
  } catch (e) {
    if (e instanceof SafetensorsError) e.message = `${path}: ${e.message}`;
    throw e;
  }
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
  let allNames: string[];
  if (file === "model.safetensors") {
    const view = parseNamed(source.pathOf(file), await source.readBytes(file));
    allNames = view.names();
    asm.addPart(viewPart(view));
  } else {
    const indexPath = source.pathOf(file);
    const index = parseCheckpointIndex(indexPath, await source.readText(file));
    allNames = [...index.weightMap.keys()];
    for (const shard of shardsInOrder(index)) {
      // One shard in memory at a time: its bytes die when this iteration ends.
      const view = parseNamed(source.pathOf(shard), await source.readBytes(shard));
      const names: string[] = [];
      for (const [name, s] of index.weightMap) {
        if (s !== shard) continue;
        if (!view.has(name)) throw shardLacksTensor(indexPath, name, shard);
        names.push(name);
      }
      asm.addPart(viewPart(view, names));
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
