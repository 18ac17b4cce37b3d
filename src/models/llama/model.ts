// The LLaMA-family decoder (llama, mistral, qwen2) with modules named exactly as
// transformers' LlamaForCausalLM, so checkpoint keys map by path:
// model.embed_tokens, model.layers.N.self_attn.{q,k,v,o}_proj, model.layers.N.mlp.
// {gate,up,down}_proj, model.layers.N.{input,post_attention}_layernorm, model.norm, lm_head.
import { ShapeError } from "../../core/errors.js";
import { add, attention, reshape, rope, ropeTables, siluMul, slice } from "../../core/ops/index.js";
import type { T } from "../../core/ops/util.js";
import type { Rng } from "../../core/rng.js";
import { randNormal } from "../../core/rng.js";
import type { Tensor } from "../../core/tensor.js";
import type { LinearLike } from "../../nn/layers.js";
import { Embedding, Linear, RMSNorm } from "../../nn/layers.js";
import { Module, ModuleList } from "../../nn/module.js";
import type { LlamaConfig } from "./config.js";
import { computeRopeInvFreq } from "./config.js";
import type { KVCache } from "./kv-cache.js";
import { cachedAttention } from "./kv-cache.js";

/** transformers' default initializer_range, used when lorakit builds a fresh model. */
const INIT_STD = 0.02;

/**
 * A linear layer initialised as transformers' LlamaPreTrainedModel._init_weights does:
 * W ~ N(0, initializer_range²), bias 0 (all zeros when no rng: weights come from a checkpoint).
 */
function hfLinear(inF: number, outF: number, bias: boolean, rng?: Rng): Linear {
  return new Linear(inF, outF, {
    weight: rng ? randNormal(rng, [outF, inF], 0, INIT_STD) : undefined,
    bias,
  });
}

/** Per-forward context shared by the layers: rotary tables and the optional KV cache. */
export interface ForwardContext {
  cos: Tensor;
  sin: Tensor;
  /** Absolute position of the first token of this forward. */
  offset: number;
  cache: KVCache | null;
}

export class LlamaAttention extends Module {
  q_proj: LinearLike;
  k_proj: LinearLike;
  v_proj: LinearLike;
  o_proj: LinearLike;
  readonly H: number;
  readonly Hkv: number;
  readonly D: number;

  constructor(
    cfg: LlamaConfig,
    readonly layerIdx: number,
    rng?: Rng,
  ) {
    super();
    this.H = cfg.numAttentionHeads;
    this.Hkv = cfg.numKeyValueHeads;
    this.D = cfg.headDim;
    const C = cfg.hiddenSize;
    const qkvBias = cfg.qkvBias;
    const oBias = cfg.oProjBias;
    this.q_proj = this.addModule("q_proj", hfLinear(C, this.H * this.D, qkvBias, rng));
    this.k_proj = this.addModule("k_proj", hfLinear(C, this.Hkv * this.D, qkvBias, rng));
    this.v_proj = this.addModule("v_proj", hfLinear(C, this.Hkv * this.D, qkvBias, rng));
    this.o_proj = this.addModule("o_proj", hfLinear(this.H * this.D, C, oBias, rng));
  }

  protected override onChildSet(name: string, m: Module): void {
    (this as unknown as Record<string, Module>)[name] = m;
  }

  /** x: (B, T, C) → (B, T, C). */
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const [B, Tn] = x.shape;
    const q = rope(reshape(this.q_proj.forward(x), [B, Tn, this.H, this.D]), ctx.cos, ctx.sin);
    const k = rope(reshape(this.k_proj.forward(x), [B, Tn, this.Hkv, this.D]), ctx.cos, ctx.sin);
    const v = reshape(this.v_proj.forward(x), [B, Tn, this.Hkv, this.D]);
    const o = ctx.cache ? cachedAttention(ctx.cache, this.layerIdx, q, k, v) : attention(q, k, v);
    return this.o_proj.forward(reshape(o, [B, Tn, this.H * this.D]));
  }
}

export class LlamaMLP extends Module {
  gate_proj: LinearLike;
  up_proj: LinearLike;
  down_proj: LinearLike;
  constructor(cfg: LlamaConfig, rng?: Rng) {
    super();
    const bias = cfg.mlpBias;
    this.gate_proj = this.addModule("gate_proj", hfLinear(cfg.hiddenSize, cfg.intermediateSize, bias, rng));
    this.up_proj = this.addModule("up_proj", hfLinear(cfg.hiddenSize, cfg.intermediateSize, bias, rng));
    this.down_proj = this.addModule("down_proj", hfLinear(cfg.intermediateSize, cfg.hiddenSize, bias, rng));
  }
  protected override onChildSet(name: string, m: Module): void {
    (this as unknown as Record<string, Module>)[name] = m;
  }
  /** x: (B, T, C) → (B, T, C): down(silu(gate(x))·up(x)). */
  forward(x: Tensor): Tensor {
    return this.down_proj.forward(siluMul(this.gate_proj.forward(x), this.up_proj.forward(x)));
  }
}

