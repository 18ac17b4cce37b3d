// The decoder configuration shared by Llama, Mistral and Qwen2, read from and written to a
// Hugging Face config.json. snake_case exists only in `parseLlamaConfig` / `llamaConfigToJson`;
// inside lorakit every field is camelCase. Defaults follow transformers' LlamaConfig,
// MistralConfig and Qwen2Config per model type, so a config.json that omits a field means
// what it means to transformers.
import { LorakitError } from "../../core/errors.js";
import { sizeLimitProblem } from "./config-limits.js";

/** A config.json lorakit cannot use: the message names the field, the value and what is supported. */
export class ConfigError extends LorakitError {}

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

/** Qwen2Config: sliding layers start at this index when use_sliding_window. */
const QWEN2_MAX_WINDOW_LAYERS = 28;

const ARCHITECTURES: Record<LlamaModelType, string> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
};

/** The keys this module reads; everything else goes to `extra`. */
const KNOWN = new Set([
  "model_type",
  "vocab_size",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "rms_norm_eps",
  "rope_theta",
  "rope_scaling",
  "rope_parameters",
  "max_position_embeddings",
  "tie_word_embeddings",
  "attention_bias",
  "mlp_bias",
  "hidden_act",
  "bos_token_id",
  "eos_token_id",
  "pad_token_id",
  "sliding_window",
  "use_sliding_window",
  "max_window_layers",
  "layer_types",
  "torch_dtype",
  "dtype",
]);

const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

function err(field: string, value: unknown, want: string): ConfigError {
  return new ConfigError(`config.json: "${field}" is ${show(value)}; ${want}`);
}

/**
 * Reads a Hugging Face config.json (already JSON-parsed) for a Llama, Mistral or Qwen2 model.
 *
 * @example
 * const cfg = parseLlamaConfig(JSON.parse(readFileSync("config.json", "utf8")));
 * cfg.numKeyValueHeads; // 8
 */
