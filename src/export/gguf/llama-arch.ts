// A lorakit LLaMA / Mistral / Qwen2 checkpoint as llama.cpp's `llama` and `qwen2`
// architectures (convert_hf_to_gguf.py: TextModel.set_gguf_parameters, LlamaModel,
// Qwen2Model; llama.cpp: src/models/llama.cpp, src/models/qwen2.cpp): the hyperparameter
// keys llama.cpp reads, the tensor names it looks up, the q/k row permutation, and Llama 3's
// RoPE frequency factors as `rope_freqs.weight`.
import type { LlamaConfig } from "../../models/llama/config.js";
import { ExportError } from "../errors.js";
import type { GgmlType, GgufKv } from "./format.js";
import { GGML_QUANT_VERSION, kv, Q8_0_BLOCK } from "./format.js";

export type GgufArch = "llama" | "qwen2";

/** The tensor types of an exported model: 1-D tensors and norms always stay F32. */
export type GgufModelDType = "f32" | "f16" | "bf16" | "q8_0";

/** LlamaFileType (gguf-py constants.py): general.file_type. */
const FILE_TYPE: Record<GgufModelDType, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };
const MATRIX_TYPE: Record<GgufModelDType, GgmlType> = { f32: "F32", f16: "F16", bf16: "BF16", q8_0: "Q8_0" };

/**
 * How a source tensor's rows are reordered for llama.cpp's RoPE: Hugging Face rotates the two
 * halves of each head, llama.cpp's `llama` rope (LLAMA_ROPE_TYPE_NORM) rotates adjacent
 * pairs, so q_proj / k_proj rows (and their biases, and a LoRA B's rows) are permuted per head
 * (LlamaModel.permute). `qwen2` uses the NEOX rope, which rotates halves: no permutation.
 */
export interface RopePermutation {
  readonly heads: number;
  readonly headDim: number;
}

/** One tensor of the GGUF file and where its values come from. */
export interface PlannedTensor {
  /** llama.cpp's name (blk.0.attn_q.weight). */
  readonly name: string;
  /** PyTorch-order shape (outermost first). */
  readonly shape: readonly number[];
  readonly type: GgmlType;
  /** The Hugging Face tensor it is read from, or "rope_freqs" for the computed factors. */
  readonly source: string;
  readonly permute: RopePermutation | null;
}

export interface GgufModelPlan {
  readonly arch: GgufArch;
  /** Architecture and general.* keys (the tokenizer's are added by the caller). */
  readonly metadata: GgufKv[];
  readonly tensors: PlannedTensor[];
  /** Things llama.cpp will do differently from lorakit, worth telling the user. */
  readonly warnings: string[];
}

/** llama.cpp's architecture for a lorakit model type (Mistral runs as `llama`, as the converter writes it). */
export function ggufArch(config: LlamaConfig): GgufArch {
  switch (config.modelType) {
    case "llama":
    case "mistral":
      return "llama";
    case "qwen2":
      return "qwen2";
    default:
      throw new ExportError(
        `GGUF: no llama.cpp architecture for model type ${String(config.modelType satisfies never)}`,
      );
  }
}

const LAYER_PARTS: Record<string, string> = {
  input_layernorm: "attn_norm",
  post_attention_layernorm: "ffn_norm",
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
};

/**
 * llama.cpp's name for a Hugging Face tensor or module path (gguf-py tensor_mapping.py), or
 * null when llama.cpp has no such tensor. Works on module paths too
 * ("model.layers.3.self_attn.q_proj" → "blk.3.attn_q"), which the LoRA export uses.
 */
export function ggufTensorName(hfName: string): string | null {
  if (hfName === "model.embed_tokens.weight" || hfName === "model.embed_tokens") return "token_embd.weight";
  if (hfName === "model.norm.weight") return "output_norm.weight";
  if (hfName === "lm_head.weight" || hfName === "lm_head") return "output.weight";
  const m = /^model\.layers\.(\d+)\.(.+?)(?:\.(weight|bias))?$/.exec(hfName);
  if (!m) return null;
  const part = LAYER_PARTS[m[2]];
  if (!part) return null;
  return m[3] ? `blk.${m[1]}.${part}.${m[3]}` : `blk.${m[1]}.${part}.weight`;
}

