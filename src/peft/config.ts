// LoraConfig: PEFT's fields and defaults in camelCase, and the one place that converts
// to and from adapter_config.json's snake_case.
import { INITS_LOADED_AS_LORA, unsupportedField } from "./config-unsupported.js";
import { PeftError } from "./errors.js";

export type LoraBias = "none" | "all" | "lora_only";
/** true = Kaiming-uniform A and B = 0; "gaussian" = A ~ N(0, 1/r), B = 0; false = both random (tests only). */
export type InitLoraWeights = boolean | "gaussian" | "pissa" | `pissa_niter_${number}`;
export type TaskType =
  | "CAUSAL_LM"
  | "SEQ_CLS"
  | "SEQ_2_SEQ_LM"
  | "TOKEN_CLS"
  | "QUESTION_ANS"
  | "FEATURE_EXTRACTION";

export interface LoraConfig {
  /** Rank of the update B·A (PEFT default 8). */
  r: number;
  /** Scale numerator: the update is multiplied by loraAlpha / r (or / √r with useRslora). Default 8. */
  loraAlpha: number;
  /**
   * Which modules get an adapter: a list of names (a module matches when its full name
   * equals one or ends with "." + it), a regex string matched against the full module name,
   * "all-linear" (every linear layer but the output head), or null for the architecture's
   * default (q_proj, v_proj for LLaMA-family models).
   */
  targetModules: string[] | string | null;
  /** Modules to leave out, in the same forms as targetModules. */
  excludeModules: string[] | string | null;
  loraDropout: number;
  /** Set for layers that store W as (in, out) (GPT-2's Conv1D). lorakit's Linear is (out, in). */
  fanInFanOut: boolean;
  /** Which biases train: none, all of the model's, or those of adapted layers. */
  bias: LoraBias;
  /** Scale α/√r instead of α/r (Kalajdzievski 2023). */
  useRslora: boolean;
  /** Modules trained in full and saved with the adapter (e.g. lm_head). */
  modulesToSave: string[] | null;
  initLoraWeights: InitLoraWeights;
  /** Only these layer indices get adapters. */
  layersToTransform: number[] | number | null;
  /** The name of the layer list ("layers") used with layersToTransform. */
  layersPattern: string[] | string | null;
  /** Per-module rank overrides: key (regex / suffix of the module name) → r. */
  rankPattern: Record<string, number>;
  /** Per-module alpha overrides. */
  alphaPattern: Record<string, number>;
  useDora: boolean;
  /** Train a bias on lora_B (PEFT's lora_bias). */
  loraBias: boolean;
  taskType: TaskType | null;
  baseModelNameOrPath: string | null;
  revision: string | null;
  inferenceMode: boolean;
}

/** PEFT's defaults (peft.LoraConfig), each documented on the interface above. */
export const LORA_CONFIG_DEFAULTS: Readonly<LoraConfig> = Object.freeze({
  r: 8,
  loraAlpha: 8,
  targetModules: null,
  excludeModules: null,
  loraDropout: 0,
  fanInFanOut: false,
  bias: "none",
  useRslora: false,
  modulesToSave: null,
  initLoraWeights: true,
  layersToTransform: null,
  layersPattern: null,
  rankPattern: {},
  alphaPattern: {},
  useDora: false,
  loraBias: false,
  taskType: "CAUSAL_LM",
  baseModelNameOrPath: null,
  revision: null,
  inferenceMode: false,
});

/** The default target modules per model type, as PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING. */
export const DEFAULT_TARGET_MODULES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  llama: ["q_proj", "v_proj"],
  mistral: ["q_proj", "v_proj"],
  qwen2: ["q_proj", "v_proj"],
});

function isPositiveInt(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v > 0;
}

const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

const isStringList = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((x) => typeof x === "string" && x !== "");

/**
 * The JSON type of every field: a config file is untrusted, and JavaScript's truthiness would
 * otherwise read `"use_rslora": "no"` as true or crash later on `"target_modules": 5`.
 */
