// PEFT adapter folders (adapter_config.json + adapter_model.safetensors), browser-safe: what
// savePretrained writes, as file contents (adapterFiles), and reading an adapter from any
// ModelFolderSource (a URL, dropped files, bytes) with the checks and errors of the node reader
// (peft/node/io.ts), which uses the same functions.
import type { Tensor } from "../core/tensor.js";
import { SafetensorsError } from "../io/errors.js";
import type { FileLike, ModelFolderSource } from "../io/folder-source.js";
import { filesFolderSource, urlFolderSource } from "../io/folder-source.js";
import { parseSafetensors, serializeSafetensors } from "../io/safetensors.js";
import type { LoraConfig } from "./config.js";
import { loraConfigToJson, parseLoraConfig } from "./config.js";
import { PeftError } from "./errors.js";
import { adapterStateDict, loadAdapterTensors } from "./format.js";
import type { BaseModel } from "./model.js";
import { PeftModel } from "./model.js";

export const CONFIG_NAME = "adapter_config.json";
export const WEIGHTS_NAME = "adapter_model.safetensors";
/** `__metadata__` of adapter_model.safetensors: what PEFT (through safetensors.torch) writes. */
export const ADAPTER_METADATA: Readonly<Record<string, string>> = Object.freeze({ format: "pt" });

/** The two files of a PEFT adapter folder, as savePretrained writes them. */
export interface AdapterFiles {
  "adapter_config.json": string;
  "adapter_model.safetensors": Uint8Array;
}

/** What savePretrained overrides in a saved config (PEFT's save_pretrained does the same). */
export function adapterSaveOverrides(
  pm: PeftModel,
  name: string,
  baseModelNameOrPath: string | null | undefined,
): Partial<LoraConfig> {
  const cfg = pm.peftConfig.get(name)!;
  return {
    inferenceMode: true,
    baseModelNameOrPath: baseModelNameOrPath ?? cfg.baseModelNameOrPath,
    // "all-linear" is saved as the names it resolved to, as PEFT does.
    targetModules: resolvedTargets(pm, name) ?? cfg.targetModules,
  };
}

function resolvedTargets(pm: PeftModel, name: string): string[] | null {
  const cfg = pm.peftConfig.get(name)!;
  if (cfg.targetModules !== "all-linear" && cfg.targetModules !== null) return null;
  const paths = pm.targetsOf.get(name) ?? [];
  return [...new Set(paths.map((p) => p.split(".").pop()!))].sort();
}

/** adapter_config.json's text for a config, as savePretrained writes it. */
export function adapterConfigText(cfg: LoraConfig, overrides: Partial<LoraConfig>): string {
  return JSON.stringify(loraConfigToJson(cfg, overrides), null, 2);
}

/** adapter_model.safetensors's bytes for an adapter's tensors, as savePretrained writes them. */
export function adapterWeightsBytes(tensors: ReadonlyMap<string, Tensor>): Uint8Array {
  return serializeSafetensors(tensors, ADAPTER_METADATA);
}

/**
 * One adapter of `pm` as the two files of a PEFT folder, byte for byte what
 * `savePretrained(pm, dir)` writes there: hand them to a download, or post them from a Worker.
 *
 * @example
 * const files = adapterFiles(peft);
 * const blob = new Blob([files["adapter_model.safetensors"]]);
 */
export function adapterFiles(
  pm: PeftModel,
  opts: { adapterName?: string; baseModelNameOrPath?: string | null } = {},
): AdapterFiles {
  const name = opts.adapterName ?? "default";
  const cfg = pm.peftConfig.get(name);
  if (!cfg) throw new PeftError(`adapterFiles: adapter "${name}" does not exist`);
  return {
    [CONFIG_NAME]: adapterConfigText(cfg, adapterSaveOverrides(pm, name, opts.baseModelNameOrPath)),
    [WEIGHTS_NAME]: adapterWeightsBytes(adapterStateDict(pm, name)),
  };
}

/** No adapter_config.json in `label`. */
export function noAdapterConfigError(label: string): PeftError {
  return new PeftError(`${label}: no ${CONFIG_NAME} (is this a PEFT adapter folder?)`);
}