/** The q/k permutation a Hugging Face tensor (or LoRA B of that module) needs, if any. */
export function ropePermutation(config: LlamaConfig, hfName: string): RopePermutation | null {
  if (ggufArch(config) !== "llama") return null;
  if (/\.self_attn\.q_proj(\.(weight|bias))?$/.test(hfName))
    return { heads: config.numAttentionHeads, headDim: config.headDim };
  if (/\.self_attn\.k_proj(\.(weight|bias))?$/.test(hfName))
    return { heads: config.numKeyValueHeads, headDim: config.headDim };
  return null;
}

/**
 * LlamaModel.permute: rows (h, half, i) → (h, i, half) for each head h, i < headDim/2, so
 * row h·D + 2i + half of the result is row h·D + half·D/2 + i of `x`. `x` is row-major with
 * `x.length / cols` rows.
 */
export function permuteRopeRows(x: Float32Array, cols: number, p: RopePermutation): Float32Array {
  const rows = x.length / cols;
  if (rows !== p.heads * p.headDim)
    throw new ExportError(
      `GGUF: cannot permute ${rows} rows for RoPE as ${p.heads} heads × ${p.headDim} (the config's head sizes do not match the tensor)`,
    );
  const out = new Float32Array(x.length);
  const half = p.headDim / 2;
  for (let h = 0; h < p.heads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const to = (h * p.headDim + 2 * i + j) * cols;
        const from = (h * p.headDim + j * half + i) * cols;
        out.set(x.subarray(from, from + cols), to);
      }
  return out;
}

/**
 * Llama 3.1's RoPE scaling as llama.cpp's per-frequency divisors (LlamaModel
 * generate_extra_tensors, in f32 as torch computes it): 1 for short wavelengths, `factor` for
 * long ones, a smooth ramp between.
 */
export function llama3RopeFactors(config: LlamaConfig): Float32Array {
  const s = config.ropeScaling;
  if (s?.type !== "llama3") throw new ExportError("llama3RopeFactors: the config has no llama3 rope_scaling");
  const f = Math.fround;
  const dim = config.headDim;
  const out = new Float32Array(dim / 2);
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let k = 0; k < dim / 2; k++) {
    const freq = f(1 / f(config.ropeTheta ** f((2 * k) / dim)));
    const wavelen = f((2 * Math.PI) / freq);
    if (wavelen < highWavelen) out[k] = 1;
    else if (wavelen > lowWavelen) out[k] = s.factor;
    else {
      const smooth = f(
        (f(s.originalMaxPositionEmbeddings / wavelen) - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor),
      );
      out[k] = f(1 / f(f((1 - smooth) / s.factor) + smooth));
    }
  }
  return out;
}

/** Checks that llama.cpp's graph for `arch` computes what lorakit computes for `config`. */
function checkRunnable(config: LlamaConfig, arch: GgufArch, warnings: string[]): void {
  const why = (msg: string) =>
    new ExportError(
      `GGUF: llama.cpp's ${arch} architecture cannot run this ${config.modelType} model: ${msg}`,
    );
  if (config.hiddenAct !== "silu") throw why(`hidden_act ${config.hiddenAct} (it has SiLU only)`);
  if (arch === "qwen2") {
    // src/models/qwen2.cpp sizes attn_q as {n_embd, n_embd}: heads × head_dim must be hidden_size.
    if (config.numAttentionHeads * config.headDim !== config.hiddenSize)
      throw why(
        `num_attention_heads × head_dim = ${config.numAttentionHeads} × ${config.headDim} ≠ hidden_size ${config.hiddenSize}`,
      );
    if (config.ropeScaling?.type === "llama3") throw why("llama3 rope_scaling (qwen2 loads no rope_freqs)");
    if (config.oProjBias || config.mlpBias) throw why("o_proj / MLP biases (qwen2 has q/k/v biases only)");
  }
  if (config.layerTypes.includes("sliding_attention"))
    warnings.push(
      `llama.cpp's ${arch} architecture attends over the whole context: the sliding window of ${config.slidingWindow} tokens is not applied, so outputs differ from lorakit's past that many tokens`,
    );
}

export interface PlanModelOptions {
  dtype: GgufModelDType;
  /** general.name (the folder's name, usually). */
  name?: string;
}