function checkFieldTypes(c: LoraConfig): void {
  const bad = (field: string, v: unknown, want: string) =>
    new PeftError(`\`${field}\` must be ${want}, got ${show(v)}`);
  for (const [field, v] of [
    ["fan_in_fan_out", c.fanInFanOut],
    ["use_rslora", c.useRslora],
    ["use_dora", c.useDora],
    ["lora_bias", c.loraBias],
    ["inference_mode", c.inferenceMode],
  ] as const)
    if (typeof v !== "boolean") throw bad(field, v, "true or false");
  for (const [field, v] of [
    ["target_modules", c.targetModules],
    ["exclude_modules", c.excludeModules],
    ["layers_pattern", c.layersPattern],
  ] as const)
    if (v !== null && typeof v !== "string" && !isStringList(v))
      throw bad(field, v, "a list of module names, a regular expression string, or null");
  if (c.modulesToSave !== null && !isStringList(c.modulesToSave))
    throw bad("modules_to_save", c.modulesToSave, "a list of module names or null");
  const lt = c.layersToTransform;
  const isIndex = (x: unknown) => typeof x === "number" && Number.isInteger(x) && x >= 0;
  if (lt !== null && !isIndex(lt) && !(Array.isArray(lt) && lt.every(isIndex)))
    throw bad("layers_to_transform", lt, "a layer index, a list of layer indices, or null");
  for (const [field, v] of [
    ["rank_pattern", c.rankPattern],
    ["alpha_pattern", c.alphaPattern],
  ] as const)
    if (v === null || typeof v !== "object" || Array.isArray(v))
      throw bad(field, v, "an object of pattern → number");
  if (typeof c.loraDropout !== "number") throw bad("lora_dropout", c.loraDropout, "a number in [0, 1)");
  if (typeof c.bias !== "string") throw bad("bias", c.bias, '"none", "all" or "lora_only"');
  for (const [field, v] of [
    ["task_type", c.taskType],
    ["base_model_name_or_path", c.baseModelNameOrPath],
    ["revision", c.revision],
  ] as const)
    if (v !== null && typeof v !== "string") throw bad(field, v, "a string or null");
}

/** Fills defaults and checks every field, with messages in PEFT's words where PEFT has them. */
export function loraConfig(partial: Partial<LoraConfig> = {}): LoraConfig {
  const c: LoraConfig = { ...LORA_CONFIG_DEFAULTS, ...partial };
  for (const [k, v] of Object.entries(partial))
    if (v === undefined)
      (c as unknown as Record<string, unknown>)[k] = (
        LORA_CONFIG_DEFAULTS as unknown as Record<string, unknown>
      )[k];
  checkFieldTypes(c);
  if (!isPositiveInt(c.r))
    throw new PeftError(`\`r\` should be a positive integer value but the value passed is ${c.r}`);
  if (typeof c.loraAlpha !== "number" || !Number.isFinite(c.loraAlpha))
    throw new PeftError(`\`lora_alpha\` must be a finite number, got ${c.loraAlpha}`);
  if (!(c.loraDropout >= 0 && c.loraDropout < 1))
    throw new PeftError(`\`lora_dropout\` must be in [0, 1), got ${c.loraDropout}`);
  if (!["none", "all", "lora_only"].includes(c.bias))
    throw new PeftError(`\`bias\` must be "none", "all" or "lora_only", got ${JSON.stringify(c.bias)}`);
  if (typeof c.targetModules === "string" && c.layersToTransform !== null)
    throw new PeftError("`layers_to_transform` cannot be used when `target_modules` is a str.");
  if (typeof c.targetModules === "string" && c.layersPattern !== null)
    throw new PeftError("`layers_pattern` cannot be used when `target_modules` is a str.");
  if (c.layersPattern !== null && c.layersToTransform === null)
    throw new PeftError("When `layers_pattern` is specified, `layers_to_transform` must also be specified.");
  for (const [k, v] of Object.entries(c.rankPattern))
    if (!isPositiveInt(v))
      throw new PeftError(`rank_pattern[${JSON.stringify(k)}] must be a positive integer, got ${v}`);
  for (const [k, v] of Object.entries(c.alphaPattern))
    if (typeof v !== "number" || !Number.isFinite(v))
      throw new PeftError(`alpha_pattern[${JSON.stringify(k)}] must be a number, got ${v}`);
  const init = c.initLoraWeights;
  if (
    !(
      typeof init === "boolean" ||
      init === "gaussian" ||
      init === "pissa" ||
      /^pissa_niter_\d+$/.test(String(init))
    )
  )
    throw new PeftError(
      `init_lora_weights ${JSON.stringify(init)} is not supported; use true, false, "gaussian", "pissa" or "pissa_niter_N"${INITS_LOADED_AS_LORA.has(String(init)) ? " (lorakit cannot run this initialisation, but it loads adapters trained with it as plain LoRA)" : ""}`,
    );
  if (Array.isArray(c.targetModules) && c.targetModules.length === 0)
    throw new PeftError(
      "`target_modules` is an empty list; name at least one module (or use null for the default)",
    );
  return c;
}