export function parseLlamaConfig(json: unknown): LlamaConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new ConfigError(`config.json must be a JSON object, got ${show(json)}`);
  const j = json as Record<string, unknown>;
  const has = (k: string): boolean => Object.hasOwn(j, k) && j[k] !== undefined;

  const modelType = j.model_type;
  if (typeof modelType !== "string" || !(LLAMA_MODEL_TYPES as readonly string[]).includes(modelType))
    throw err(
      "model_type",
      modelType,
      `supported model types are ${LLAMA_MODEL_TYPES.map((t) => `"${t}"`).join(", ")}`,
    );
  const mt = modelType as LlamaModelType;
  const D = LLAMA_CONFIG_DEFAULTS[mt];

  const posInt = (k: string, def?: number | null): number => {
    const v = has(k) && j[k] !== null ? j[k] : def;
    if (v === undefined || v === null) throw err(k, j[k], "it is required: a positive integer");
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
      throw err(k, v, "expected a positive integer");
    const tooLarge = sizeLimitProblem(k, v);
    if (tooLarge !== null) throw err(k, v, tooLarge);
    return v;
  };
  const posNum = (k: string, def: number): number => {
    const v = has(k) && j[k] !== null ? j[k] : def;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw err(k, v, "expected a positive number");
    return v;
  };
  const bool = (k: string, def: boolean): boolean => {
    const v = has(k) && j[k] !== null ? j[k] : def;
    if (typeof v !== "boolean") throw err(k, v, "expected true or false");
    return v;
  };
  const tokenId = (k: string, def: number | null): number | null => {
    const v = has(k) ? j[k] : def;
    if (v === null) return null;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
      throw err(k, v, "expected a token id (integer >= 0) or null");
    return v;
  };

  const vocabSize = posInt("vocab_size");
  const hiddenSize = posInt("hidden_size");
  const intermediateSize = posInt("intermediate_size");
  const numHiddenLayers = posInt("num_hidden_layers");
  const numAttentionHeads = posInt("num_attention_heads");
  const numKeyValueHeads = posInt("num_key_value_heads", D.numKeyValueHeads ?? numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0)
    throw err(
      "num_key_value_heads",
      numKeyValueHeads,
      `num_attention_heads (${numAttentionHeads}) must be a multiple of it for grouped-query attention`,
    );
  if (!(has("head_dim") && j.head_dim !== null) && hiddenSize % numAttentionHeads !== 0)
    throw err(
      "hidden_size",
      hiddenSize,
      `it is not a multiple of num_attention_heads (${numAttentionHeads}) and no head_dim is given`,
    );
  const headDim = posInt("head_dim", hiddenSize / numAttentionHeads);
  if (headDim % 2 !== 0) throw err("head_dim", headDim, "RoPE needs an even head dimension");

  const hiddenAct = has("hidden_act") ? j.hidden_act : "silu";
  if (hiddenAct !== "silu")
    throw err("hidden_act", hiddenAct, `lorakit's ${mt} supports only "silu" (SwiGLU MLP)`);

  // RoPE: transformers 4 writes rope_theta + rope_scaling; transformers 5 writes
  // rope_parameters {rope_type, rope_theta, ...scaling fields}.
  let ropeSource: unknown = has("rope_scaling") ? j.rope_scaling : null;
  let ropeField = "rope_scaling";
  let ropeTheta = posNum("rope_theta", D.ropeTheta);
  if (has("rope_parameters") && j.rope_parameters !== null) {
    const rp = j.rope_parameters;
    if (typeof rp !== "object" || Array.isArray(rp)) throw err("rope_parameters", rp, "expected an object");
    const r = rp as Record<string, unknown>;
    if ("full_attention" in r || "sliding_attention" in r)
      throw err("rope_parameters", rp, "per-layer-type RoPE parameters are not supported; give one set");
    if (r.rope_theta !== undefined) {
      if (typeof r.rope_theta !== "number" || !(r.rope_theta > 0))
        throw err("rope_parameters.rope_theta", r.rope_theta, "expected a positive number");
      ropeTheta = r.rope_theta;
    }
    ropeSource = rp;
    ropeField = "rope_parameters";
  }
  const ropeScaling = parseRopeScaling(ropeSource, ropeField);

  // Biases, per transformers' modeling files.
  let qkvBias: boolean;
  let oProjBias: boolean;
  let mlpBias: boolean;
  if (mt === "llama") {
    qkvBias = oProjBias = bool("attention_bias", false);
    mlpBias = bool("mlp_bias", false);
  } else {
    // MistralAttention: no bias anywhere; Qwen2Attention: q/k/v bias, none on o_proj;
    // neither has an MLP bias. A config asking otherwise does not describe these models.
    for (const k of ["attention_bias", "mlp_bias"])
      if (has(k) && j[k] !== false && j[k] !== null)
        throw err(
          k,
          j[k],
          `${mt} has no such option in transformers (${mt === "qwen2" ? "q/k/v always have a bias, o_proj and the MLP never" : "no layer has a bias"})`,
        );
    qkvBias = mt === "qwen2";
    oProjBias = false;
    mlpBias = false;
  }

  const maxPositionEmbeddings = posInt("max_position_embeddings", D.maxPositionEmbeddings);
  let slidingWindow: number | null = null;
  let maxWindowLayers: number | null = null;
  let layerTypes: LayerType[];
  if (mt === "llama") {
    layerTypes = Array(numHiddenLayers).fill("full_attention");
  } else {
    const sw = has("sliding_window") ? j.sliding_window : D.slidingWindow;
    if (sw !== null && (typeof sw !== "number" || !Number.isInteger(sw) || sw <= 0))
      throw err("sliding_window", sw, "expected a positive integer or null");
    if (mt === "mistral") {
      slidingWindow = sw as number | null;
      layerTypes = Array(numHiddenLayers).fill(
        slidingWindow === null ? "full_attention" : "sliding_attention",
      );
    } else {
      // Qwen2Config: sliding_window = sliding_window if use_sliding_window else None.
      const use = bool("use_sliding_window", false);
      maxWindowLayers = posIntOrZero(j, "max_window_layers", QWEN2_MAX_WINDOW_LAYERS);
      slidingWindow = use ? (sw as number | null) : null;
      layerTypes = Array.from({ length: numHiddenLayers }, (_, i) =>
        slidingWindow !== null && i >= maxWindowLayers! ? "sliding_attention" : "full_attention",
      );
    }
  }
  if (has("layer_types") && j.layer_types !== null) {
    const lt = j.layer_types;
    if (
      !Array.isArray(lt) ||
      lt.length !== numHiddenLayers ||
      !lt.every((t) => t === "full_attention" || t === "sliding_attention")
    )
      throw err(
        "layer_types",
        lt,
        `expected ${numHiddenLayers} entries of "full_attention" / "sliding_attention"`,
      );
    if (lt.includes("sliding_attention") && slidingWindow === null)
      throw err("layer_types", lt, "sliding layers need a sliding_window (and use_sliding_window for qwen2)");
    layerTypes = lt as LayerType[];
  }

  let eos: number | readonly number[] | null;
  const eosRaw = has("eos_token_id") ? j.eos_token_id : D.eosTokenId;
  if (Array.isArray(eosRaw)) {
    if (!eosRaw.every((v) => typeof v === "number" && Number.isInteger(v) && v >= 0))
      throw err("eos_token_id", eosRaw, "expected a token id, a list of token ids, or null");
    eos = Object.freeze([...(eosRaw as number[])]);
  } else eos = tokenIdValue("eos_token_id", eosRaw);

  let torchDtype: string | null = null;
  for (const k of ["dtype", "torch_dtype"]) {
    if (has(k) && j[k] !== null) {
      if (typeof j[k] !== "string") throw err(k, j[k], 'expected a dtype name such as "bfloat16"');
      torchDtype = j[k] as string;
      break;
    }
  }

  const extra: Record<string, unknown> = {};
  for (const k of Object.keys(j)) if (!KNOWN.has(k)) extra[k] = j[k];

  return Object.freeze({
    modelType: mt,
    vocabSize,
    hiddenSize,
    intermediateSize,
    numHiddenLayers,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    rmsNormEps: posNum("rms_norm_eps", D.rmsNormEps),
    ropeTheta,
    ropeScaling,
    maxPositionEmbeddings,
    tieWordEmbeddings: bool("tie_word_embeddings", D.tieWordEmbeddings),
    qkvBias,
    oProjBias,
    mlpBias,
    hiddenAct: "silu",
    bosTokenId: tokenId("bos_token_id", D.bosTokenId),
    eosTokenId: eos,
    padTokenId: tokenId("pad_token_id", null),
    slidingWindow,
    maxWindowLayers,
    layerTypes: Object.freeze(layerTypes),
    torchDtype,
    extra: Object.freeze(extra),
  });
}