/**
 * The GGUF layout of a model: metadata keys for the architecture and every tensor with its
 * llama.cpp name, type and source. `sourceNames` are the Hugging Face tensor names available
 * (a checkpoint's names, or a model's state dict); `shapeOf` their shapes.
 *
 * @example
 * const plan = planModelGguf(config, ckpt.names(), (n) => ckpt.info(n).shape, { dtype: "f16" });
 */
export function planModelGguf(
  config: LlamaConfig,
  sourceNames: readonly string[],
  shapeOf: (name: string) => readonly number[],
  opts: PlanModelOptions,
): GgufModelPlan {
  const arch = ggufArch(config);
  const warnings: string[] = [];
  checkRunnable(config, arch, warnings);
  if (!(opts.dtype in FILE_TYPE))
    throw new ExportError(`GGUF: dtype must be f32, f16, bf16 or q8_0, got ${JSON.stringify(opts.dtype)}`);
  const c = config;
  const metadata: GgufKv[] = [kv.str("general.architecture", arch), kv.str("general.type", "model")];
  if (opts.name) metadata.push(kv.str("general.name", opts.name));
  const a = (k: string) => `${arch}.${k}`;
  if (arch === "llama") metadata.push(kv.u32(a("vocab_size"), c.vocabSize));
  metadata.push(
    kv.u32(a("context_length"), c.maxPositionEmbeddings),
    kv.u32(a("embedding_length"), c.hiddenSize),
    kv.u32(a("feed_forward_length"), c.intermediateSize),
    kv.u32(a("block_count"), c.numHiddenLayers),
    kv.u32(a("attention.head_count"), c.numAttentionHeads),
    kv.u32(a("attention.head_count_kv"), c.numKeyValueHeads),
    kv.f32(a("rope.freq_base"), c.ropeTheta),
    kv.f32(a("attention.layer_norm_rms_epsilon"), c.rmsNormEps),
    kv.u32(a("attention.key_length"), c.headDim),
    kv.u32(a("attention.value_length"), c.headDim),
    kv.u32(a("rope.dimension_count"), c.headDim),
  );
  if (c.ropeScaling?.type === "linear")
    metadata.push(
      kv.str(a("rope.scaling.type"), "linear"),
      kv.f32(a("rope.scaling.factor"), c.ropeScaling.factor),
    );
  metadata.push(kv.u32("general.file_type", FILE_TYPE[opts.dtype]));

  const tensors: PlannedTensor[] = [];
  const seen = new Set<string>();
  const typeFor = (name: string, shape: readonly number[]): GgmlType => {
    if (shape.length <= 1 || name.endsWith("_norm.weight")) return "F32";
    const t = MATRIX_TYPE[opts.dtype];
    // The converter falls back to F16 when rows are not whole Q8_0 blocks.
    return t === "Q8_0" && shape[shape.length - 1] % Q8_0_BLOCK !== 0 ? "F16" : t;
  };
  if (c.ropeScaling?.type === "llama3")
    tensors.push({
      name: "rope_freqs.weight",
      shape: [c.headDim / 2],
      type: "F32",
      source: "rope_freqs",
      permute: null,
    });
  for (const src of sourceNames) {
    if (src.endsWith("rotary_emb.inv_freq")) continue;
    if (src === "lm_head.weight" && c.tieWordEmbeddings) continue;
    const name = ggufTensorName(src);
    if (name === null)
      throw new ExportError(
        `GGUF: the checkpoint's tensor ${src} has no counterpart in llama.cpp's ${arch} architecture${/\.(absmax|quant_map|quant_state|nested_)/.test(src) ? " (a 4-bit bitsandbytes checkpoint: export the float checkpoint it was quantised from)" : ""}`,
      );
    const shape = shapeOf(src);
    tensors.push({ name, shape, type: typeFor(name, shape), source: src, permute: ropePermutation(c, src) });
    seen.add(src);
  }
  const need = ["model.embed_tokens.weight", "model.norm.weight"];
  if (!c.tieWordEmbeddings) need.push("lm_head.weight");
  for (let i = 0; i < c.numHiddenLayers; i++)
    for (const p of Object.keys(LAYER_PARTS)) need.push(`model.layers.${i}.${p}.weight`);
  for (const n of need) if (!seen.has(n)) throw new ExportError(`GGUF: the checkpoint has no ${n}`);
  metadata.push(kv.u32("general.quantization_version", GGML_QUANT_VERSION));
  return { arch, metadata, tensors, warnings };
}