/** adapter_config.json key ↔ LoraConfig field. The order here is irrelevant: files are written with sorted keys. */
const KEY_MAP: Record<string, keyof LoraConfig> = {
  r: "r",
  lora_alpha: "loraAlpha",
  target_modules: "targetModules",
  exclude_modules: "excludeModules",
  lora_dropout: "loraDropout",
  fan_in_fan_out: "fanInFanOut",
  bias: "bias",
  use_rslora: "useRslora",
  modules_to_save: "modulesToSave",
  init_lora_weights: "initLoraWeights",
  layers_to_transform: "layersToTransform",
  layers_pattern: "layersPattern",
  rank_pattern: "rankPattern",
  alpha_pattern: "alphaPattern",
  use_dora: "useDora",
  lora_bias: "loraBias",
  task_type: "taskType",
  base_model_name_or_path: "baseModelNameOrPath",
  revision: "revision",
  inference_mode: "inferenceMode",
};

/**
 * Fields PEFT 0.14 writes that lorakit does not use; written with PEFT's defaults so that
 * PEFT versions which refuse unknown or missing keys read the file.
 */
const PASSIVE_FIELDS: Record<string, unknown> = {
  auto_mapping: null,
  eva_config: null,
  layer_replication: null,
  loftq_config: {},
  megatron_config: null,
  megatron_core: "megatron.core",
};

/**
 * Reads adapter_config.json (already parsed). Unknown keys are ignored, as PEFT does;
 * fields that change the computation and that lorakit does not have are refused by name
 * (config-unsupported.ts); adapters that EVA, OLoRA, CorDA or LoftQ initialised load as LoRA.
 */
export function parseLoraConfig(json: unknown, where = "adapter_config.json"): LoraConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json))
    throw new PeftError(`${where}: expected a JSON object`);
  const o = json as Record<string, unknown>;
  const peftType = o.peft_type ?? "LORA";
  if (peftType !== "LORA")
    throw new PeftError(
      `${where}: peft_type ${JSON.stringify(peftType)} is not a LoRA adapter (lorakit reads "LORA" here)`,
    );
  const partial: Record<string, unknown> = {};
  for (const [k, field] of Object.entries(KEY_MAP)) if (k in o && o[k] !== undefined) partial[field] = o[k];
  if (Array.isArray(partial.targetModules))
    partial.targetModules = [...(partial.targetModules as string[])].sort();
  if (partial.rankPattern === null) partial.rankPattern = {};
  if (partial.alphaPattern === null) partial.alphaPattern = {};
  const unsupported = unsupportedField(o);
  if (unsupported !== null) throw new PeftError(`${where}: ${unsupported}`);
  // EVA, OLoRA, CorDA, LoftQ, … only chose the starting factors: the trained file is plain LoRA.
  if (typeof partial.initLoraWeights === "string" && INITS_LOADED_AS_LORA.has(partial.initLoraWeights))
    partial.initLoraWeights = true;
  try {
    return loraConfig(partial as Partial<LoraConfig>);
  } catch (e) {
    throw new PeftError(`${where}: ${(e as Error).message}`, { cause: e });
  }
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/**
 * adapter_config.json content: every PEFT 0.14 LoraConfig field, sorted keys, peft_type
 * "LORA". target_modules lists are written sorted (PEFT stores them as a set).
 */
export function loraConfigToJson(
  c: LoraConfig,
  overrides: Partial<LoraConfig> = {},
): Record<string, unknown> {
  const cfg = { ...c, ...overrides };
  const out: Record<string, unknown> = { ...PASSIVE_FIELDS, peft_type: "LORA" };
  for (const [k, field] of Object.entries(KEY_MAP)) {
    let v: unknown = cfg[field];
    if (Array.isArray(v) && (field === "targetModules" || field === "excludeModules"))
      v = [...(v as string[])].sort();
    out[k] = v;
  }
  return sortKeys(out) as Record<string, unknown>;
}
