// LoRA+ (Hayou, Ghosh & Yu 2024, arXiv:2402.12354) as PEFT's create_loraplus_optimizer
// (peft/optimizers/loraplus.py): AdamW over parameter groups with different learning rates.
//
// Which matrix gets the higher rate: B. The paper's abstract: "using the same learning rate
// for A and B does not allow efficient feature learning. We then show that this
// suboptimality of LoRA can be corrected simply by setting different learning rates for
// the LoRA adapter matrices A and B with a well-chosen ratio" — the ratio being
// η_B = λ·η_A with λ > 1 (λ = 2⁴ in the authors' code), and PEFT gives groupB
// `"lr": lr * loraplus_lr_ratio`. (An article this project was seeded from says A gets
// the higher rate; that is backwards.)
//
// Groups, in PEFT's order (so state dicts line up with PEFT's optimizer):
//   0 groupA           lora_A and every other trainable ≥2-D tensor      lr,          weightDecay
//   1 embedding        LoRA embedding factors (lora_embedding_A/_B)      lrEmbedding, weightDecay
//   2 groupB           names containing "lora_B", and 1-D tensors        lr·ratio,    weightDecay
//                      (biases, DoRA's lora_magnitude_vector) that decay
//   3 groupB_no_decay  the same, for names transformers exempts from     lr·ratio,    0
//                      decay (containing "bias", or inside a norm layer)
// Only tensors with requiresGrad are included.
//
// One deliberate difference from PEFT: PEFT meant to send the parameters of a LoRA
// Embedding layer to `embedding`, but tests `isinstance(attrgetter(name)(model), Embedding)`
// on the parameter itself, which is never a module, so in PEFT that group stays empty and
// lora_embedding_A/_B land in groupA. The LoRA+ authors' code (and this function) look at
// the owning layer: here, the names lora_embedding_A / lora_embedding_B.
import type { Tensor } from "../core/index.js";
import { AdamW } from "./adamw.js";
import { OptimizerError } from "./optimizer.js";

export interface LoraPlusOptions {
  /** The base learning rate: groupA's (required). */
  lr: number;
  /** λ = lr_B / lr_A (default 16, PEFT's recommended starting point). */
  loraPlusLrRatio?: number;
  /** Learning rate of LoRA embedding factors (default 1e-6, as PEFT). */
  loraPlusLrEmbedding?: number;
  /** AdamW weight decay for every group except groupB_no_decay (default 0, as PEFT's `optimizer_kwargs.get("weight_decay", 0.0)`). */
  weightDecay?: number;
  betas?: readonly [number, number];
  eps?: number;
  /**
   * Which names are exempt from weight decay (→ groupB_no_decay when they would go to
   * groupB). Default: transformers' rule — names containing "bias", and parameters of a
   * LayerNorm/RMSNorm module (a path segment containing "norm", e.g. input_layernorm).
   */
  isNoDecay?: (name: string) => boolean;
}

export const LORA_PLUS_GROUPS = ["groupA", "embedding", "groupB", "groupB_no_decay"] as const;
export type LoraPlusGroupName = (typeof LORA_PLUS_GROUPS)[number];

/** transformers' decay exemption: "bias" anywhere in the name, or a norm layer's parameter. */
export function defaultIsNoDecay(name: string): boolean {
  if (name.includes("bias")) return true;
  const segments = name.split(".");
  return segments.slice(0, -1).some((s) => /norm/i.test(s));
}

/** The LoRA+ group a trainable parameter falls in (null when frozen). */
export function loraPlusGroupOf(
  name: string,
  param: Tensor,
  isNoDecay: (name: string) => boolean = defaultIsNoDecay,
): LoraPlusGroupName | null {
  if (!param.requiresGrad) return null;
  if (name.includes("lora_embedding_A") || name.includes("lora_embedding_B")) return "embedding";
  if (name.includes("lora_B") || param.rank === 1) return isNoDecay(name) ? "groupB_no_decay" : "groupB";
  return "groupA";
}

/**
 * AdamW with LoRA+ parameter groups (named "groupA", "embedding", "groupB",
 * "groupB_no_decay", always all four, some possibly empty, as PEFT).
 *
 * @example
 * const opt = createLoraPlusOptimizer(model.namedParameters(), { lr: 2e-4, loraPlusLrRatio: 16 });
 */
export function createLoraPlusOptimizer(
  namedParams: Iterable<[string, Tensor]>,
  opts: LoraPlusOptions,
): AdamW {
  const { lr, loraPlusLrRatio = 16, loraPlusLrEmbedding = 1e-6, weightDecay = 0 } = opts;
  const fn = "createLoraPlusOptimizer";
  if (typeof lr !== "number" || !Number.isFinite(lr) || lr < 0)
    throw new OptimizerError(`${fn}: lr must be a finite number ≥ 0, got ${String(lr)}`);
  if (typeof loraPlusLrRatio !== "number" || !Number.isFinite(loraPlusLrRatio) || loraPlusLrRatio <= 0)
    throw new OptimizerError(
      `${fn}: loraPlusLrRatio must be a finite number > 0, got ${String(loraPlusLrRatio)}; the paper uses 2–32 (lr_B = ratio · lr_A)`,
    );
  const isNoDecay = opts.isNoDecay ?? defaultIsNoDecay;
  const groups: Record<LoraPlusGroupName, Tensor[]> = {
    groupA: [],
    embedding: [],
    groupB: [],
    groupB_no_decay: [],
  };
  const seen = new Set<Tensor>();
  for (const [name, p] of namedParams) {
    if (seen.has(p)) continue; // tied weights: once, as named_parameters()
    seen.add(p);
    const g = loraPlusGroupOf(name, p, isNoDecay);
    if (g !== null) groups[g].push(p);
  }
  const total = LORA_PLUS_GROUPS.reduce((n, g) => n + groups[g].length, 0);
  if (total === 0)
    throw new OptimizerError(
      `${fn}: no parameter has requiresGrad; inject LoRA adapters (or mark parameters trainable) before building the optimizer`,
    );
  const lrB = lr * loraPlusLrRatio;
  return new AdamW(
    [
      { name: "groupA", params: groups.groupA, lr, weightDecay },
      { name: "embedding", params: groups.embedding, lr: loraPlusLrEmbedding, weightDecay },
      { name: "groupB", params: groups.groupB, lr: lrB, weightDecay },
      { name: "groupB_no_decay", params: groups.groupB_no_decay, lr: lrB, weightDecay: 0 },
    ],
    { betas: opts.betas, eps: opts.eps },
  );
}