export class LlamaDecoderLayer extends Module {
  self_attn: LlamaAttention;
  mlp: LlamaMLP;
  input_layernorm: RMSNorm;
  post_attention_layernorm: RMSNorm;
  constructor(cfg: LlamaConfig, layerIdx: number, rng?: Rng) {
    super();
    this.self_attn = this.addModule("self_attn", new LlamaAttention(cfg, layerIdx, rng));
    this.mlp = this.addModule("mlp", new LlamaMLP(cfg, rng));
    this.input_layernorm = this.addModule("input_layernorm", new RMSNorm(cfg.hiddenSize, cfg.rmsNormEps));
    this.post_attention_layernorm = this.addModule(
      "post_attention_layernorm",
      new RMSNorm(cfg.hiddenSize, cfg.rmsNormEps),
    );
  }
  protected override onChildSet(name: string, m: Module): void {
    (this as unknown as Record<string, Module>)[name] = m;
  }
  /** x: (B, T, C) → (B, T, C), pre-norm residual blocks. */
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const h = add(x, this.self_attn.forward(this.input_layernorm.forward(x), ctx));
    return add(h, this.mlp.forward(this.post_attention_layernorm.forward(h)));
  }
}

export class LlamaModel extends Module {
  embed_tokens: Embedding;
  layers: ModuleList<LlamaDecoderLayer>;
  norm: RMSNorm;
  constructor(cfg: LlamaConfig, rng?: Rng) {
    super();
    this.embed_tokens = this.addModule(
      "embed_tokens",
      new Embedding(cfg.vocabSize, cfg.hiddenSize, {
        weight: rng ? randNormal(rng, [cfg.vocabSize, cfg.hiddenSize], 0, INIT_STD) : undefined,
      }),
    );
    const layers: LlamaDecoderLayer[] = [];
    for (let i = 0; i < cfg.numHiddenLayers; i++) layers.push(new LlamaDecoderLayer(cfg, i, rng));
    this.layers = this.addModule("layers", new ModuleList(layers));
    this.norm = this.addModule("norm", new RMSNorm(cfg.hiddenSize, cfg.rmsNormEps));
  }
  protected override onChildSet(name: string, m: Module): void {
    (this as unknown as Record<string, Module>)[name] = m;
  }
}

export interface CausalLMForwardOptions {
  /** A KV cache to read past keys/values from and append this forward's to (inference only). */
  cache?: KVCache | null;
  /** Only compute logits for the last position (generation). */
  lastOnly?: boolean;
}

/** LlamaForCausalLM: the decoder plus the output head (tied to embed_tokens when configured). */
export class LlamaForCausalLM extends Module {
  model: LlamaModel;
  lm_head: Linear;
  private readonly invFreq: Float64Array;

  constructor(
    readonly config: LlamaConfig,
    opts: { rng?: Rng } = {},
  ) {
    super();
    this.model = this.addModule("model", new LlamaModel(config, opts.rng));
    const headWeight = config.tieWordEmbeddings
      ? this.model.embed_tokens.weight
      : opts.rng
        ? randNormal(opts.rng, [config.vocabSize, config.hiddenSize], 0, INIT_STD)
        : undefined;
    this.lm_head = this.addModule(
      "lm_head",
      new Linear(config.hiddenSize, config.vocabSize, { weight: headWeight }),
    );
    this.invFreq = computeRopeInvFreq(config);
  }

  protected override onChildSet(name: string, m: Module): void {
    (this as unknown as Record<string, Module>)[name] = m;
  }

  /** Re-ties lm_head to embed_tokens after the embedding was replaced (loading). */
  tieWeights(): void {
    if (this.config.tieWordEmbeddings) this.lm_head.setParam("weight", this.model.embed_tokens.weight);
  }

  /** The hidden states after the final norm: ids (B, T) i32 → (B, T, C). */
  hidden(ids: Tensor, opts: CausalLMForwardOptions = {}): Tensor {
    if (ids.rank !== 2)
      throw new ShapeError(`LlamaForCausalLM: input ids must be (B, T), got [${ids.shape.join(", ")}]`);
    const Tn = ids.shape[1];
    const cache = opts.cache ?? null;
    const offset = cache ? cache.length : 0;
    const sw = this.config.layerTypes.includes("sliding_attention") ? this.config.slidingWindow : null;
    if (sw !== null && offset + Tn > sw)
      throw new ShapeError(
        `LlamaForCausalLM: ${offset + Tn} positions exceed the sliding window of ${sw}; sliding-window attention is not implemented, so sequences are limited to the window`,
      );
    const dtype = (this.model.norm as { weight?: Tensor }).weight?.dtype === "f64" ? "f64" : "f32";
    const { cos, sin } = ropeTables(this.invFreq, Tn, offset, dtype);
    const ctx: ForwardContext = { cos, sin, offset, cache };
    let h = this.model.embed_tokens.forward(ids);
    for (const layer of this.model.layers.items) h = layer.forward(h, ctx);
    if (cache) cache.advance(Tn);
    return this.model.norm.forward(h);
  }

  /** Logits: ids (B, T) i32 → (B, T, V) (or (B, 1, V) with lastOnly). */
  forward(ids: Tensor, opts: CausalLMForwardOptions = {}): T {
    let h = this.hidden(ids, opts);
    if (opts.lastOnly && h.shape[1] > 1) h = slice(h, 1, h.shape[1] - 1);
    return this.lm_head.forward(h) as T;
  }
}
