// goraInit: GoRA (He et al. 2025, arXiv 2502.12171) before training — accumulate the
// gradients of the frozen target weights over n batches, rank the layers by importance,
// split the parameter budget of vanilla LoRA at r_ref in proportion, and initialise each B
// from its gradient. The result is an ordinary LoRA config (rank_pattern, alpha_pattern)
// plus the `initFor` callback for PeftModel.addAdapter, so save / merge / serve need
// nothing GoRA-specific.
import { backward } from "../../core/autograd.js";
import { tidy } from "../../core/memory.js";
import type { Rng } from "../../core/rng.js";
import { kaimingUniform, Rng as RngClass } from "../../core/rng.js";
import type { Tensor } from "../../core/tensor.js";
import { fromArray } from "../../core/tensor.js";
import type { Module } from "../../nn/module.js";
import type { LoraConfig } from "../config.js";
import { loraConfig } from "../config.js";
import { PeftError } from "../errors.js";
import type { AdapterInit } from "../model.js";
import { findTargets } from "../targets.js";
import type { GoraAllocateStrategy } from "./allocate.js";
import { allocateRanks } from "./allocate.js";
import type { GoraImportanceType } from "./importance.js";
import { goraImportance } from "./importance.js";
import { goraInitB } from "./init.js";

export interface GoraOptions {
  /** Batches of gradient accumulation (the reference's iters; default: all given). */
  nBatches?: number;
  importance?: GoraImportanceType;
  /** Rank bounds (reference defaults 1 and 9999; the budget still follows r). */
  minRank?: number;
  maxRank?: number;
  strategy?: GoraAllocateStrategy;
  /** γ in B = G·A⁺·γ/α (reference --gora-stable-gemma, default 0.02). */
  gamma?: number;
  /** Seed for the random A (Kaiming-uniform, as LoRA's A). */
  seed?: number;
}

export interface GoraResult {
  /** A LoRA config with per-module rank_pattern and alpha_pattern. */
  config: LoraConfig;
  init: Required<Pick<AdapterInit, "initFor">>;
  ranks: Map<string, number>;
  importances: Map<string, number>;
  totalBudget: number;
  actualTrainable: number;
}

/**
 * @param model the base model (no adapters yet)
 * @param config the LoRA config: r is the reference rank whose budget is shared, lora_alpha the α
 * @param lossOf a batch's scalar loss (e.g. the trainer's batchLoss)
 *
 * @example
 * const g = goraInit(model, batches, (b) => batchLoss(model, b), { r: 8, loraAlpha: 16, targetModules: ["q_proj", "v_proj"] });
 * const peft = getPeftModel(model, g.config, "default", g.init);
 */
export function goraInit<B>(
  model: Module & { readonly config?: { modelType?: string } },
  batches: Iterable<B>,
  lossOf: (batch: B) => Tensor,
  config: Partial<LoraConfig>,
  opts: GoraOptions = {},
): GoraResult {
  const base = loraConfig(config);
  const paths = findTargets(base, model, model.config?.modelType);
  const weights = paths.map((p) => {
    const w = model.getSubmodule(p).param("weight");
    if (!w) throw new PeftError(`GoRA: ${p} has no weight`);
    if (w.dtype !== "f32")
      throw new PeftError(`GoRA: ${p}.weight is ${w.dtype}; gradients of the base weights need an f32 model`);
    return w;
  });
  // Only the targeted base weights require grad while the gradients are gathered.
  const saved = new Map<Tensor, boolean>();
  for (const p of model.parameters()) {
    saved.set(p, p.requiresGrad);
    p.requiresGrad = false;
  }
  const prevGrads = weights.map((w) => w.grad);
  for (const w of weights) {
    w.grad = null;
    w.requiresGrad = true;
  }
  const n = opts.nBatches ?? Number.POSITIVE_INFINITY;
  let used = 0;
  const sums = weights.map((w) => new Float64Array(w.size));
  try {
    for (const b of batches) {
      if (used >= n) break;
      tidy(() => {
        backward(lossOf(b));
      });
      weights.forEach((w, i) => {
        const g = w.grad?.data as Float32Array | undefined;
        if (g) for (let j = 0; j < g.length; j++) sums[i][j] += g[j];
        w.grad?.dispose();
        w.grad = null;
      });
      used++;
    }
  } finally {
    for (const [p, f] of saved) p.requiresGrad = f;
    weights.forEach((w, i) => {
      w.grad = prevGrads[i];
    });
  }
  if (used === 0) throw new PeftError("GoRA: no batches to accumulate gradients from");
  // The reference divides the stored sum by the number of iterations (a mean gradient).
  const grads = sums.map((s) => Float32Array.from(s, (v) => v / used));
  const importances = new Map<string, number>();
  const infos = paths.map((p, i) => {
    const w = weights[i];
    const imp = goraImportance(w.data as Float32Array, grads[i], opts.importance ?? "union_frobenius_norm");
    importances.set(p, imp);
    return { name: p, importance: imp, inFeatures: w.shape[1], outFeatures: w.shape[0] };
  });
  const alloc = allocateRanks(infos, {
    refRank: base.r,
    minRank: opts.minRank,
    maxRank: opts.maxRank,
    strategy: opts.strategy,
  });
  // Every layer keeps the reference scale α/r_ref (the reference's scale_rank = avg rank):
  // alpha_k = α·r_k/r_ref, so that alpha_k/r_k = α/r_ref.
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const [p, r] of alloc.ranks) {
    rankPattern[p] = r;
    alphaPattern[p] = (base.loraAlpha * r) / base.r;
  }
  const gamma = opts.gamma ?? 0.02;
  const rng: Rng = new RngClass(opts.seed ?? 0);
  const inits = new Map<string, { A: Tensor; B: Tensor }>();
  paths.forEach((p, i) => {
    const r = alloc.ranks.get(p)!;
    const [out, inF] = weights[i].shape;
    const A = kaimingUniform(rng, [r, inF]);
    const B = goraInitB(A.data as Float32Array, grads[i], r, inF, out, gamma, base.loraAlpha);
    inits.set(p, { A, B: fromArray(B, [out, r]) });
  });
  const cfg = loraConfig({ ...base, rankPattern, alphaPattern });
  return {
    config: cfg,
    init: {
      initFor: (path, _layer, r) => {
        const e = inits.get(path);
        if (!e || e.A.shape[0] !== r) return null;
        return e;
      },
    },
    ranks: alloc.ranks,
    importances,
    totalBudget: alloc.totalBudget,
    actualTrainable: alloc.actualTrainable,
  };
}