function posIntOrZero(j: Record<string, unknown>, k: string, def: number): number {
  const v = j[k] === undefined || j[k] === null ? def : j[k];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw err(k, v, "expected an integer >= 0");
  return v;
}

function tokenIdValue(k: string, v: unknown): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
    throw err(k, v, "expected a token id (integer >= 0) or null");
  return v;
}

const SUPPORTED_ROPE = 'null, "default", "linear" and "llama3"';

function parseRopeScaling(v: unknown, field: string): RopeScaling | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== "object" || Array.isArray(v))
    throw err(field, v, `expected an object or null (supported: ${SUPPORTED_ROPE})`);
  const r = v as Record<string, unknown>;
  const type = r.rope_type ?? r.type ?? "default";
  const num = (k: string, check: (x: number) => boolean, want: string): number => {
    const x = r[k];
    if (typeof x !== "number" || !Number.isFinite(x) || !check(x))
      throw err(`${field}.${k}`, x, `${type} RoPE scaling needs ${want}`);
    return x;
  };
  switch (type) {
    case "default":
      return null;
    case "linear":
      return Object.freeze({ type: "linear", factor: num("factor", (x) => x > 0, "a positive factor") });
    case "llama3": {
      const factor = num("factor", (x) => x > 0, "a positive factor");
      const lowFreqFactor = num("low_freq_factor", (x) => x > 0, "a positive low_freq_factor");
      const highFreqFactor = num(
        "high_freq_factor",
        (x) => x > lowFreqFactor,
        `high_freq_factor greater than low_freq_factor (${lowFreqFactor})`,
      );
      const originalMaxPositionEmbeddings = num(
        "original_max_position_embeddings",
        (x) => Number.isInteger(x) && x > 0,
        "original_max_position_embeddings, a positive integer",
      );
      return Object.freeze({
        type: "llama3",
        factor,
        lowFreqFactor,
        highFreqFactor,
        originalMaxPositionEmbeddings,
      });
    }
    default:
      throw err(
        `${field}.rope_type`,
        type,
        `RoPE scaling ${show(type)} is not supported; lorakit supports ${SUPPORTED_ROPE}`,
      );
  }
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

function defaultLayerType(cfg: LlamaConfig, i: number): LayerType {
  if (cfg.slidingWindow === null) return "full_attention";
  if (cfg.modelType === "qwen2")
    return i >= (cfg.maxWindowLayers ?? QWEN2_MAX_WINDOW_LAYERS) ? "sliding_attention" : "full_attention";
  return "sliding_attention";
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
