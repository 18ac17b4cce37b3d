// LoRA parameter counts from a config.json alone (no weights): what an adapter will cost
// before a model is downloaded, and the seed article's worked numbers for LLaMA-7B.
import type { LlamaConfig } from "../models/llama/config.js";
import { parseLlamaConfig } from "../models/llama/config.js";
import type { LoraConfig } from "./config.js";
import { PeftError } from "./errors.js";
import { matchesTarget, patternKey } from "./targets.js";

export interface CountOptions {
  /** Default rank. */
  r: number;
  /** Module names, a regex over full module paths, or "all-linear" (every linear but lm_head). */
  targetModules: readonly string[] | string;
  excludeModules?: readonly string[] | string | null;
  rankPattern?: Record<string, number>;
  layersToTransform?: readonly number[] | number | null;
  /** DoRA adds a magnitude vector of out_features per adapted module. */
  useDora?: boolean;
}

export interface ModuleCount {
  /** Module path as in the model (model.layers.0.self_attn.q_proj). */
  name: string;
  in: number;
  out: number;
  r: number;
  /** Trainable LoRA parameters: r·(in + out), plus out with DoRA. */
  params: number;
}

export interface LayerCount {
  layer: number;
  /** Trainable LoRA parameters of the layer. */
  trainable: number;
  /** Parameters of the layer's adapted weight matrices (what full fine-tuning of them trains). */
  fullFinetuneTargets: number;
}

export interface ParamCount {
  perModule: ModuleCount[];
  perLayer: LayerCount[];
  /** Every adapter parameter. */
  trainable: number;
  /** Every base model parameter: embeddings, lm_head unless tied, layers (weights, biases, norms), final norm. */
  base: number;
  /** Parameters of all adapted weight matrices (in·out each, biases not counted). */
  fullFinetuneTargets: number;
}

/** The linear layers of one decoder layer: [path suffix, in, out]. */
function layerLinears(c: LlamaConfig): [string, number, number][] {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  return [
    ["self_attn.q_proj", c.hiddenSize, q],
    ["self_attn.k_proj", c.hiddenSize, kv],
    ["self_attn.v_proj", c.hiddenSize, kv],
    ["self_attn.o_proj", q, c.hiddenSize],
    ["mlp.gate_proj", c.hiddenSize, c.intermediateSize],
    ["mlp.up_proj", c.hiddenSize, c.intermediateSize],
    ["mlp.down_proj", c.intermediateSize, c.hiddenSize],
  ];
}

/** Base parameter count of a Llama / Mistral / Qwen2 model, as transformers builds it. */
export function countBaseParams(c: LlamaConfig): number {
  const C = c.hiddenSize;
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  let layer = 0;
  for (const [, i, o] of layerLinears(c)) layer += i * o;
  if (c.qkvBias) layer += q + 2 * kv;
  if (c.oProjBias) layer += C;
  if (c.mlpBias) layer += 2 * c.intermediateSize + C;
  layer += 2 * C; // input_layernorm, post_attention_layernorm
  const embed = c.vocabSize * C;
  return embed + (c.tieWordEmbeddings ? 0 : embed) + c.numHiddenLayers * layer + C;
}

/**
 * Counts LoRA parameters for a Llama-family config.json (already parsed) without building
 * the model. Targets, rank patterns and layers_to_transform follow the same matching rules
 * as getPeftModel, on the same module paths.
 *
 * @example
 * const n = countLoraParams(
 *   { model_type: "llama", hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32,
 *     num_attention_heads: 32, vocab_size: 32000 },
 *   { r: 8, targetModules: ["q_proj", "k_proj", "v_proj"] },
 * );
 * n.perLayer[0].trainable; // 196608
 */
export function countLoraParams(configJson: unknown, opts: CountOptions): ParamCount {
  const c = parseLlamaConfig(configJson);
  if (!Number.isInteger(opts.r) || opts.r <= 0)
    throw new PeftError(`\`r\` should be a positive integer value but the value passed is ${opts.r}`);
  const linears = layerLinears(c);
  const targets: string[] | string =
    opts.targetModules === "all-linear"
      ? [...new Set(linears.map(([p]) => p.split(".").pop()!))].sort()
      : typeof opts.targetModules === "string"
        ? opts.targetModules
        : [...opts.targetModules];
  const l2t = opts.layersToTransform ?? null;
  const match: Pick<LoraConfig, "targetModules" | "excludeModules" | "layersToTransform" | "layersPattern"> =
    {
      targetModules: targets,
      excludeModules: opts.excludeModules
        ? typeof opts.excludeModules === "string"
          ? opts.excludeModules
          : [...opts.excludeModules]
        : null,
      layersToTransform: l2t === null ? null : typeof l2t === "number" ? l2t : [...l2t],
      layersPattern: null,
    };
  const rankPattern = opts.rankPattern ?? {};
  const perModule: ModuleCount[] = [];
  const perLayer: LayerCount[] = [];
  for (let li = 0; li < c.numHiddenLayers; li++) {
    const layer: LayerCount = { layer: li, trainable: 0, fullFinetuneTargets: 0 };
    for (const [suffix, inF, outF] of linears) {
      const name = `model.layers.${li}.${suffix}`;
      if (!matchesTarget(match, targets, name)) continue;
      const key = patternKey(rankPattern, name);
      const r = key === null ? opts.r : rankPattern[key];
      const params = r * (inF + outF) + (opts.useDora ? outF : 0);
      perModule.push({ name, in: inF, out: outF, r, params });
      layer.trainable += params;
      layer.fullFinetuneTargets += inF * outF;
    }
    perLayer.push(layer);
  }
  // The output head is adapted only when named (or matched by a regex): "all-linear" leaves it out.
  let head = 0;
  if (opts.targetModules !== "all-linear" && matchesTarget(match, targets, "lm_head")) {
    const key = patternKey(rankPattern, "lm_head");
    const r = key === null ? opts.r : rankPattern[key];
    head = r * (c.hiddenSize + c.vocabSize) + (opts.useDora ? c.vocabSize : 0);
    perModule.push({ name: "lm_head", in: c.hiddenSize, out: c.vocabSize, r, params: head });
  }
  if (perModule.length === 0)
    throw new PeftError(
      `Target modules ${JSON.stringify(opts.targetModules)} not found in the base model. Please check the target modules and try again.`,
    );
  return {
    perModule,
    perLayer,
    trainable: perLayer.reduce((s, l) => s + l.trainable, head),
    base: countBaseParams(c),
    fullFinetuneTargets: perLayer.reduce(
      (s, l) => s + l.fullFinetuneTargets,
      head ? c.hiddenSize * c.vocabSize : 0,
    ),
  };
}
