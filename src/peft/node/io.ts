// PEFT adapter folders on disk: adapter_config.json + adapter_model.safetensors, a
// non-default adapter in a subfolder named after it (PEFT's save_pretrained layout).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Tensor } from "../../core/tensor.js";
import { openSafetensors } from "../../io/node/index.js";
import {
  adapterConfigText,
  adapterSaveOverrides,
  noAdapterConfigError,
  noAdapterWeightsError,
  parseAdapterConfigText,
} from "../adapter-folder.js";
import type { parseLoraConfig } from "../config.js";
import { PeftError } from "../errors.js";
import type { AdapterLoadReport } from "../format.js";
import { adapterStateDict, loadAdapterTensors } from "../format.js";
import { convertPissaToLora } from "../lora/pissa.js";
import type { BaseModel } from "../model.js";
import { PeftModel } from "../model.js";

import { CONFIG_NAME, WEIGHTS_NAME, writeAdapterFolder } from "./write-adapter.js";

export { CONFIG_NAME, WEIGHTS_NAME };

export interface SaveOptions {
  /** Adapters to save (default: all). */
  adapterNames?: readonly string[];
  /** Recorded as base_model_name_or_path. */
  baseModelNameOrPath?: string | null;
  /**
   * PEFT's path_initial_model_for_weight_conversion: a folder holding the PiSSA adapter as
   * it was right after initialisation (written by savePretrained before training). The
   * adapter is then saved converted to a plain LoRA adapter of rank 2r that applies to the
   * *original* base model (see convertPissaToLora), and — as PEFT does — that folder's
   * config is rewritten with init_lora_weights: true so that loading it never re-runs PiSSA.
   */
  pathInitialModelForWeightConversion?: string;
}

/**
 * Writes each adapter as PEFT does: "default" into dir, others into dir/<name>.
 *
 * @example
 * savePretrained(peft, "./out/adapter");
 *
 * @example PiSSA, then a plain LoRA adapter for the original base model:
 * const peft = getPeftModel(model, { r: 16, initLoraWeights: "pissa" });
 * savePretrained(peft, "./out/pissa_init"); // the initial adapter, before any training
 * // ... train ...
 * savePretrained(peft, "./out/lora", { pathInitialModelForWeightConversion: "./out/pissa_init" });
 */
export function savePretrained(pm: PeftModel, dir: string, opts: SaveOptions = {}): string[] {
  const names = opts.adapterNames ?? [...pm.peftConfig.keys()];
  const written: string[] = [];
  for (const name of names) {
    const cfg = pm.peftConfig.get(name);
    if (!cfg) throw new PeftError(`savePretrained: adapter "${name}" does not exist`);
    const out = name === "default" ? dir : join(dir, name);
    const overrides = adapterSaveOverrides(pm, name, opts.baseModelNameOrPath);
    let saveCfg = cfg;
    let tensors = adapterStateDict(pm, name);
    const initDir = opts.pathInitialModelForWeightConversion;
    if (initDir !== undefined) {
      const initial = readAdapterDir(initDir);
      const conv = convertPissaToLora(pm, name, initial.tensors);
      writeFileSync(
        join(initDir, CONFIG_NAME),
        adapterConfigText(cfg, { ...overrides, initLoraWeights: true }),
      );
      saveCfg = conv.config;
      tensors = conv.tensors;
    }
    writeAdapterFolder(out, adapterConfigText(saveCfg, overrides), tensors);
    written.push(out);
  }
  return written;
}

/** adapter_config.json (parsed and checked) and every tensor of adapter_model.safetensors in `dir`. */
export function readAdapterDir(dir: string): {
  config: ReturnType<typeof parseLoraConfig>;
  tensors: Map<string, Tensor>;
} {
  const cfgPath = join(dir, CONFIG_NAME);
  if (!existsSync(cfgPath)) throw noAdapterConfigError(dir);
  const config = parseAdapterConfigText(cfgPath, readFileSync(cfgPath, "utf8"));
  const wPath = join(dir, WEIGHTS_NAME);
  if (!existsSync(wPath)) throw noAdapterWeightsError(dir, existsSync(join(dir, "adapter_model.bin")));
  const f = openSafetensors(wPath);
  try {
    const tensors = new Map<string, Tensor>();
    for (const n of f.names()) tensors.set(n, f.tensor(n));
    return { config, tensors };
  } finally {
    f.close();
  }
}

export interface LoadOptions {
  adapterName?: string;
  /** Keep the loaded adapter trainable (default false: inference). */
  isTrainable?: boolean;
}

/** Adds the adapter in `dir` to an existing PeftModel. */
export function loadAdapter(pm: PeftModel, dir: string, opts: LoadOptions = {}): AdapterLoadReport {
  const name = opts.adapterName ?? "default";
  const { config, tensors } = readAdapterDir(dir);
  config.inferenceMode = !opts.isTrainable;
  return loadAdapterTensors(pm, name, config, tensors, { isTrainable: opts.isTrainable, where: dir });
}

/**
 * PEFT's PeftModel.from_pretrained: wraps `model` and loads the adapter in `dir`.
 *
 * @example
 * const peft = fromPretrained(model, "./out/adapter");
 */
export function fromPretrained<M extends BaseModel>(
  model: M,
  dir: string,
  opts: LoadOptions = {},
): PeftModel<M> {
  const pm = new PeftModel(model);
  loadAdapter(pm, dir, opts);
  return pm;
}
