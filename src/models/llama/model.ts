// The LLaMA-family decoder (llama, mistral, qwen2) with modules named exactly as
// transformers' LlamaForCausalLM, so checkpoint keys map by path:
// model.embed_tokens, model.layers.N.self_attn.{q,k,v,o}_proj, model.layers.N.mlp.
// {gate,up,down}_proj, model.layers.N.{input,post_attention}_layernorm, model.norm, lm_head.
import { checkpoint } from "../../core/activation-checkpoint.js";
import { isGradEnabled } from "../../core/engine.js";
import { ShapeError } from "../../core/errors.js";
import { tidy } from "../../core/memory.js";
import type { LinearCrossEntropyOptions } from "../../core/ops/index.js";
import {
  add,
  attention,
  crossEntropy,
  embedding,
  linearCrossEntropy,
  linearShared,
  reshape,
  rope,
  ropeTables,
  ropeTablesAt,
  siluMul,
  slice,
} from "../../core/ops/index.js";
import type { T } from "../../core/ops/util.js";
import type { Rng } from "../../core/rng.js";
import { randNormal } from "../../core/rng.js";
import type { Tensor } from "../../core/tensor.js";
import { meta, tensor } from "../../core/tensor.js";
import type { LinearLike } from "../../nn/layers.js";
import { Embedding, hasGradOnlyForward, Linear, RMSNorm } from "../../nn/layers.js";
import { Module, ModuleList } from "../../nn/module.js";
import type { LlamaConfig } from "./config.js";
import { computeRopeInvFreq } from "./config.js";
import { canDecodeStep, decodeStep } from "./decode-step.js";
import type { KVCache } from "./kv-cache.js";
import { cachedAttention, cachedAttentionRows } from "./kv-cache.js";

/** transformers' default initializer_range, used when lorakit builds a fresh model. */
const INIT_STD = 0.02;

/**
 * How a fresh model's weights are made: random as transformers' LlamaPreTrainedModel.
 * _init_weights (linear and embedding W ~ N(0, initializer_range²), biases 0, norms 1), zeros
 * (no rng), or shape-only placeholders (`meta`) that a loader replaces tensor by tensor.
 */
interface WeightInit {
  rng?: Rng;
  meta?: boolean;
}

function initMatrix(init: WeightInit, rows: number, cols: number): Tensor | undefined {
  if (init.meta) return meta([rows, cols], "f32");
  return init.rng ? randNormal(init.rng, [rows, cols], 0, INIT_STD) : undefined;
}

function hfLinear(inF: number, outF: number, bias: boolean, init: WeightInit): Linear {
  return new Linear(inF, outF, {
    weight: initMatrix(init, outF, inF),
    bias,
    biasTensor: bias && init.meta ? meta([outF], "f32") : undefined,
  });
}

function hfNorm(dim: number, eps: number, init: WeightInit): RMSNorm {
  return new RMSNorm(dim, eps, { weight: init.meta ? meta([dim], "f32") : undefined });
}

/**
 * The projections of one input (q/k/v, gate/up): plain Linear layers go through
 * `linearShared` (outside autograd, one backend call for all of them: a decode step's small
 * k/v products then share the threads with q instead of each running alone), anything else
 * (LoRA, NF4, subclasses) through its own forward. The same bits either way.
 */
function projectShared(x: Tensor, layers: readonly LinearLike[]): Tensor[] {
  const plain = layers.every((m) => Object.getPrototypeOf(m) === Linear.prototype);
  if (!plain) return layers.map((m) => m.forward(x));
  const ls = layers as readonly Linear[];
  return linearShared(
    x,
    ls.map((m) => m.weight),
    ls.map((m) => m.bias),
  );
}

