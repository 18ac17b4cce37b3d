// AdaLoRA adapter folders on disk, as PEFT's save_pretrained writes them for an
// AdaLoraConfig: adapter_config.json (peft_type "ADALORA", rank_pattern of kept triplets) +
// adapter_model.safetensors (lora_A / lora_E / lora_B resized to the kept triplets).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Tensor } from "../../../core/tensor.js";
import { openSafetensors } from "../../../io/node/index.js";
import { PeftError } from "../../errors.js";
import type { BaseModel } from "../../model.js";
import { CONFIG_NAME, WEIGHTS_NAME } from "../../node/io.js";
import { writeAdapterFolder } from "../../node/write-adapter.js";
import { adaLoraConfigToJson, parseAdaLoraConfig } from "../config.js";
import { AdaLoraModel, adaLoraStateDict, loadAdaLoraTensors, savedRankPattern } from "../model.js";

/** Writes the adapter as PEFT does ("default" into dir, others into dir/<name>). */
export function saveAdaLora(
  m: AdaLoraModel,
  dir: string,
  opts: { adapterName?: string; baseModelNameOrPath?: string | null } = {},
): string {
  const name = opts.adapterName ?? m.trainableAdapterName ?? "default";
  const cfg = m.peftConfig.get(name);
  if (!cfg) throw new PeftError(`saveAdaLora: adapter "${name}" does not exist`);
  const out = name === "default" ? dir : join(dir, name);
  const json = adaLoraConfigToJson(cfg, {
    inferenceMode: true,
    rankPattern: savedRankPattern(cfg.rankPattern, name),
    baseModelNameOrPath: opts.baseModelNameOrPath ?? cfg.baseModelNameOrPath,
  });
  writeAdapterFolder(out, JSON.stringify(json, null, 2), adaLoraStateDict(m, name));
  return out;
}

/** PEFT's PeftModel.from_pretrained for an AdaLoRA adapter folder. */
export function loadAdaLora<M extends BaseModel>(
  model: M,
  dir: string,
  opts: { adapterName?: string; isTrainable?: boolean } = {},
): AdaLoraModel<M> {
  const cfgPath = join(dir, CONFIG_NAME);
  if (!existsSync(cfgPath)) throw new PeftError(`${dir}: no ${CONFIG_NAME}`);
  const config = parseAdaLoraConfig(JSON.parse(readFileSync(cfgPath, "utf8")), cfgPath);
  config.inferenceMode = !opts.isTrainable;
  const f = openSafetensors(join(dir, WEIGHTS_NAME));
  const tensors = new Map<string, Tensor>();
  try {
    for (const n of f.names()) tensors.set(n, f.tensor(n));
  } finally {
    f.close();
  }
  const m = new AdaLoraModel(model);
  loadAdaLoraTensors(m, opts.adapterName ?? "default", config, tensors, dir);
  return m;
}
