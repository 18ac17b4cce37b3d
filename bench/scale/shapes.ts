// The published shapes the scale benchmarks run on: each model's config.json as its Hugging
// Face repository publishes it, its shard layout, and the tensors of its checkpoint in
// Hugging Face names and state-dict order. bench/scale/make-checkpoint.ts writes random
// checkpoints of these shapes, so benchmarks measure real sizes without downloading weights.
//
// Sources (config.json of each repository's main branch; the key order is theirs, sorted):
//   HuggingFaceTB/SmolLM2-135M   transformers 4.40.1, one model.safetensors
//   Qwen/Qwen2.5-0.5B            transformers 4.40.1, one model.safetensors (snapshot 060db649)
//   meta-llama/Llama-3.2-1B      transformers 4.45.0.dev0, one model.safetensors
//   meta-llama/Llama-2-7b-hf     transformers 4.31.0.dev0, model-0000{1,2}-of-00002.safetensors
// Every value is as published except Llama-2-7b-hf's torch_dtype: it publishes float16
// weights ("float16"); these checkpoints are all bfloat16, so it says "bfloat16" here.
import type { Shape } from "../../src/core/tensor.js";
import type { SafetensorsDType } from "../../src/io/safetensors-dtype.js";
import type { LlamaConfig } from "../../src/models/llama/config.js";

export interface ScaleShape {
  /** The id make-checkpoint's --shape takes. */
  readonly id: string;
  /** The Hugging Face repository the config comes from. */
  readonly repo: string;
  /** config.json as published (torch_dtype bfloat16). */
  readonly config: Readonly<Record<string, unknown>>;
  /**
   * Largest shard in bytes: the value that splits the checkpoint into as many shards as the
   * published one (transformers 4.31 saved with its then default "10GB"; the others fit the
   * current default "5GB" in one file).
   */
  readonly maxShardSize: number;
  /** How many safetensors files the published checkpoint has. */
  readonly publishedShards: number;
  /** Parameters of the published model (its checkpoint without rotary buffers). */
  readonly publishedParams: number;
}

