// The PEFT adapter format in memory: state-dict keys as PEFT saves them
// (base_model.model.<path>.lora_A.weight, the adapter name removed) and back. DoRA's
// magnitude is saved as PEFT does, `base_model.model.<path>.lora_magnitude_vector` with no
// ".weight" (LoraModel._get_adapter_state_dict strips it; _remap_adapter_state_dict_for_load
// appends it again), next to `use_dora: true` in the config.
import { fmtShape } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import type { LoraConfig } from "./config.js";
import { PeftError } from "./errors.js";

import type { PeftModel } from "./model.js";

export const KEY_PREFIX = "base_model.model.";

/** The tensors PEFT's get_peft_model_state_dict returns for one adapter. */
export function adapterStateDict(pm: PeftModel, name: string): Map<string, Tensor> {
  const cfg = pm.peftConfig.get(name);
  if (!cfg) throw new PeftError(`adapter "${name}" does not exist`);
  const out = new Map<string, Tensor>();
  for (const [path, l] of pm.loraLayers()) {
    if (!l.hasAdapter(name)) continue;
    out.set(`${KEY_PREFIX}${path}.lora_A.weight`, l.lora_A.get(name)!.weight);
    const b = l.lora_B.get(name)!;
    out.set(`${KEY_PREFIX}${path}.lora_B.weight`, b.weight);
    if (b.bias) out.set(`${KEY_PREFIX}${path}.lora_B.bias`, b.bias);
    const mag = l.lora_magnitude_vector.get(name);
    if (mag) out.set(`${KEY_PREFIX}${path}.lora_magnitude_vector`, mag.weight);
    if (cfg.bias === "lora_only") {
      const bias = l.base_layer.param("bias");
      if (bias) out.set(`${KEY_PREFIX}${path}.base_layer.bias`, bias);
    }
  }
  // modules_to_save: PEFT saves the adapter's copy under the module's own key
  // (…lm_head.modules_to_save.<name>.weight → …lm_head.weight).
  for (const [path, w] of pm.savedModules()) {
    const copy = w.modules_to_save.get(name);
    if (copy) for (const [p, t] of copy.namedParameters()) out.set(`${KEY_PREFIX}${path}.${p}`, t);
  }
  if (cfg.bias === "all")
    // The adapters' own biases (lora_B.<name>.bias) are saved above, under PEFT's keys.
    for (const [p, t] of pm.baseModel.namedParameters())
      if (p.endsWith(".bias") && !/\.(lora_(A|B|magnitude_vector)|modules_to_save)\./.test(p))
        out.set(`${KEY_PREFIX}${p}`, t);
  return out;
}

export interface AdapterLoadReport {
  missing: string[];
  unexpected: string[];
}

/**
 * Groups a PEFT state dict by module path: {A, B, bBias, magnitude} per LoRA module, plus
 * other tensors. `magnitude` is DoRA's lora_magnitude_vector (PEFT's key, or the
 * in-memory form with ".weight").
 */
export function splitAdapterTensors(tensors: ReadonlyMap<string, Tensor>, where: string) {
  const lora = new Map<string, { A?: Tensor; B?: Tensor; bBias?: Tensor; magnitude?: Tensor }>();
  const other = new Map<string, Tensor>();
  for (const [key, t] of tensors) {
    if (!key.startsWith(KEY_PREFIX))
      throw new PeftError(
        `${where}: tensor "${key}" does not start with "${KEY_PREFIX}" (not a PEFT adapter key)`,
      );
    const k = key.slice(KEY_PREFIX.length);
    const mag = /^(.*)\.lora_magnitude_vector(\.weight)?$/.exec(k);
    if (mag) {
      const e = lora.get(mag[1]) ?? {};
      e.magnitude = t;
      lora.set(mag[1], e);
      continue;
    }
    const m = /^(.*)\.(lora_A|lora_B)\.(weight|bias)$/.exec(k);
    if (!m) {
      if (/\.lora_(A|B|magnitude_vector|embedding_[AB])\b/.test(k))
        throw new PeftError(
          `${where}: tensor "${key}" is a LoRA variant lorakit cannot load here (embedding LoRA)`,
        );
      other.set(k, t);
      continue;
    }
    const [, path, which, kind] = m;
    const e = lora.get(path) ?? {};
    if (which === "lora_A" && kind === "weight") e.A = t;
    else if (which === "lora_B" && kind === "weight") e.B = t;
    else if (which === "lora_B" && kind === "bias") e.bBias = t;
    else throw new PeftError(`${where}: unexpected tensor "${key}"`);
    lora.set(path, e);
  }
  return { lora, other };
}

/**
 * Adds adapter `name` to `pm` from PEFT tensors and its config; reports keys that match no
 * module and modules of the config that have no tensors. Shapes are checked against the
 * model with both shapes in the message.
 */
