// The decoder configuration shared by Llama, Mistral and Qwen2, read from and written to a
// Hugging Face config.json. snake_case exists only in `parseLlamaConfig` / `llamaConfigToJson`;
// inside lorakit every field is camelCase. Defaults follow transformers' LlamaConfig,
// MistralConfig and Qwen2Config per model type, so a config.json that omits a field means
// what it means to transformers. Each concern is read in its own file: sizes
// (config-sizes.ts), RoPE (config-rope.ts), biases (config-biases.ts), full or sliding
// attention per layer (config-attention.ts), token ids (config-tokens.ts), dtype and kept
// keys (config-extras.ts), all through ConfigFields (config-fields.ts).
import { defaultLayerType, readAttentionLayout } from "./config-attention.js";
import { readBiases } from "./config-biases.js";
import { ConfigError, fieldError, showValue } from "./config-error.js";
import { extraKeys, readTorchDtype } from "./config-extras.js";
import { ConfigFields } from "./config-fields.js";
import { readRope } from "./config-rope.js";
import { readSizes } from "./config-sizes.js";
import { readEosTokenId } from "./config-tokens.js";

export { ConfigError };

export const LLAMA_MODEL_TYPES = ["llama", "mistral", "qwen2"] as const;
export type LlamaModelType = (typeof LLAMA_MODEL_TYPES)[number];

/** RoPE frequency scaling (transformers' `rope_scaling` / `rope_parameters`). */
export type RopeScaling =
  /** Llama 3.1: long wavelengths divided by `factor`, short ones kept, a smooth ramp between. */
  | {
      readonly type: "llama3";
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    }
  /** Position interpolation: every inverse frequency divided by `factor`. */
  | { readonly type: "linear"; readonly factor: number };

export type LayerType = "full_attention" | "sliding_attention";

export interface LlamaConfig {
  readonly modelType: LlamaModelType;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly numKeyValueHeads: number;
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling | null;
  readonly maxPositionEmbeddings: number;
  readonly tieWordEmbeddings: boolean;
  /** q_proj, k_proj, v_proj have a bias (llama/mistral: attention_bias; qwen2: always). */
  readonly qkvBias: boolean;
  /** o_proj has a bias (llama: attention_bias; mistral, qwen2: never). */
  readonly oProjBias: boolean;
  /** gate_proj, up_proj, down_proj have a bias (llama: mlp_bias). */
  readonly mlpBias: boolean;
  readonly hiddenAct: "silu";
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | readonly number[] | null;
  readonly padTokenId: number | null;
  /** Attention window in tokens for sliding layers, null when every layer attends fully. */
  readonly slidingWindow: number | null;
  /** qwen2 only: sliding attention on layers >= maxWindowLayers when use_sliding_window. */
  readonly maxWindowLayers: number | null;
  /** Per layer: full or sliding-window attention (as transformers' `layer_types`). */
  readonly layerTypes: readonly LayerType[];
  /** `torch_dtype` / `dtype` of the checkpoint ("bfloat16", ...), null when absent. */
  readonly torchDtype: string | null;
  /** Keys of the config.json that lorakit does not interpret, kept to be written back. */
  readonly extra: Readonly<Record<string, unknown>>;
}

/**
 * The defaults a config.json may omit, per model type, as in transformers (LlamaConfig,
 * MistralConfig, Qwen2Config). Sizes (vocab, hidden, intermediate, layers, heads) have no
 * default here: a config without them is refused rather than guessed as a 7B model.
 */
export const LLAMA_CONFIG_DEFAULTS = Object.freeze({
  llama: Object.freeze({
    /** LlamaConfig: None → num_attention_heads (multi-head attention). */
    numKeyValueHeads: null,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    maxPositionEmbeddings: 2048,
    tieWordEmbeddings: false,
    bosTokenId: 1,
    eosTokenId: 2,
    slidingWindow: null,
  }),
  mistral: Object.freeze({
    /** MistralConfig's default is 8 (Mistral 7B), not the number of heads. */
    numKeyValueHeads: 8,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    maxPositionEmbeddings: 4096 * 32,
    tieWordEmbeddings: false,
    bosTokenId: 1,
    eosTokenId: 2,
    slidingWindow: 4096,
  }),
  qwen2: Object.freeze({
    /** Qwen2Config's default is 32. */
    numKeyValueHeads: 32,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    maxPositionEmbeddings: 32768,
    /** Qwen2Config: tie_word_embeddings=False (the small Qwen2 checkpoints set it true). */
    tieWordEmbeddings: false,
    bosTokenId: null,
    eosTokenId: null,
    /** Used only when use_sliding_window (default false). */
    slidingWindow: 4096,
  }),
} as const);