const SMOLLM2_135M: ScaleShape = {
  id: "smollm2-135m",
  repo: "HuggingFaceTB/SmolLM2-135M",
  config: {
    architectures: ["LlamaForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: 0,
    eos_token_id: 0,
    hidden_act: "silu",
    hidden_size: 576,
    initializer_range: 0.041666666666666664,
    intermediate_size: 1536,
    is_llama_config: true,
    max_position_embeddings: 8192,
    model_type: "llama",
    num_attention_heads: 9,
    num_hidden_layers: 30,
    num_key_value_heads: 3,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_interleaved: false,
    rope_scaling: null,
    rope_theta: 100000,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
    transformers_version: "4.40.1",
    use_cache: true,
    vocab_size: 49152,
  },
  maxShardSize: 5e9,
  publishedShards: 1,
  publishedParams: 134_515_008,
};

const QWEN2_5_0_5B: ScaleShape = {
  id: "qwen2.5-0.5b",
  repo: "Qwen/Qwen2.5-0.5B",
  config: {
    architectures: ["Qwen2ForCausalLM"],
    attention_dropout: 0.0,
    bos_token_id: 151643,
    eos_token_id: 151643,
    hidden_act: "silu",
    hidden_size: 896,
    initializer_range: 0.02,
    intermediate_size: 4864,
    max_position_embeddings: 32768,
    max_window_layers: 24,
    model_type: "qwen2",
    num_attention_heads: 14,
    num_hidden_layers: 24,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    sliding_window: 32768,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
    transformers_version: "4.40.1",
    use_cache: true,
    use_mrope: false,
    use_sliding_window: false,
    vocab_size: 151936,
  },
  maxShardSize: 5e9,
  publishedShards: 1,
  publishedParams: 494_032_768,
};

const LLAMA_3_2_1B: ScaleShape = {
  id: "llama-3.2-1b",
  repo: "meta-llama/Llama-3.2-1B",
  config: {
    architectures: ["LlamaForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: 128000,
    eos_token_id: 128001,
    head_dim: 64,
    hidden_act: "silu",
    hidden_size: 2048,
    initializer_range: 0.02,
    intermediate_size: 8192,
    max_position_embeddings: 131072,
    mlp_bias: false,
    model_type: "llama",
    num_attention_heads: 32,
    num_hidden_layers: 16,
    num_key_value_heads: 8,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_scaling: {
      factor: 32.0,
      high_freq_factor: 4.0,
      low_freq_factor: 1.0,
      original_max_position_embeddings: 8192,
      rope_type: "llama3",
    },
    rope_theta: 500000.0,
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
    transformers_version: "4.45.0.dev0",
    use_cache: true,
    vocab_size: 128256,
  },
  maxShardSize: 5e9,
  publishedShards: 1,
  publishedParams: 1_235_814_400,
};

const LLAMA_2_7B: ScaleShape = {
  id: "llama-2-7b",
  repo: "meta-llama/Llama-2-7b-hf",
  config: {
    _name_or_path: "meta-llama/Llama-2-7b-hf",
    architectures: ["LlamaForCausalLM"],
    bos_token_id: 1,
    eos_token_id: 2,
    hidden_act: "silu",
    hidden_size: 4096,
    initializer_range: 0.02,
    intermediate_size: 11008,
    max_position_embeddings: 4096,
    model_type: "llama",
    num_attention_heads: 32,
    num_hidden_layers: 32,
    num_key_value_heads: 32,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_scaling: null,
    tie_word_embeddings: false,
    // Published: "float16" (see the header).
    torch_dtype: "bfloat16",
    transformers_version: "4.31.0.dev0",
    use_cache: true,
    vocab_size: 32000,
  },
  // The published shards hold 9.98 GB and 3.50 GB: "10GB" splits after layer 23, as here.
  maxShardSize: 10e9,
  publishedShards: 2,
  publishedParams: 6_738_415_616,
};

/** The shapes by id, smallest first. */
export const SCALE_SHAPES: Readonly<Record<string, ScaleShape>> = Object.freeze({
  [SMOLLM2_135M.id]: SMOLLM2_135M,
  [QWEN2_5_0_5B.id]: QWEN2_5_0_5B,
  [LLAMA_3_2_1B.id]: LLAMA_3_2_1B,
  [LLAMA_2_7B.id]: LLAMA_2_7B,
});

/**
 * The shape called `id`; throws listing the known ids otherwise.
 *
 * @example
 * scaleShape("qwen2.5-0.5b").config.hidden_size; // 896
 */
export function scaleShape(id: string): ScaleShape {
  const s = SCALE_SHAPES[id];
  if (!s)
    throw new Error(`unknown shape ${JSON.stringify(id)}; known: ${Object.keys(SCALE_SHAPES).join(", ")}`);
  return s;
}

/**
 * The inference benchmarks' own 125M shape (hidden 768, 12 layers, intermediate 2048, 4 KV
 * heads; no published checkpoint) as a config.json object.
 */
export const BENCH_125M_CONFIG: Readonly<Record<string, unknown>> = Object.freeze({
  model_type: "llama",
  vocab_size: 32000,
  hidden_size: 768,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_key_value_heads: 4,
  max_position_embeddings: 2048,
});

/** The config.json object of a benchmark's `--shape`: "125m" or a published shape's id. */
export function benchShapeConfig(id: string): Record<string, unknown> {
  return id === "125m" ? { ...BENCH_125M_CONFIG } : { ...scaleShape(id).config };
}

/** How a tensor of a fresh checkpoint is filled. */
export type ScaleInit = "normal" | "ones";

export interface ScaleTensorSpec {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: Shape;
  readonly init: ScaleInit;
}

/**
 * The tensors of a LLaMA / Qwen2 checkpoint of this config, in the order transformers'
 * state_dict() lists them (and so save_pretrained shards them): model.embed_tokens, then per
 * layer self_attn q/k/v/o (each weight followed by its bias where the model has one), mlp
 * gate/up/down, input_layernorm, post_attention_layernorm; model.norm; lm_head unless tied.
 * Matrices and biases are drawn from N(0, initializer_range²) (transformers' _init_weights for
 * matrices; it zeroes biases, but real checkpoints' biases are not zero), RMSNorm weights
 * are ones. All BF16.
 *
 * @example
 * scaleTensorSpecs(parseLlamaConfig(scaleShape("smollm2-135m").config)).length; // 272
 */
export function scaleTensorSpecs(cfg: LlamaConfig): ScaleTensorSpec[] {
  const h = cfg.hiddenSize;
  const q = cfg.numAttentionHeads * cfg.headDim;
  const kv = cfg.numKeyValueHeads * cfg.headDim;
  const out: ScaleTensorSpec[] = [];
  const add = (name: string, shape: number[], init: ScaleInit = "normal"): void => {
    out.push({ name, dtype: "BF16", shape, init });
  };
  const linear = (name: string, outF: number, inF: number, bias: boolean): void => {
    add(`${name}.weight`, [outF, inF]);
    if (bias) add(`${name}.bias`, [outF]);
  };
  add("model.embed_tokens.weight", [cfg.vocabSize, h]);
  for (let l = 0; l < cfg.numHiddenLayers; l++) {
    const p = `model.layers.${l}`;
    linear(`${p}.self_attn.q_proj`, q, h, cfg.qkvBias);
    linear(`${p}.self_attn.k_proj`, kv, h, cfg.qkvBias);
    linear(`${p}.self_attn.v_proj`, kv, h, cfg.qkvBias);
    linear(`${p}.self_attn.o_proj`, h, q, cfg.oProjBias);
    linear(`${p}.mlp.gate_proj`, cfg.intermediateSize, h, cfg.mlpBias);
    linear(`${p}.mlp.up_proj`, cfg.intermediateSize, h, cfg.mlpBias);
    linear(`${p}.mlp.down_proj`, h, cfg.intermediateSize, cfg.mlpBias);
    add(`${p}.input_layernorm.weight`, [h], "ones");
    add(`${p}.post_attention_layernorm.weight`, [h], "ones");
  }
  add("model.norm.weight", [h], "ones");
  if (!cfg.tieWordEmbeddings) add("lm_head.weight", [cfg.vocabSize, h]);
  return out;
}
