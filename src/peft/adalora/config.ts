// AdaLoraConfig: PEFT's AdaLoraConfig (peft/tuners/adalora/config.py) in camelCase, and the
// one place that converts it to and from adapter_config.json with peft_type "ADALORA".
import type { LoraConfig } from "../config.js";
import { LORA_CONFIG_DEFAULTS, loraConfig, loraConfigToJson, parseLoraConfig } from "../config.js";
import { PeftError } from "../errors.js";

/**
 * Kept singular triplets per module, as PEFT stores them: key "<module path>.lora_E"
 * (adapter name removed when saved), value one boolean per triplet of init_r.
 */
export type AdaLoraRankPattern = Record<string, boolean[]>;

export interface AdaLoraConfig extends Omit<LoraConfig, "rankPattern"> {
  /** Target average rank per module after pruning (PEFT default 8). */
  targetR: number;
  /** Initial rank of every module (PEFT default 12). */
  initR: number;
  /** Steps of initial warm-up before any pruning (default 0). */
  tinit: number;
  /** Steps of final fine-tuning with the rank pattern fixed (default 0). */
  tfinal: number;
  /** Steps between two budget allocations (default 1). */
  deltaT: number;
  /** EMA coefficient for the sensitivity (default 0.85). */
  beta1: number;
  /** EMA coefficient for the uncertainty (default 0.85). */
  beta2: number;
  /** Weight of the orthogonal regulariser on P and Q (default 0.5). */
  orthRegWeight: number;
  /** Total training steps; required (PEFT raises without it). */
  totalStep: number | null;
  /** The allocator's latest mask (null before the first allocation). */
  rankPattern: AdaLoraRankPattern | null;
}

/** PEFT's defaults (peft.AdaLoraConfig): every LoraConfig default plus the AdaLoRA fields. */
export const ADALORA_CONFIG_DEFAULTS: Readonly<AdaLoraConfig> = Object.freeze({
  ...LORA_CONFIG_DEFAULTS,
  targetR: 8,
  initR: 12,
  tinit: 0,
  tfinal: 0,
  deltaT: 1,
  beta1: 0.85,
  beta2: 0.85,
  orthRegWeight: 0.5,
  totalStep: null,
  rankPattern: null,
});

const ADA_KEYS: Record<string, keyof AdaLoraConfig> = {
  target_r: "targetR",
  init_r: "initR",
  tinit: "tinit",
  tfinal: "tfinal",
  deltaT: "deltaT",
  beta1: "beta1",
  beta2: "beta2",
  orth_reg_weight: "orthRegWeight",
  total_step: "totalStep",
};

function isPositiveInt(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v > 0;
}

/** Fills defaults and checks every field, with PEFT's messages where PEFT has them. */
export function adaLoraConfig(partial: Partial<AdaLoraConfig> = {}): AdaLoraConfig {
  const c: AdaLoraConfig = { ...ADALORA_CONFIG_DEFAULTS };
  for (const [k, v] of Object.entries(partial))
    if (v !== undefined) (c as unknown as Record<string, unknown>)[k] = v;
  // The LoRA part is validated by loraConfig (r is unused by AdaLoRA, as in PEFT).
  const {
    rankPattern,
    targetR,
    initR,
    tinit,
    tfinal,
    deltaT,
    beta1,
    beta2,
    orthRegWeight,
    totalStep,
    ...lora
  } = c;
  Object.assign(c, loraConfig({ ...lora, rankPattern: {} }), { rankPattern });
  if (c.useDora) throw new PeftError("ADALORA does not support DoRA.");
  if (!isPositiveInt(initR)) throw new PeftError(`init_r must be a positive integer, got ${initR}`);
  if (!(Number.isInteger(targetR) && targetR >= 0))
    throw new PeftError(`target_r must be a non-negative integer, got ${targetR}`);
  if (targetR > initR)
    throw new PeftError(`target_r (${targetR}) must not exceed init_r (${initR}): AdaLoRA only prunes`);
  if (!isPositiveInt(deltaT)) throw new PeftError(`deltaT must be a positive integer, got ${deltaT}`);
  for (const [n, b] of [
    ["beta1", beta1],
    ["beta2", beta2],
  ] as const)
    if (!(b > 0 && b < 1)) throw new PeftError(`${n} must be in (0, 1), got ${b}`);
  if (totalStep === null || !(totalStep > 0))
    throw new PeftError("AdaLoRA does not work when `total_step` is None, supply a value > 0.");
  if (!(Number.isInteger(tinit) && tinit >= 0 && Number.isInteger(tfinal) && tfinal >= 0))
    throw new PeftError(`tinit and tfinal must be non-negative integers, got ${tinit} and ${tfinal}`);
  if (tinit >= totalStep - tfinal)
    throw new PeftError(
      "The supplied schedule values don't allow for a budgeting phase. Decrease `tfinal`/`tinit` or increase `total_step`.",
    );
  if (!(orthRegWeight > 0))
    throw new PeftError(`orth_reg_weight should be greater than 0, got ${orthRegWeight}`);
  return c;
}

/** adapter_config.json content as PEFT writes an AdaLoraConfig: sorted keys, peft_type "ADALORA". */
export function adaLoraConfigToJson(
  c: AdaLoraConfig,
  overrides: Partial<AdaLoraConfig> = {},
): Record<string, unknown> {
  const cfg = { ...c, ...overrides };
  const base = loraConfigToJson({ ...cfg, rankPattern: {} } as LoraConfig);
  const out: Record<string, unknown> = { ...base, peft_type: "ADALORA", rank_pattern: cfg.rankPattern };
  for (const [k, f] of Object.entries(ADA_KEYS)) out[k] = cfg[f];
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(out).sort()) sorted[k] = out[k];
  return sorted;
}

/** Reads an ADALORA adapter_config.json (already parsed). */
export function parseAdaLoraConfig(json: unknown, where = "adapter_config.json"): AdaLoraConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json))
    throw new PeftError(`${where}: expected a JSON object`);
  const o = json as Record<string, unknown>;
  if (o.peft_type !== "ADALORA")
    throw new PeftError(`${where}: peft_type ${JSON.stringify(o.peft_type)} is not "ADALORA"`);
  const lora = parseLoraConfig({ ...o, peft_type: "LORA", rank_pattern: {} }, where);
  const partial: Partial<AdaLoraConfig> = { ...lora, rankPattern: null };
  for (const [k, f] of Object.entries(ADA_KEYS))
    if (k in o && o[k] !== undefined && o[k] !== null) (partial as Record<string, unknown>)[f] = o[k];
  const rp = o.rank_pattern;
  if (rp !== null && rp !== undefined) {
    if (typeof rp !== "object" || Array.isArray(rp))
      throw new PeftError(`${where}: rank_pattern must map "<module>.lora_E" to a list of booleans`);
    for (const [k, v] of Object.entries(rp as Record<string, unknown>))
      if (!Array.isArray(v) || !v.every((b) => typeof b === "boolean"))
        throw new PeftError(`${where}: rank_pattern[${JSON.stringify(k)}] must be a list of booleans`);
    partial.rankPattern = rp as AdaLoraRankPattern;
  }
  try {
    return adaLoraConfig(partial);
  } catch (e) {
    throw new PeftError(`${where}: ${(e as Error).message}`, { cause: e });
  }
}