const ARCHITECTURES: Record<LlamaModelType, string> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
};

/**
 * Reads a Hugging Face config.json (already JSON-parsed) for a Llama, Mistral or Qwen2 model.
 *
 * @example
 * const cfg = parseLlamaConfig(JSON.parse(readFileSync("config.json", "utf8")));
 * cfg.numKeyValueHeads; // 8
 */
export function parseLlamaConfig(json: unknown): LlamaConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new ConfigError(`config.json must be a JSON object, got ${showValue(json)}`);
  const f = new ConfigFields(json as Record<string, unknown>);

  const modelType = f.get("model_type");
  if (typeof modelType !== "string" || !(LLAMA_MODEL_TYPES as readonly string[]).includes(modelType))
    throw fieldError(
      "model_type",
      modelType,
      `supported model types are ${LLAMA_MODEL_TYPES.map((t) => `"${t}"`).join(", ")}`,
    );
  const mt = modelType as LlamaModelType;
  const D = LLAMA_CONFIG_DEFAULTS[mt];

  // The order of the reads is the order of the checks: the first bad field is the one named.
  const sizes = readSizes(f, D.numKeyValueHeads);
  const hiddenAct = f.has("hidden_act") ? f.get("hidden_act") : "silu";
  if (hiddenAct !== "silu")
    throw fieldError("hidden_act", hiddenAct, `lorakit's ${mt} supports only "silu" (SwiGLU MLP)`);
  const { ropeTheta, ropeScaling } = readRope(f, D.ropeTheta);
  const { qkvBias, oProjBias, mlpBias } = readBiases(f, mt);
  const maxPositionEmbeddings = f.posInt("max_position_embeddings", D.maxPositionEmbeddings);
  const { slidingWindow, maxWindowLayers, layerTypes } = readAttentionLayout(
    f,
    mt,
    D.slidingWindow,
    sizes.numHiddenLayers,
  );
  const eosTokenId = readEosTokenId(f, D.eosTokenId);
  const torchDtype = readTorchDtype(f);
  const extra = extraKeys(f);

  return Object.freeze({
    modelType: mt,
    ...sizes,
    rmsNormEps: f.posNum("rms_norm_eps", D.rmsNormEps),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings,
    tieWordEmbeddings: f.bool("tie_word_embeddings", D.tieWordEmbeddings),
    qkvBias,
    oProjBias,
    mlpBias,
    hiddenAct: "silu",
    bosTokenId: f.tokenId("bos_token_id", D.bosTokenId),
    eosTokenId,
    padTokenId: f.tokenId("pad_token_id", null),
    slidingWindow,
    maxWindowLayers,
    layerTypes: Object.freeze(layerTypes),
    torchDtype,
    extra: Object.freeze(extra),
  });
}

/**
 * Writes a config back as a Hugging Face config.json object (transformers 4 style keys:
 * rope_theta + rope_scaling, torch_dtype), with `architectures` and the keys lorakit kept in
 * `extra`. parseLlamaConfig(llamaConfigToJson(cfg)) equals cfg, except that `architectures`
 * (added when the source had none) then sits in `extra`.
 */
