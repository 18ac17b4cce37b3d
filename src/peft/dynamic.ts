// "Dynamic LoRA" from the seed article: the rank (and alpha) of each decoder layer chosen by
// its depth, expressed as PEFT rank_pattern / alpha_pattern so that the adapter is a plain
// LoRA adapter that PEFT, vLLM and lorakit load without knowing about the rule.
import { PeftError } from "./errors.js";

/** Rank and alpha for the layer at `depth` (0-based) of a model with `numLayers` layers. */
export type DepthRule = (depth: number, numLayers: number) => { r: number; alpha: number };

/**
 * The seed article's rule: `rank = min(64, 4 + depth·4)` ("the deeper the layer, the larger
 * the rank"), depth the 0-based layer index. The article gives no alpha for it; its
 * practice section says lora_alpha is "usually r or 2r", and this rule takes α = 2r, which
 * keeps the scale α/r = 2 the same in every layer: deeper layers get more capacity, not a
 * larger update multiplier, so the learning rate tuned for one layer suits all.
 */
export const seedRule: DepthRule = (depth) => {
  const r = Math.min(64, 4 + depth * 4);
  return { r, alpha: 2 * r };
};

export interface DynamicRankOptions {
  /** The depth rule (default `seedRule`). */
  rule?: DepthRule;
  /**
   * Module names the patterns cover (e.g. ["q_proj", "v_proj"]); default every adapted
   * module of the layer. Use the same names as the config's target_modules.
   */
  targetModules?: readonly string[];
  /** The name of the decoder layer list in module paths (default "layers"). */
  layersPattern?: string;
  /**
   * Only these layers get patterns (default all). Match the config's layers_to_transform:
   * a pattern that matches no adapted module is an error when the adapter is added.
   */
  layers?: readonly number[];
}

export interface DynamicPatterns {
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Per-layer rank_pattern / alpha_pattern from a depth rule. Each key is a regex for one
 * layer, `layers\.<i>\.(?:.+\.)?(?:q_proj|v_proj)`, which PEFT's get_pattern_key (and
 * lorakit's patternKey) match against the end of a module path such as
 * `model.layers.3.self_attn.q_proj`: anchored at a dot, so layer 3 never matches layer 13.
 *
 * @example
 * const { rankPattern, alphaPattern } = dynamicRankPattern(cfg.numHiddenLayers, {
 *   targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"],
 * });
 * const pm = getPeftModel(model, { r: 4, loraAlpha: 8, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"], rankPattern, alphaPattern });
 */
export function dynamicRankPattern(numLayers: number, opts: DynamicRankOptions = {}): DynamicPatterns {
  if (!Number.isInteger(numLayers) || numLayers <= 0)
    throw new PeftError(`dynamicRankPattern: numLayers must be a positive integer, got ${numLayers}`);
  const rule = opts.rule ?? seedRule;
  const layersPattern = opts.layersPattern ?? "layers";
  const names = opts.targetModules;
  if (names && names.length === 0)
    throw new PeftError("dynamicRankPattern: targetModules is empty; name modules or leave it out for all");
  const tail = names ? `(?:.+\\.)?(?:${names.map(escapeRegex).join("|")})` : ".+";
  const layers = opts.layers ?? Array.from({ length: numLayers }, (_, i) => i);
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const i of layers) {
    if (!Number.isInteger(i) || i < 0 || i >= numLayers)
      throw new PeftError(`dynamicRankPattern: layer ${i} is outside 0…${numLayers - 1}`);
    const { r, alpha } = rule(i, numLayers);
    if (!Number.isInteger(r) || r <= 0)
      throw new PeftError(
        `dynamicRankPattern: the rule gave rank ${r} for layer ${i}; ranks are positive integers`,
      );
    if (typeof alpha !== "number" || !Number.isFinite(alpha))
      throw new PeftError(
        `dynamicRankPattern: the rule gave alpha ${alpha} for layer ${i}; expected a finite number`,
      );
    const key = `${escapeRegex(layersPattern)}\\.${i}\\.${tail}`;
    rankPattern[key] = r;
    alphaPattern[key] = alpha;
  }
  return { rankPattern, alphaPattern };
}