/** Per-forward context shared by the layers: rotary tables and the optional KV cache. */
export interface ForwardContext {
  cos: Tensor;
  sin: Tensor;
  /** Absolute position of the first token of this forward. */
  offset: number;
  cache: KVCache | null;
  /**
   * Continuous-batch mode (`LlamaForCausalLM.step` / `decode`): the batch (S, 1, C) holds the
   * tokens of several sequences one after another, `rows[n].tokens` of them for the sequence
   * whose cache is `rows[n].cache`; cos/sin hold one row per token, at its own position.
   */
  rows?: readonly { cache: KVCache; tokens: number }[];
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
    init: WeightInit = {},
  ) {
    super();
    this.H = cfg.numAttentionHeads;
    this.Hkv = cfg.numKeyValueHeads;
    this.D = cfg.headDim;
    const C = cfg.hiddenSize;
    const qkvBias = cfg.qkvBias;
    const oBias = cfg.oProjBias;
    this.q_proj = this.addModule("q_proj", hfLinear(C, this.H * this.D, qkvBias, init));
    this.k_proj = this.addModule("k_proj", hfLinear(C, this.Hkv * this.D, qkvBias, init));
    this.v_proj = this.addModule("v_proj", hfLinear(C, this.Hkv * this.D, qkvBias, init));
    this.o_proj = this.addModule("o_proj", hfLinear(this.H * this.D, C, oBias, init));
  }

  protected override onChildSet(name: string, m: Module): void {
    (this as unknown as Record<string, Module>)[name] = m;
  }

  /** x: (B, T, C) → (B, T, C). */
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    if (ctx.rows) return this.forwardRows(x, ctx, ctx.rows);
    const [B, Tn] = x.shape;
    const [qx, kx, vx] = projectShared(x, [this.q_proj, this.k_proj, this.v_proj]);
    const q = rope(reshape(qx, [B, Tn, this.H, this.D]), ctx.cos, ctx.sin);
    const k = rope(reshape(kx, [B, Tn, this.Hkv, this.D]), ctx.cos, ctx.sin);
    const v = reshape(vx, [B, Tn, this.Hkv, this.D]);
    const o = ctx.cache ? cachedAttention(ctx.cache, this.layerIdx, q, k, v) : attention(q, k, v);
    return this.o_proj.forward(reshape(o, [B, Tn, this.H * this.D]));
  }

  /**
   * Continuous-batch mode: x (S, 1, C), the tokens of several sequences one after another.
   * The projections run once for all of them; the tokens are the time axis of one sequence for
   * RoPE (each rotated by its own position) and attend sequence by sequence, each over its own
   * cache.
   */
  private forwardRows(
    x: Tensor,
    ctx: ForwardContext,
    rows: readonly { cache: KVCache; tokens: number }[],
  ): Tensor {
    const N = x.shape[0];
    const { H, Hkv, D } = this;
    const [qx, kx, vx] = projectShared(x, [this.q_proj, this.k_proj, this.v_proj]);
    const q = rope(reshape(qx, [1, N, H, D]), ctx.cos, ctx.sin);
    const k = rope(reshape(kx, [1, N, Hkv, D]), ctx.cos, ctx.sin);
    const v = reshape(vx, [1, N, Hkv, D]);
    const o = cachedAttentionRows(rows, this.layerIdx, q, k, v);
    return this.o_proj.forward(reshape(o, [N, 1, H * D]));
  }
}

export class LlamaMLP extends Module {
  gate_proj: LinearLike;
  up_proj: LinearLike;
  down_proj: LinearLike;
  constructor(cfg: LlamaConfig, init: WeightInit = {}) {
    super();
    const bias = cfg.mlpBias;
    this.gate_proj = this.addModule("gate_proj", hfLinear(cfg.hiddenSize, cfg.intermediateSize, bias, init));
    this.up_proj = this.addModule("up_proj", hfLinear(cfg.hiddenSize, cfg.intermediateSize, bias, init));
    this.down_proj = this.addModule("down_proj", hfLinear(cfg.intermediateSize, cfg.hiddenSize, bias, init));
  }
  protected override onChildSet(name: string, m: Module): void {
    (this as unknown as Record<string, Module>)[name] = m;
  }
  /**
   * x: (B, T, C) → (B, T, C): down(silu(gate(x))·up(x)). `outputUnread`: the caller only
   * backpropagates through the result (a checkpoint's recompute), so down_proj may skip its
   * product.
   */
  forward(x: Tensor, opts: { outputUnread?: boolean } = {}): Tensor {
    const [gate, up] = projectShared(x, [this.gate_proj, this.up_proj]);
    const z = siluMul(gate, up);
    const down = this.down_proj;
    return opts.outputUnread && hasGradOnlyForward(down) ? down.forwardGradOnly(z) : down.forward(z);
  }
}