export function loadAdapterTensors(
  pm: PeftModel,
  name: string,
  config: LoraConfig,
  tensors: ReadonlyMap<string, Tensor>,
  opts: { isTrainable?: boolean; where?: string } = {},
): AdapterLoadReport {
  const where = opts.where ?? `adapter "${name}"`;
  const { lora, other } = splitAdapterTensors(tensors, where);
  if (!config.useDora)
    for (const [path, e] of lora)
      if (e.magnitude)
        throw new PeftError(
          `${where}: ${KEY_PREFIX}${path}.lora_magnitude_vector is a DoRA magnitude but the config has use_dora: false — set "use_dora": true in adapter_config.json if this is a DoRA adapter`,
        );
  const missing: string[] = [];
  const used = new Set<string>();
  pm.addAdapter(name, config, {
    initFor: (path, layer, r) => {
      const e = lora.get(path);
      if (!e?.A || !e.B) {
        missing.push(`${KEY_PREFIX}${path}.lora_${e?.A ? "B" : "A"}.weight`);
        return null;
      }
      if (config.useDora && !e.magnitude) {
        missing.push(`${KEY_PREFIX}${path}.lora_magnitude_vector`);
        return null;
      }
      if (e.magnitude && (e.magnitude.shape.length !== 1 || e.magnitude.shape[0] !== layer.outFeatures))
        throw new PeftError(
          `${where}: ${path}.lora_magnitude_vector has shape ${fmtShape(e.magnitude.shape)} but the model needs [${layer.outFeatures}]`,
        );
      used.add(path);
      if (e.A.shape[0] !== r || e.A.shape[1] !== layer.inFeatures)
        throw new PeftError(
          `${where}: ${path}.lora_A.weight has shape ${fmtShape(e.A.shape)} but the model needs [${r}, ${layer.inFeatures}] (r from the adapter config; in_features from the base model) — was it trained on another base model?`,
        );
      if (e.B.shape[0] !== layer.outFeatures || e.B.shape[1] !== r)
        throw new PeftError(
          `${where}: ${path}.lora_B.weight has shape ${fmtShape(e.B.shape)} but the model needs [${layer.outFeatures}, ${r}]`,
        );
      return { A: e.A.to("f32"), B: e.B.to("f32") };
    },
  });
  if (missing.length) {
    pm.deleteAdapter(name);
    throw new PeftError(
      `${where}: ${missing.length} LoRA tensor(s) missing for modules the config targets, e.g. ${missing.slice(0, 3).join(", ")}`,
    );
  }
  const wrappers = [...pm.savedModules()];
  const savedCopyOf = (k: string) =>
    wrappers.find(([path, wr]) => k.startsWith(`${path}.`) && wr.modules_to_save.has(name));
  const unexpected: string[] = [];
  for (const path of lora.keys()) if (!used.has(path)) unexpected.push(`${KEY_PREFIX}${path}.lora_A.weight`);
  for (const k of other.keys()) {
    if (savedCopyOf(k)) continue;
    let fits = k.endsWith(".bias");
    if (fits)
      try {
        pm.baseModel.getSubmodule(k.slice(0, -".bias".length));
      } catch {
        fits = false;
      }
    if (!fits) unexpected.push(KEY_PREFIX + k);
  }
  // One rule for every command and the server: tensors for modules the config does not
  // target mean the adapter is not what its config says; using the rest would be silently wrong.
  if (unexpected.length) {
    pm.deleteAdapter(name);
    throw new PeftError(
      `${where}: ${unexpected.length} tensor(s) belong to no module that the config targets (${unexpected.slice(0, 3).join(", ")}${unexpected.length > 3 ? ", …" : ""}) — fix target_modules in adapter_config.json, or was it trained on another base model?`,
    );
  }
  for (const [path, l] of pm.loraLayers()) {
    const e = lora.get(path);
    if (e?.bBias && l.hasAdapter(name)) {
      const b = l.lora_B.get(name)!;
      if (b.bias) b.bias.data.set(e.bBias.to("f32").data as Float32Array);
    }
    // DoRA: the saved magnitude replaces the one initialised from the weights.
    const mag = l.lora_magnitude_vector.get(name);
    if (e?.magnitude && mag) mag.weight.data.set(e.magnitude.to("f32").data as Float32Array);
  }
  for (const [k, t] of other) {
    const w = savedCopyOf(k);
    if (w) {
      const [path, wr] = w;
      const copy = wr.modules_to_save.get(name)!;
      const pname = k.slice(path.length + 1);
      const cur = copy.param(pname);
      if (!cur || cur.size !== t.size)
        throw new PeftError(
          `${where}: ${k} ${fmtShape(t.shape)} does not fit modules_to_save ${path} (${cur ? fmtShape(cur.shape) : `no ${pname}`})`,
        );
      copy.setParam(pname, t.to("f32"));
      continue;
    }
    const target = pm.baseModel.getSubmodule(k.slice(0, -".bias".length));
    const cur = target.param("bias");
    if (!cur || cur.size !== t.size)
      throw new PeftError(
        `${where}: bias ${k} ${fmtShape(t.shape)} does not fit the model (${cur ? fmtShape(cur.shape) : "no bias"})`,
      );
    target.setParam("bias", t.to("f32"));
  }
  if (!opts.isTrainable)
    for (const [, w] of pm.savedModules())
      for (const p of w.modules_to_save.get(name)?.parameters() ?? []) p.requiresGrad = false;
  if (!opts.isTrainable)
    for (const [, l] of pm.loraLayers())
      if (l.hasAdapter(name)) {
        l.lora_A.get(name)!.weight.requiresGrad = false;
        l.lora_B.get(name)!.weight.requiresGrad = false;
        for (const t of l.variants.get(name)?.parameters(l, name) ?? []) t.requiresGrad = false;
      }
  return { missing, unexpected };
}
