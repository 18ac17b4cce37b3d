// The memory of lorakit's own training, and a plan that fits a budget. Browser-safe.
//
// What a training step holds (bytes), as lorakit runs it (f32 compute on the CPU):
//   runtime      the Node process with lorakit loaded (measured, RUNTIME_BYTES)
//   weights      the base weights as they are resident: exact, from the checkpoint headers
//                and the load dtype (bf16 stays bf16; NF4 for QLoRA)
//   trainable    each trained parameter in f32, its gradient, AdamW's m and v: 16 B/param
//   activations  every tensor a step keeps for backward: all forward intermediates of each
//                decoder layer (f32), or, with activation checkpointing, each layer's input
//                plus one layer recomputed at a time; the loss's scratch (fused output layer
//                + cross-entropy: chunk × vocab logits and the N × C gradient it forms);
//                and the largest set of gradients alive at once in backward
// The per-token counts below follow the ops of LlamaDecoderLayer and LoraLinear one by one;
// test/train/memory-plan.test.ts holds them against the tensor bytes a real step allocates.
import { defaultLossChunkTokens, LOSS_CHUNK_BYTES_TIGHT } from "../core/ops/index.js";
import type { LlamaConfig } from "../models/llama/config.js";

/** A Node process with lorakit, its dependencies and the native addon loaded (RSS, measured). */
export const RUNTIME_BYTES = 110 * 2 ** 20;

/** The share of a budget a plan may fill. */
export const PLAN_HEADROOM = 0.95;

/** Bytes of NF4 storage per weight: 4-bit codes + u8 absmax per 64 + f32 nested absmax per 64·256. */
export const NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256);

export const LINEAR_NAMES = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;
export type LinearName = (typeof LINEAR_NAMES)[number];

export interface TrainingShape {
  /** The model's config. */
  config: Pick<
    LlamaConfig,
    | "hiddenSize"
    | "intermediateSize"
    | "numHiddenLayers"
    | "numAttentionHeads"
    | "numKeyValueHeads"
    | "headDim"
    | "vocabSize"
    | "tieWordEmbeddings"
  >;
  /** full fine-tuning, LoRA, or LoRA on an NF4 base (QLoRA). */
  method: "full" | "lora" | "qlora";
  /** Bytes of the resident base weights (see `residentWeightBytes`). */
  weightBytes: number;
  /** Parameters that train. */
  trainableParams: number;
  /** LoRA rank and the decoder linears it adapts (ignored for full fine-tuning). */
  r: number;
  targets: readonly LinearName[];
  /** LoRA dropout > 0 keeps one more input-sized tensor per adapted linear. */
  dropout: boolean;
  batchSize: number;
  seqLen: number;
  /** Decoder layers recomputed in backward instead of keeping their activations (0 … layers). */
  checkpointLayers: number;
  /** Tokens per chunk of the fused output layer + loss. */
  lossChunkTokens: number;
}

export interface TrainingMemory {
  runtime: number;
  weights: number;
  trainable: number;
  activations: number;
  total: number;
  /** How `activations` splits. */
  detail: {
    layersKept: number;
    layerRecompute: number;
    loss: number;
    backward: number;
    /** The most tensor memory alive at once (`tensorBytes().peak` of a step, less parameters). */
    tensorPeak: number;
  };
}

/** f32 values one decoder layer keeps per token (all its forward intermediates). */
export function layerFloatsPerToken(s: TrainingShape): number {
  const c = s.config;
  const C = c.hiddenSize;
  const I = c.intermediateSize;
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const adapted = new Set(s.method === "full" ? [] : s.targets);
  // A linear keeps its output; the fused LoRA op (core/ops/lora-linear.ts) adds only the
  // narrow s·x·Aᵀ (r), and with dropout the dropped input (in).
  const lin = (name: LinearName, inF: number, out: number) =>
    out + (adapted.has(name) ? s.r + (s.dropout ? inF : 0) : 0);
  const norm = C + 1; // output and 1/rms per token
  const attn =
    norm +
    lin("q_proj", C, q) +
    lin("k_proj", C, kv) +
    lin("v_proj", C, kv) +
    q + // rope(q)
    kv + // rope(k)
    q +
    c.numAttentionHeads + // attention output and its log-sum-exp per head
    lin("o_proj", q, C) +
    C; // residual
  const mlp = norm + lin("gate_proj", C, I) + lin("up_proj", C, I) + I + lin("down_proj", I, C) + C;
  return attn + mlp;
}