export class LlamaDecoderLayer extends Module {
  self_attn: LlamaAttention;
  mlp: LlamaMLP;
  input_layernorm: RMSNorm;
  post_attention_layernorm: RMSNorm;
  constructor(cfg: LlamaConfig, layerIdx: number, init: WeightInit = {}) {
    super();
    this.self_attn = this.addModule("self_attn", new LlamaAttention(cfg, layerIdx, init));
    this.mlp = this.addModule("mlp", new LlamaMLP(cfg, init));
    this.input_layernorm = this.addModule("input_layernorm", hfNorm(cfg.hiddenSize, cfg.rmsNormEps, init));
    this.post_attention_layernorm = this.addModule(
      "post_attention_layernorm",
      hfNorm(cfg.hiddenSize, cfg.rmsNormEps, init),
    );
  }
  protected override onChildSet(name: string, m: Module): void {
    (this as unknown as Record<string, Module>)[name] = m;
  }
  /**
   * x: (B, T, C) → (B, T, C), pre-norm residual blocks. `outputUnread`: the result is only
   * backpropagated through, never read (a checkpoint's recompute): the last product is skipped.
   */
  forward(x: Tensor, ctx: ForwardContext, opts: { outputUnread?: boolean } = {}): Tensor {
    const h = add(x, this.self_attn.forward(this.input_layernorm.forward(x), ctx));
    return add(h, this.mlp.forward(this.post_attention_layernorm.forward(h), opts));
  }
}

export class LlamaModel extends Module {
  embed_tokens: Embedding;
  layers: ModuleList<LlamaDecoderLayer>;
  norm: RMSNorm;
  constructor(cfg: LlamaConfig, init: WeightInit = {}) {
    super();
    this.embed_tokens = this.addModule(
      "embed_tokens",
      new Embedding(cfg.vocabSize, cfg.hiddenSize, {
        weight: initMatrix(init, cfg.vocabSize, cfg.hiddenSize),
      }),
    );
    const layers: LlamaDecoderLayer[] = [];
    for (let i = 0; i < cfg.numHiddenLayers; i++) layers.push(new LlamaDecoderLayer(cfg, i, init));
    this.layers = this.addModule("layers", new ModuleList(layers));
    this.norm = this.addModule("norm", hfNorm(cfg.hiddenSize, cfg.rmsNormEps, init));
  }
  protected override onChildSet(name: string, m: Module): void {
    (this as unknown as Record<string, Module>)[name] = m;
  }
}

/**
 * One decoder layer without a graph (inference): its temporaries go back to the buffer pool
 * as soon as it returns, and so does its input, which no graph holds, so the next layer
 * reuses them and a forward holds one layer's temporaries at a time. Before, all of them
 * lived until the caller's scope ended: the peak grew with the depth (the demo model, a
 * 512-token prompt: 19.4 → 5.0 MiB; a 7B model's 32 layers at 2,048 tokens, ~15 GB).
 */
function layerInScope(layer: LlamaDecoderLayer, x: Tensor, ctx: ForwardContext): Tensor {
  const y = tidy(() => layer.forward(x, ctx));
  if (y !== x) x.dispose();
  return y;
}

