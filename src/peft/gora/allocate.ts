// GoRA's rank allocation (official code: gora.py get_allocated_rank): the budget of vanilla
// LoRA at a reference rank, Σ (in + out)·r_ref parameters, split across layers in
// proportion to importance, each layer's rank clamped to [min, max].

/** How a layer's share of parameters becomes an integer: the reference's 'moderate' (Python round), 'radical' (ceil), 'conserved' (floor). */
export type GoraAllocateStrategy = "moderate" | "radical" | "conserved";

export interface GoraLayerInfo {
  name: string;
  importance: number;
  inFeatures: number;
  outFeatures: number;
}

export interface GoraAllocateOptions {
  /** The vanilla-LoRA rank whose parameter count is the budget (reference: --lora-rank). */
  refRank: number;
  /** Reference defaults: 1 and 9999. */
  minRank?: number;
  maxRank?: number;
  strategy?: GoraAllocateStrategy;
}

export interface GoraAllocation {
  ranks: Map<string, number>;
  /** Σ (in + out)·r_ref. */
  totalBudget: number;
  /** Σ (in + out)·r_k after rounding and clamping. */
  actualTrainable: number;
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

const fr = Math.fround;

/**
 * rank_k = clamp(⌊round(B·p_k) / (in_k + out_k)⌋, min, max) with p_k = imp_k / Σ imp and
 * B = Σ (in + out)·r_ref. p_k is computed in f32, as the reference's torch tensor.
 *
 * @example
 * allocateRanks([{ name: "q", importance: 2, inFeatures: 64, outFeatures: 64 }, …], { refRank: 8 });
 */
export function allocateRanks(layers: readonly GoraLayerInfo[], opts: GoraAllocateOptions): GoraAllocation {
  const minRank = opts.minRank ?? 1;
  const maxRank = opts.maxRank ?? 9999;
  if (!(Number.isInteger(opts.refRank) && opts.refRank > 0))
    throw new Error(`allocateRanks: refRank must be a positive integer, got ${opts.refRank}`);
  if (!(Number.isInteger(minRank) && minRank >= 1 && Number.isInteger(maxRank) && maxRank >= minRank))
    throw new Error(`allocateRanks: need integers 1 ≤ minRank ≤ maxRank, got ${minRank} and ${maxRank}`);
  if (layers.length === 0) throw new Error("allocateRanks: no layers (were gradients recorded?)");
  const round =
    opts.strategy === "radical" ? Math.ceil : opts.strategy === "conserved" ? Math.floor : roundHalfEven;
  let totalBudget = 0;
  let sum = 0;
  for (const l of layers) {
    if (!(l.importance >= 0)) throw new Error(`allocateRanks: importance of ${l.name} is ${l.importance}`);
    totalBudget += (l.inFeatures + l.outFeatures) * opts.refRank;
    sum += fr(l.importance);
  }
  const sumF = fr(sum);
  const ranks = new Map<string, number>();
  let actual = 0;
  for (const l of layers) {
    const features = l.inFeatures + l.outFeatures;
    const p = sumF > 0 ? fr(fr(l.importance) / sumF) : 1 / layers.length;
    const share = round(totalBudget * p);
    const rank = Math.min(Math.max(Math.floor(share / features), minRank), maxRank);
    ranks.set(l.name, rank);
    actual += rank * features;
  }
  return { ranks, totalBudget, actualTrainable: actual };
}