/** Estimated bytes of a training step (see the header for each part). */
export function estimateTrainingMemory(s: TrainingShape): TrainingMemory {
  const c = s.config;
  const N = s.batchSize * s.seqLen;
  const C = c.hiddenSize;
  const L = c.numHiddenLayers;
  const perLayer = layerFloatsPerToken(s) * N * 4;
  // A checkpointed layer keeps only its input; the one being differentiated is recomputed
  // in full (the others keep everything until the step ends).
  const k = Math.min(L, Math.max(0, s.checkpointLayers));
  const layersKept = k * C * N * 4 + (L - k) * perLayer;
  const layerRecompute = k > 0 ? perLayer : 0;
  // Kept through the step: the embedding output and the final norm (output + 1/rms). Then
  // two phases: the fused output layer + loss (its chunk of logits, the N × C gradient it
  // forms) and backward (a recomputed layer with checkpointing; the gradients alive at the
  // widest point: the residual's and the running sums of the layer inputs' (3·C), a linear's
  // input gradient and its output gradient (2·C), the MLP's two I-wide ones). Tensor memory
  // peaks at the larger phase; the resident set holds both, because the buffer pool keeps the
  // loss phase's scratch for the next step while backward allocates its own sizes.
  const kept = (2 * C + 1) * N * 4;
  const chunk = Math.min(N, s.lossChunkTokens);
  const loss = (C * N + chunk * c.vocabSize) * 4;
  const backward = (6 * C + 2 * c.intermediateSize) * N * 4;
  const tensorPeak = layersKept + kept + Math.max(loss, layerRecompute + backward);
  const activations = layersKept + kept + loss + layerRecompute + backward;
  const trainable = s.trainableParams * 16;
  const total = RUNTIME_BYTES + s.weightBytes + trainable + activations;
  return {
    runtime: RUNTIME_BYTES,
    weights: s.weightBytes,
    trainable,
    activations,
    total,
    detail: { layersKept, layerRecompute, loss, backward, tensorPeak },
  };
}

/** [in, out] of each decoder linear. */
export function linearDims(c: TrainingShape["config"]): Record<LinearName, [number, number]> {
  const C = c.hiddenSize;
  const I = c.intermediateSize;
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  return {
    q_proj: [C, q],
    k_proj: [C, kv],
    v_proj: [C, kv],
    o_proj: [q, C],
    gate_proj: [C, I],
    up_proj: [C, I],
    down_proj: [I, C],
  };
}

/** LoRA parameters of rank r on the given linears of every layer. */
export function loraParamCount(
  c: TrainingShape["config"],
  r: number,
  targets: readonly LinearName[],
): number {
  const d = linearDims(c);
  let n = 0;
  for (const t of targets) n += r * (d[t][0] + d[t][1]);
  return n * c.numHiddenLayers;
}

/** Weights of the decoder linears (what QLoRA quantises) and of everything else. */
export function weightCounts(c: TrainingShape["config"] & { qkvBias?: boolean }): {
  linear: number;
  other: number;
} {
  const d = linearDims(c);
  let linear = 0;
  for (const n of LINEAR_NAMES) linear += d[n][0] * d[n][1];
  linear *= c.numHiddenLayers;
  const C = c.hiddenSize;
  const bias = c.qkvBias ? (d.q_proj[1] + 2 * d.k_proj[1]) * c.numHiddenLayers : 0;
  const other = c.vocabSize * C * (c.tieWordEmbeddings ? 1 : 2) + (2 * c.numHiddenLayers + 1) * C + bias;
  return { linear, other };
}

export interface PlanChoice {
  /** Decoder layers to checkpoint (0: none). */
  checkpointLayers: number;
  /** Tokens per chunk of the fused output layer + loss. */
  lossChunkTokens: number;
  memory: TrainingMemory;
}

export type PlanResult =
  | ({ fits: true } & PlanChoice)
  | { fits: false; best: PlanChoice; suggestions: string[] };

/**
 * Chooses the cheapest way to run within `budget` bytes: activation checkpointing on as few
 * decoder layers as fit (each costs a recomputed forward; none when everything fits), or
 * as `checkpointing` forces ("on": every layer, "off": none). When nothing fits, says what
 * would: a smaller micro-batch with gradient accumulation, NF4, a shorter sequence.
 *
 * @example
 * const plan = planTraining(shape, 4 * 2 ** 30, { qloraWeightBytes });
 * if (!plan.fits) throw new Error(plan.suggestions.join("; "));
 */