/** The classes whose forward `decodeStep` mirrors: a subclass takes the general path. */
const DECODE_STEP_CLASSES = {
  layer: LlamaDecoderLayer.prototype,
  attention: LlamaAttention.prototype,
  mlp: LlamaMLP.prototype,
};

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
  /**
   * Tokens per chunk of the fused output layer + loss in `loss()` (null: the default,
   * `defaultLossChunkTokens(vocab)`); a memory planner may set it.
   */
  lossChunkTokens: number | null = null;
  /**
   * The folder or hub name the model was loaded from, as the caller gave it (transformers'
   * `name_or_path`): adapters record it as base_model_name_or_path. null when built in memory.
   */
  nameOrPath: string | null = null;
  private readonly invFreq: Float64Array;

  constructor(
    readonly config: LlamaConfig,
    /**
     * `rng`: random weights as transformers initialises them; `meta`: shape-only placeholders
     * (no memory) for a loader to replace; neither: zeros.
     */
    opts: { rng?: Rng; meta?: boolean } = {},
  ) {
    super();
    this.model = this.addModule("model", new LlamaModel(config, opts));
    const headWeight = config.tieWordEmbeddings
      ? this.model.embed_tokens.weight
      : initMatrix(opts, config.vocabSize, config.hiddenSize);
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

  /**
   * Activation checkpointing per decoder layer (transformers' gradient_checkpointing): while
   * training with grad recording on, each layer keeps only its input and recomputes its
   * activations in backward. Same losses and gradients, about a third more compute.
   */
  gradientCheckpointing = false;
  /**
   * How many decoder layers checkpointing applies to (the first ones; null: all). A memory
   * planner checkpoints only as many layers as the budget needs, since each one costs a
   * recomputed forward.
   */
  checkpointedLayers: number | null = null;

  gradientCheckpointingEnable(layers: number | null = null): void {
    this.gradientCheckpointing = true;
    this.checkpointedLayers = layers;
  }

  gradientCheckpointingDisable(): void {
    this.gradientCheckpointing = false;
  }

  /** The window of sliding-window attention layers, null when there are none. */
  private slidingWindow(): number | null {
    return this.config.layerTypes.includes("sliding_attention") ? this.config.slidingWindow : null;
  }

  /** Whether `positions` positions fit the sliding window (always without one). */
  private withinWindow(positions: number): boolean {
    const sw = this.slidingWindow();
    return sw === null || positions <= sw;
  }

  /** The hidden states after the final norm: ids (B, T) i32 → (B, T, C). */
  hidden(ids: Tensor, opts: CausalLMForwardOptions = {}): Tensor {
    if (ids.rank !== 2)
      throw new ShapeError(`LlamaForCausalLM: input ids must be (B, T), got [${ids.shape.join(", ")}]`);
    const Tn = ids.shape[1];
    const cache = opts.cache ?? null;
    const offset = cache ? cache.length : 0;
    const sw = this.slidingWindow();
    if (sw !== null && offset + Tn > sw)
      throw new ShapeError(
        `LlamaForCausalLM: ${offset + Tn} positions exceed the sliding window of ${sw}; sliding-window attention is not implemented, so sequences are limited to the window`,
      );
    const dtype = (this.model.norm as { weight?: Tensor }).weight?.dtype === "f64" ? "f64" : "f32";
    const { cos, sin } = ropeTables(this.invFreq, Tn, offset, dtype);
    const ctx: ForwardContext = { cos, sin, offset, cache };
    let h = this.model.embed_tokens.forward(ids);
    // Dropout randomness inside a layer is replayed by checkpoint() itself (it notes the Rngs drawn).
    const ckpt = this.gradientCheckpointing && this.training && cache === null && isGradEnabled();
    const nCkpt = ckpt ? (this.checkpointedLayers ?? this.config.numHiddenLayers) : 0;
    const noGraph = !isGradEnabled();
    this.model.layers.items.forEach((layer, i) => {
      // The recompute only backpropagates through the layer's output, whose value the first
      // forward already gave: down_proj's product (a fifth to a third of a layer's FLOPs) is
      // skipped there.
      h =
        i < nCkpt
          ? checkpoint((x) => layer.forward(x, ctx), [h], {
              recompute: (x) => layer.forward(x, ctx, { outputUnread: true }),
            })
          : noGraph
            ? layerInScope(layer, h, ctx)
            : layer.forward(h, ctx);
    });
    if (cache) cache.advance(Tn);
    return this.model.norm.forward(h);
  }

  /**
   * One decode step for N independent sequences (serving's continuous batch): row n feeds
   * tokens[n] to the sequence whose cache is caches[n], at that cache's length as position.
   * `step` with one token per sequence. Returns the logits (N, 1, V).
   *
   * @example
   * const logits = noGrad(() => model.decode([lastA, lastB], [cacheA, cacheB]));
   */
  decode(tokens: readonly number[], caches: readonly KVCache[]): T {
    if (tokens.length !== caches.length)
      throw new ShapeError(
        `LlamaForCausalLM.decode: ${tokens.length} tokens for ${caches.length} caches (one each)`,
      );
    return this.step(
      tokens.map((t) => [t]),
      caches,
    );
  }

  /**
   * One step of a continuous batch: sequence n feeds `tokens[n]` — one token while it decodes,
   * a chunk of its prompt while it prefills — after what its cache `caches[n]` holds. Every
   * linear layer runs once for all the tokens (with LoRA layers set to a mixed batch, each
   * token with its sequence's adapter); attention runs per sequence over its own cache; each
   * cache advances by its token count. A sequence gets the same numbers it gets alone (the
   * GEMM's rows do not depend on the other rows). Inference only (noGrad). Returns the logits
   * of each sequence's last token, (N, 1, V).
   *
   * @example
   * // A decode step for A and the first 64 prompt tokens of B, in one call:
   * const logits = noGrad(() => model.step([[lastA], promptB.slice(0, 64)], [cacheA, cacheB]));
   */
  step(tokens: readonly (readonly number[])[], caches: readonly KVCache[]): T {
    const N = tokens.length;
    if (N === 0 || caches.length !== N)
      throw new ShapeError(
        `LlamaForCausalLM.step: ${N} token lists for ${caches.length} caches (one each, at least one)`,
      );
    if (new Set(caches).size !== N)
      throw new ShapeError("LlamaForCausalLM.step: a cache appears twice; each row is its own sequence");
    const sw = this.slidingWindow();
    const positions: number[] = [];
    const flat: number[] = [];
    const last: number[] = [];
    tokens.forEach((ts, n) => {
      const c = caches[n];
      if (ts.length === 0) throw new ShapeError(`LlamaForCausalLM.step: sequence ${n} has no tokens`);
      if (sw !== null && c.length + ts.length > sw)
        throw new ShapeError(
          `LlamaForCausalLM.step: ${c.length + ts.length} positions exceed the sliding window of ${sw}`,
        );
      for (let t = 0; t < ts.length; t++) positions.push(c.length + t);
      flat.push(...ts);
      last.push(flat.length - 1);
    });
    const { cos, sin } = ropeTablesAt(this.invFreq, positions);
    const rows = caches.map((cache, n) => ({ cache, tokens: tokens[n].length }));
    const ctx: ForwardContext = { cos, sin, offset: 0, cache: null, rows };
    let h = this.model.embed_tokens.forward(tensor(flat, [flat.length, 1], "i32"));
    const noGraph = !isGradEnabled();
    for (const layer of this.model.layers.items)
      h = noGraph ? layerInScope(layer, h, ctx) : layer.forward(h, ctx);
    for (const [n, c] of caches.entries()) c.advance(tokens[n].length);
    if (flat.length !== N)
      h = reshape(embedding(reshape(h, [flat.length, -1]), tensor(last, [N], "i32")), [N, 1, -1]);
    return this.lm_head.forward(this.model.norm.forward(h)) as T;
  }

  /** Logits: ids (B, T) i32 → (B, T, V) (or (B, 1, V) with lastOnly). */
  forward(ids: Tensor, opts: CausalLMForwardOptions = {}): T {
    const cache = opts.cache ?? null;
    // A decode step (one token, one sequence, a cache, no graph) runs on preallocated
    // buffers: the same kernels with the same arguments, so the same bits (decode-step.ts).
    if (canDecodeStep(this, ids, cache, DECODE_STEP_CLASSES) && this.withinWindow(cache.length + 1))
      return decodeStep(this, ids, cache, this.invFreq) as T;
    let h = this.hidden(ids, opts);
    if (opts.lastOnly && h.shape[1] > 1) h = slice(h, 1, h.shape[1] - 1);
    return this.lm_head.forward(h) as T;
  }

  /**
   * Cross-entropy of the next-token logits against `targets` (i32, B·T or (B, T); −100
   * ignored unless `ignoreIndex` says otherwise), mean by default: equal to
   * `crossEntropy(reshape(forward(ids), [-1, V]), targets)` but, while lm_head is a plain
   * Linear, fused with it (`linearCrossEntropy`) so the (B·T, V) logits never exist. A
   * wrapped head (LoRA, modules_to_save) takes the unfused path.
   *
   * @example
   * const loss = model.loss(ids, labels); // ids (B, T), labels (B·T) shifted by one
   * backward(loss);
   */
  loss(ids: Tensor, targets: Tensor, opts: LinearCrossEntropyOptions = {}): T {
    const h = this.hidden(ids);
    const C = h.shape[h.rank - 1];
    const flat = targets.rank === 1 ? targets : targets.view([targets.size]);
    const head = this.lm_head as unknown;
    if (head instanceof Linear)
      return linearCrossEntropy(reshape(h, [-1, C]), head.weight, head.bias, flat, {
        ...opts,
        chunkTokens: opts.chunkTokens ?? this.lossChunkTokens ?? undefined,
      });
    const logits = this.lm_head.forward(h);
    const { chunkTokens: _, ...ce } = opts;
    return crossEntropy(reshape(logits, [-1, logits.shape[logits.rank - 1]]), flat, ce);
  }
}