/** adapter_config.json's text → the checked config (`path` names the file in errors). */
export function parseAdapterConfigText(path: string, text: string): LoraConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new PeftError(`${path}: not valid JSON`, { cause: e });
  }
  return parseLoraConfig(json, path);
}

/** No adapter_model.safetensors in `label` (with the conversion recipe when a pickle is there). */
export function noAdapterWeightsError(label: string, hasPickle: boolean): PeftError {
  if (hasPickle)
    return new PeftError(
      `${label}: only adapter_model.bin (a Python pickle) is present. lorakit never runs code from a file, so it reads safetensors only.\n  Convert it once in Python:\n    import torch; from safetensors.torch import save_file\n    save_file(torch.load("adapter_model.bin", weights_only=True), "adapter_model.safetensors", metadata={"format": "pt"})`,
    );
  return new PeftError(`${label}: no ${WEIGHTS_NAME}`);
}

/** adapter_config.json (parsed and checked) and every tensor of adapter_model.safetensors, from any source. */
export async function readAdapterSource(
  source: ModelFolderSource,
): Promise<{ config: LoraConfig; tensors: Map<string, Tensor> }> {
  if (!(await source.has(CONFIG_NAME))) throw noAdapterConfigError(source.label);
  const cfgPath = source.pathOf(CONFIG_NAME);
  const config = parseAdapterConfigText(cfgPath, await source.readText(CONFIG_NAME));
  if (!(await source.has(WEIGHTS_NAME)))
    throw noAdapterWeightsError(source.label, await source.has("adapter_model.bin"));
  const bytes = await source.readBytes(WEIGHTS_NAME);
  let view: ReturnType<typeof parseSafetensors>;
  try {
    view = parseSafetensors(bytes);
  } catch (e) {
    if (e instanceof SafetensorsError) e.message = `${source.pathOf(WEIGHTS_NAME)}: ${e.message}`;
    throw e;
  }
  const tensors = new Map<string, Tensor>();
  for (const n of view.names()) tensors.set(n, view.tensor(n));
  return { config, tensors };
}

export interface AdapterFolderLoadOptions {
  /** The name the adapter gets in the PeftModel (default "default"). */
  adapterName?: string;
  /** Keep the loaded adapter trainable (default false: inference). */
  isTrainable?: boolean;
  /** The fetch a URL folder uses (default globalThis.fetch). */
  fetch?: typeof fetch;
}

/**
 * Adds the adapter in `source` to `target` (a PeftModel), or wraps `target` (a base model) in a
 * new PeftModel first, as PEFT's PeftModel.from_pretrained does; returns the PeftModel.
 */
export async function loadAdapterFromSource<M extends BaseModel>(
  target: PeftModel<M> | M,
  source: ModelFolderSource,
  opts: AdapterFolderLoadOptions = {},
): Promise<PeftModel<M>> {
  const { config, tensors } = await readAdapterSource(source);
  const pm = target instanceof PeftModel ? target : new PeftModel(target);
  const name = opts.adapterName ?? "default";
  config.inferenceMode = !opts.isTrainable;
  loadAdapterTensors(pm, name, config, tensors, { isTrainable: opts.isTrainable, where: source.label });
  return pm;
}

/**
 * Loads a PEFT adapter folder served over HTTP(S) onto a model.
 *
 * @example
 * const peft = await loadAdapterFromUrl(model, "/adapters/sotu/");
 */
export function loadAdapterFromUrl<M extends BaseModel>(
  target: PeftModel<M> | M,
  url: string | URL,
  opts: AdapterFolderLoadOptions = {},
): Promise<PeftModel<M>> {
  return loadAdapterFromSource(target, urlFolderSource(url, { fetch: opts.fetch }), opts);
}

/**
 * Loads a PEFT adapter from files a user picked or dropped (matched by base name).
 *
 * @example
 * const peft = await loadAdapterFromFiles(model, input.files!);
 */
export function loadAdapterFromFiles<M extends BaseModel>(
  target: PeftModel<M> | M,
  files: ArrayLike<FileLike> | Iterable<FileLike>,
  opts: AdapterFolderLoadOptions = {},
): Promise<PeftModel<M>> {
  return loadAdapterFromSource(target, filesFolderSource(files), opts);
}