export function planTraining(
  s: Omit<TrainingShape, "checkpointLayers" | "lossChunkTokens">,
  budget: number,
  opts: {
    checkpointing?: "auto" | "on" | "off";
    qloraWeightBytes?: number;
    gradAccum?: number;
    /** Loss chunk sizes to choose from, fastest first (default: the large and the tight budget). */
    lossChunks?: readonly number[];
  } = {},
): PlanResult {
  const mode = opts.checkpointing ?? "auto";
  const L = s.config.numHiddenLayers;
  const V = s.config.vocabSize;
  const chunks = opts.lossChunks ?? [
    defaultLossChunkTokens(V),
    defaultLossChunkTokens(V, 4, LOSS_CHUNK_BYTES_TIGHT),
  ];
  const at = (
    checkpointLayers: number,
    lossChunkTokens = chunks[0],
    patch: Partial<TrainingShape> = {},
  ): PlanChoice => ({
    checkpointLayers,
    lossChunkTokens,
    memory: estimateTrainingMemory({ ...s, checkpointLayers, lossChunkTokens, ...patch }),
  });
  // 5 % headroom: garbage the collector has not yet returned and allocator slack move the
  // measured peak a few percent either way of the estimate.
  const fits = (c: PlanChoice) => c.memory.total <= budget * PLAN_HEADROOM;
  // The cheapest first: fewer checkpointed layers (each costs a recomputed forward), then the
  // larger loss chunk (fewer repacks of the output layer).
  const candidates = mode === "on" ? [L] : mode === "off" ? [0] : null;
  for (const chunk of chunks) {
    if (candidates) {
      const c = at(candidates[0], chunk);
      if (fits(c)) return { fits: true, ...c };
      continue;
    }
    if (fits(at(0, chunk))) return { fits: true, ...at(0, chunk) };
  }
  if (!candidates) {
    // Memory falls as layers are checkpointed: the fewest that fit, by bisection, for each
    // chunk size; the fewer layers win.
    let best: PlanChoice | null = null;
    for (const chunk of chunks) {
      if (!fits(at(L, chunk))) continue;
      let lo = 0;
      let hi = L;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (fits(at(mid, chunk))) hi = mid;
        else lo = mid;
      }
      if (!best || hi < best.checkpointLayers) best = at(hi, chunk);
    }
    if (best) return { fits: true, ...best };
  }
  const ckLayers = mode === "off" ? 0 : L;
  const tight = chunks[chunks.length - 1];
  const best = at(ckLayers, tight);
  const suggestions: string[] = [];
  const fitsWith = (patch: Partial<TrainingShape>) => fits(at(ckLayers, tight, patch));
  // The largest batch that fits (bisection: fitting is monotone in the batch), then the
  // largest divisor of the sequences per step below it, so batch × grad-accum stays the same.
  const total = s.batchSize * (opts.gradAccum ?? 1);
  if (s.batchSize > 1 && fitsWith({ batchSize: 1 })) {
    let lo = 1;
    let hi = s.batchSize;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (fitsWith({ batchSize: mid })) lo = mid;
      else hi = mid;
    }
    let b = lo;
    while (total % b !== 0) b--;
    suggestions.push(`--batch-size ${b} --grad-accum ${total / b} (the same ${total} sequences per step)`);
  }
  if (s.method === "lora" && opts.qloraWeightBytes !== undefined)
    if (fitsWith({ method: "qlora", weightBytes: opts.qloraWeightBytes })) suggestions.push("--quantize nf4");
  for (let t = Math.floor(s.seqLen / 2); t >= 16; t = Math.floor(t / 2))
    if (fitsWith({ seqLen: t, batchSize: 1 })) {
      suggestions.push(`--seq-len ${t}${s.batchSize > 1 ? " --batch-size 1" : ""}`);
      break;
    }
  if (mode === "off" && fits(at(L, tight))) suggestions.unshift("--gradient-checkpointing auto");
  return { fits: false, best, suggestions };
}

/** Parses "4GiB", "6000MB", "1.5G", "512MiB" or a number of bytes. */
export function parseByteSize(v: string): number {
  const m = /^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)b?\s*$/i.exec(v);
  if (!m) throw new RangeError(`cannot read ${JSON.stringify(v)} as a size (e.g. 4GiB, 6000MB, 1.5G)`);
  const n = Number(m[1]);
  const unit = m[2].toLowerCase();
  const base = m[3] || unit === "" ? 1024 : 1000;
  const pow = { "": 0, k: 1, m: 2, g: 3, t: 4 }[unit] ?? 0;
  const bytes = n * (unit === "" ? 1 : base ** pow);
  if (!(bytes > 0) || !Number.isFinite(bytes))
    throw new RangeError(`size ${JSON.stringify(v)} must be positive`);
  return Math.floor(bytes);
}