export function llamaConfigToJson(cfg: LlamaConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...cfg.extra };
  out.architectures = cfg.extra.architectures ?? [ARCHITECTURES[cfg.modelType]];
  out.model_type = cfg.modelType;
  out.vocab_size = cfg.vocabSize;
  out.hidden_size = cfg.hiddenSize;
  out.intermediate_size = cfg.intermediateSize;
  out.num_hidden_layers = cfg.numHiddenLayers;
  out.num_attention_heads = cfg.numAttentionHeads;
  out.num_key_value_heads = cfg.numKeyValueHeads;
  out.head_dim = cfg.headDim;
  out.hidden_act = cfg.hiddenAct;
  out.rms_norm_eps = cfg.rmsNormEps;
  out.rope_theta = cfg.ropeTheta;
  const rs = cfg.ropeScaling;
  out.rope_scaling =
    rs === null
      ? null
      : rs.type === "linear"
        ? { rope_type: "linear", factor: rs.factor }
        : {
            rope_type: "llama3",
            factor: rs.factor,
            low_freq_factor: rs.lowFreqFactor,
            high_freq_factor: rs.highFreqFactor,
            original_max_position_embeddings: rs.originalMaxPositionEmbeddings,
          };
  out.max_position_embeddings = cfg.maxPositionEmbeddings;
  out.tie_word_embeddings = cfg.tieWordEmbeddings;
  if (cfg.modelType === "llama") {
    if (cfg.qkvBias !== cfg.oProjBias)
      throw new ConfigError(
        `llamaConfigToJson: llama has one attention_bias for q/k/v/o, but qkvBias=${cfg.qkvBias} and oProjBias=${cfg.oProjBias}`,
      );
    out.attention_bias = cfg.qkvBias;
    out.mlp_bias = cfg.mlpBias;
  }
  out.bos_token_id = cfg.bosTokenId;
  out.eos_token_id = Array.isArray(cfg.eosTokenId) ? [...cfg.eosTokenId] : cfg.eosTokenId;
  out.pad_token_id = cfg.padTokenId;
  if (cfg.modelType === "mistral") out.sliding_window = cfg.slidingWindow;
  if (cfg.modelType === "qwen2") {
    out.use_sliding_window = cfg.slidingWindow !== null;
    out.sliding_window = cfg.slidingWindow;
    out.max_window_layers = cfg.maxWindowLayers;
  }
  if (cfg.modelType !== "llama" && cfg.layerTypes.some((t, i) => t !== defaultLayerType(cfg, i)))
    out.layer_types = [...cfg.layerTypes];
  if (cfg.torchDtype !== null) out.torch_dtype = cfg.torchDtype;
  return out;
}

/**
 * RoPE inverse frequencies (length headDim/2), with llama3 or linear scaling applied, by the
 * formulas of transformers' `_compute_default_rope_parameters`,
 * `_compute_linear_scaling_rope_parameters` and `_compute_llama3_parameters`
 * (modeling_rope_utils.py):
 *
 *   inv_freq[i] = 1 / theta^(2i/d)
 *   linear:  inv_freq / factor
 *   llama3:  wavelen = 2π / inv_freq
 *            wavelen > old_ctx / low_freq_factor  → inv_freq / factor
 *            wavelen < old_ctx / high_freq_factor → inv_freq
 *            otherwise s = (old_ctx / wavelen - low) / (high - low),
 *                      (1 - s) · inv_freq / factor + s · inv_freq
 *
 * transformers computes this in float32; by default lorakit computes it in float64 (the
 * exact values); `{ float32: true }` rounds every step to float32 as PyTorch does, for
 * bit-level comparisons with a PyTorch run.
 */
export function computeRopeInvFreq(cfg: LlamaConfig, opts: { float32?: boolean } = {}): Float64Array {
  const r = opts.float32 ? Math.fround : (x: number) => x;
  const d = cfg.headDim;
  const half = d / 2;
  const out = new Float64Array(half);
  for (let i = 0; i < half; i++) out[i] = r(1 / r(cfg.ropeTheta ** r((2 * i) / d)));
  const s = cfg.ropeScaling;
  if (s === null) return out;
  if (s.type === "linear") {
    for (let i = 0; i < half; i++) out[i] = r(out[i] / s.factor);
    return out;
  }
  const old = s.originalMaxPositionEmbeddings;
  const lowFreqWavelen = old / s.lowFreqFactor;
  const highFreqWavelen = old / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const inv = out[i];
    const wavelen = r(r(2 * Math.PI) / inv);
    if (wavelen > lowFreqWavelen) out[i] = r(inv / s.factor);
    else if (wavelen < highFreqWavelen) out[i] = inv;
    else {
      const smooth = r(r(r(old / wavelen) - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor));
      out[i] = r(r(r(r(1 - smooth) * inv) / s.factor) + r(smooth * inv));
    }
  }
  return out;
}
