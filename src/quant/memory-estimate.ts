// Training-memory estimator for full fine-tuning, LoRA and QLoRA of a LLaMA-family model.
// Formulas (bytes), per the QLoRA paper and Korthikanti et al. 2022 ("Reducing activation
// recomputation"), with B batch, S sequence, H hidden, L layers, A heads:
//   weights     full: P·wb; lora: P·wb + P_lora·4; qlora: P_lin·(0.5 + 1/64 + 4/(64·256))
//               + 16·4 + 256·4 per linear (maps) + P_other·wb + P_lora·4
//   gradients   full: P·wb; lora/qlora: P_lora·4 (the frozen base gets none)
//   optimizer   AdamW m and v in fp32: full 8·P; lora/qlora 8·P_lora
//   activations L·(34·S·B·H + 5·A·S²·B) at 16-bit without recomputation (the same for
//               all three methods: the frozen layers still keep their inputs for dx)
// wb = bytes per stored weight (2 for bf16/fp16, 4 for fp32). P_lin: the decoder linears,
// P_other: embeddings, lm_head (when not tied) and norms. Browser-safe.

export interface ModelShape {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  tieWordEmbeddings: boolean;
}

export type TrainMethod = "full" | "lora" | "qlora";

export interface MemoryOptions {
  method: TrainMethod;
  r?: number;
  targetModules?: readonly string[] | "all-linear";
  batchSize?: number;
  seqLen?: number;
  /** Bytes per stored (non-quantised) weight: 2 (bf16, default) or 4 (fp32). */
  weightBytes?: number;
}

export interface MemoryEstimate {
  method: TrainMethod;
  params: number;
  trainable_params: number;
  weights: number;
  gradients: number;
  optimizer: number;
  activations: number;
  total: number;
  formulas: Record<string, string>;
}

const LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;

/** [in, out] of each decoder linear. */
export function linearShapes(m: ModelShape): Record<string, [number, number]> {
  const H = m.hiddenSize;
  const q = m.numAttentionHeads * m.headDim;
  const kv = m.numKeyValueHeads * m.headDim;
  const I = m.intermediateSize;
  return {
    q_proj: [H, q],
    k_proj: [H, kv],
    v_proj: [H, kv],
    o_proj: [q, H],
    gate_proj: [H, I],
    up_proj: [H, I],
    down_proj: [I, H],
  };
}

export function estimateMemory(m: ModelShape, o: MemoryOptions): MemoryEstimate {
  const wb = o.weightBytes ?? 2;
  const r = o.r ?? 16;
  const B = o.batchSize ?? 1;
  const S = o.seqLen ?? 512;
  const L = m.numHiddenLayers;
  const H = m.hiddenSize;
  const shapes = linearShapes(m);
  const targets = o.targetModules === "all-linear" || !o.targetModules ? [...LINEARS] : o.targetModules;
  let pLin = 0;
  for (const n of LINEARS) pLin += shapes[n][0] * shapes[n][1] * L;
  const pOther = m.vocabSize * H * (m.tieWordEmbeddings ? 1 : 2) + (2 * L + 1) * H;
  const params = pLin + pOther;
  let pLora = 0;
  for (const t of targets) {
    const s = shapes[t];
    if (s) pLora += r * (s[0] + s[1]) * L;
  }
  const trainable = o.method === "full" ? params : pLora;
  const nLinears = LINEARS.length * L;
  const weights =
    o.method === "full"
      ? params * wb
      : o.method === "lora"
        ? params * wb + pLora * 4
        : pLin * (0.5 + 1 / 64 + 4 / (64 * 256)) + nLinears * (16 + 256) * 4 + pOther * wb + pLora * 4;
  const gradients = o.method === "full" ? params * wb : pLora * 4;
  const optimizer = 8 * trainable;
  const activations = L * (34 * S * B * H + 5 * m.numAttentionHeads * S * S * B);
  return {
    method: o.method,
    params,
    trainable_params: trainable,
    weights,
    gradients,
    optimizer,
    activations,
    total: weights + gradients + optimizer + activations,
    formulas: {
      weights:
        o.method === "full"
          ? "P·wb"
          : o.method === "lora"
            ? "P·wb + P_lora·4"
            : "P_lin·(0.5 + 1/64 + 4/16384) + 1088·n_linear + P_other·wb + P_lora·4",
      gradients: o.method === "full" ? "P·wb" : "P_lora·4",
      optimizer: "8·P_trainable (AdamW m, v in fp32)",
      activations: "L·(34·S·B·H + 5·A·S²·B) (16-bit, no recomputation)",
    },
  };
}
