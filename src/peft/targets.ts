// Which modules get an adapter, and with what rank and alpha: PEFT's matching rules
// (check_target_module_exists, get_pattern_key, "all-linear") on module paths.

import { isLinearLike } from "../nn/layers.js";
import type { Module } from "../nn/module.js";
import type { LoraConfig } from "./config.js";
import { DEFAULT_TARGET_MODULES } from "./config.js";
import { PeftError } from "./errors.js";
import { LoraLinear } from "./lora/layer.js";
import { ModulesToSaveWrapper } from "./modules-to-save.js";
import { firstGroup, fullmatch } from "./regex.js";

/**
 * Module paths of the base model, skipping what lives inside a LoRA layer (its
 * base_layer and lora_A/lora_B children are never targets themselves).
 */
function* candidateModules(model: Module): IterableIterator<[string, Module]> {
  const inside: string[] = [];
  for (const [path, m] of model.namedModules()) {
    if (!path || inside.some((p) => path.startsWith(`${p}.`))) continue;
    if (m instanceof LoraLinear || m instanceof ModulesToSaveWrapper) inside.push(path);
    yield [path, m];
  }
}

function listMatch(list: readonly string[], key: string): boolean {
  return list.includes(key) || list.some((t) => key.endsWith(`.${t}`));
}

export function isExcluded(config: Pick<LoraConfig, "excludeModules">, key: string): boolean {
  const ex = config.excludeModules;
  if (!ex || (Array.isArray(ex) && ex.length === 0)) return false;
  return typeof ex === "string" ? fullmatch(ex, key, "exclude_modules") : listMatch(ex, key);
}

/** Layer index of a key like "model.layers.3.self_attn.q_proj" (PEFT's regexes). */
function layerIndex(key: string, layersPattern: string[] | string | null): number | null {
  const patterns =
    layersPattern === null ? [] : typeof layersPattern === "string" ? [layersPattern] : layersPattern;
  if (patterns.length === 0) {
    const m = /^.*\.[^.]*\.(\d+)\./.exec(key);
    return m ? Number(m[1]) : null;
  }
  for (const p of patterns) {
    const m = firstGroup(`.*\\.${p}\\.(\\d+)\\.`, key, "layers_pattern");
    if (m !== null) return Number(m);
  }
  return null;
}

/** PEFT's check_target_module_exists (exclusion first, then the target rule, then layers). */
export function matchesTarget(
  config: Pick<LoraConfig, "targetModules" | "excludeModules" | "layersToTransform" | "layersPattern">,
  targets: string[] | string,
  key: string,
): boolean {
  if (isExcluded(config, key)) return false;
  if (typeof targets === "string") return fullmatch(targets, key, "target_modules");
  if (targets.includes(key)) return true;
  let found = targets.some((t) => key.endsWith(`.${t}`));
  const idx = config.layersToTransform;
  const usingIdx = idx !== null && (Array.isArray(idx) ? idx.length > 0 : true);
  if (usingIdx && found) {
    const li = layerIndex(key, config.layersPattern);
    if (li === null) found = false;
    else found = typeof idx === "number" ? li === idx : (idx as number[]).includes(li);
  }
  return found;
}

/** The output head, which "all-linear" leaves out (PEFT checks the model's output embeddings). */
const OUTPUT_HEADS = new Set(["lm_head"]);

/**
 * Resolves null (per-architecture default) and "all-linear" (every linear layer's last
 * name segment, minus the output head) into what matching works on.
 */
export function resolveTargets(config: LoraConfig, model: Module, modelType?: string): string[] | string {
  const t = config.targetModules;
  if (t === null) {
    const d = modelType ? DEFAULT_TARGET_MODULES[modelType] : undefined;
    if (!d)
      throw new PeftError(
        `target_modules is null and there is no default for model type ${JSON.stringify(modelType ?? "unknown")}; name the modules (e.g. ["q_proj", "v_proj"] or "all-linear")`,
      );
    return [...d];
  }
  if (t === "all-linear") {
    const names = new Set<string>();
    for (const [path, m] of candidateModules(model)) {
      if (!isLinearLike(m)) continue;
      const last = path.split(".").pop()!;
      if (!OUTPUT_HEADS.has(last)) names.add(last);
    }
    return [...names].sort();
  }
  return t;
}

/** PEFT's get_pattern_key: the first pattern key that matches the end of the module name. */
export function patternKey(patterns: Record<string, unknown>, key: string): string | null {
  for (const p of Object.keys(patterns)) {
    if (p === key) return p;
    if (fullmatch(`(?:.*\\.)?(?:${p})`, key, `rank_pattern/alpha_pattern key ${JSON.stringify(p)}`)) return p;
  }
  return null;
}

/** The rank and alpha a module gets (rank_pattern / alpha_pattern over r / lora_alpha). */
export function rankAndAlpha(config: LoraConfig, key: string): { r: number; alpha: number } {
  const rk = patternKey(config.rankPattern, key);
  const ak = patternKey(config.alphaPattern, key);
  return {
    r: rk === null ? config.r : config.rankPattern[rk],
    alpha: ak === null ? config.loraAlpha : config.alphaPattern[ak],
  };
}

/** Module paths that the config targets; fails like PEFT when none do. */
export function findTargets(config: LoraConfig, model: Module, modelType?: string): string[] {
  const targets = resolveTargets(config, model, modelType);
  const found: string[] = [];
  for (const [path, m] of candidateModules(model)) {
    if (!matchesTarget(config, targets, path)) continue;
    if (!isLinearLike(m))
      throw new PeftError(
        `Target module ${path} (${m.constructor.name}) is not supported. Currently, only linear layers can take a LoRA adapter; target their linear children instead (e.g. "${path}.q_proj")`,
      );
    found.push(path);
  }
  if (found.length === 0) {
    const shown =
      typeof targets === "string" ? JSON.stringify(targets) : `{${targets.map((t) => `'${t}'`).join(", ")}}`;
    throw new PeftError(
      `Target modules ${shown} not found in the base model. Please check the target modules and try again.`,
    );
  }
  for (const key of Object.keys(config.rankPattern))
    if (!found.some((p) => patternKey({ [key]: 0 }, p) !== null))
      throw new PeftError(`rank_pattern key ${JSON.stringify(key)} matches none of the adapted modules`);
  for (const key of Object.keys(config.alphaPattern))
    if (!found.some((p) => patternKey({ [key]: 0 }, p) !== null))
      throw new PeftError(`alpha_pattern key ${JSON.stringify(key)} matches none of the adapted modules`);
  return found;
}
