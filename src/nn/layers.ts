// The basic layers, named as torch.nn: Linear, Embedding, RMSNorm.
import { DTypeError, fmtShape, ShapeError } from "../core/errors.js";
import { embedding, linear, rmsNorm } from "../core/ops/index.js";
import type { Rng } from "../core/rng.js";
import { kaimingUniform, randUniform } from "../core/rng.js";
import type { Tensor } from "../core/tensor.js";
import { ones, zeros } from "../core/tensor.js";
import { Module } from "./module.js";

/** Something that maps (..., in) → (..., out) like a linear layer (Linear, LoraLinear, Linear4bit...). */
export interface LinearLike extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  forward(x: Tensor): Tensor;
}

/**
 * A layer whose inference forward is a plain Linear's product plus a part added on top (a
 * LoRA layer with one plain adapter): a decode step can then run the base product in one
 * backend call with its siblings' (q/k/v, gate/up) and add the rest after, the same bits.
 */
export interface BaseAndDelta {
  /**
   * The base Linear and `addDelta(x, y)`, which adds the rest to one row y (out) = base(x) for
   * x (in); null when forward() is not of that form right now (merged, several adapters,
   * dropout, a variant, grad recording...).
   */
  baseAndDelta(): { base: Linear; addDelta(x: Float32Array, y: Float32Array): void } | null;
}

export function hasBaseAndDelta(m: object): m is BaseAndDelta {
  return typeof (m as Partial<BaseAndDelta>).baseAndDelta === "function";
}

/** A layer that can skip computing an output nobody reads (see Linear.forwardGradOnly). */
export interface GradOnlyForward {
  forwardGradOnly(x: Tensor): Tensor;
}

export function hasGradOnlyForward(m: Module): m is Module & GradOnlyForward {
  return typeof (m as Partial<GradOnlyForward>).forwardGradOnly === "function";
}

export function isLinearLike(m: Module): m is LinearLike {
  return "inFeatures" in m && "outFeatures" in m && typeof (m as LinearLike).forward === "function";
}

/** y = x·Wᵀ + b. W: (out, in), stored f32 or (frozen) bf16. */
export class Linear extends Module implements LinearLike {
  weight: Tensor;
  bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: { bias?: boolean; rng?: Rng; weight?: Tensor; biasTensor?: Tensor | null } = {},
  ) {
    super();
    let w = opts.weight;
    if (!w) {
      // nn.Linear's default: kaiming_uniform_(a=√5) for W, U(±1/√in) for b.
      w = opts.rng ? kaimingUniform(opts.rng, [outFeatures, inFeatures]) : zeros([outFeatures, inFeatures]);
    }
    if (w.rank !== 2 || w.shape[0] !== outFeatures || w.shape[1] !== inFeatures)
      throw new ShapeError(
        `Linear(${inFeatures} → ${outFeatures}): weight ${fmtShape(w.shape)} must be [${outFeatures}, ${inFeatures}]`,
      );
    this.weight = this.addParam("weight", w);
    let b = opts.biasTensor ?? null;
    if (!b && opts.bias) {
      const bound = 1 / Math.sqrt(inFeatures);
      b = opts.rng ? randUniform(opts.rng, [outFeatures], -bound, bound) : zeros([outFeatures]);
    }
    this.bias = this.addParam("bias", b);
  }

  protected override onParamSet(name: string, t: Tensor | null): void {
    if (name === "weight") {
      if (!t) throw new ShapeError("Linear.weight cannot be null");
      this.weight = t;
    } else if (name === "bias") this.bias = t;
  }

  /** x: (..., in) → (..., out). */
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }

  /**
   * forward() for a caller that only backpropagates through the output and never reads it
   * (an activation-checkpointing recompute): the product is skipped while grad is recorded.
   */
  forwardGradOnly(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias, { valueUnread: true });
  }
}

/** A lookup table (V, C): f32/f64, or a frozen bf16/f16 table whose rows are widened to f32. */
export class Embedding extends Module {
  weight: Tensor;
  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    opts: { rng?: Rng; weight?: Tensor } = {},
  ) {
    super();
    const w =
      opts.weight ??
      (opts.rng
        ? randUniform(opts.rng, [numEmbeddings, embeddingDim], -1, 1)
        : zeros([numEmbeddings, embeddingDim]));
    this.weight = this.addParam("weight", w);
  }
  protected override onParamSet(name: string, t: Tensor | null): void {
    if (name === "weight" && t) this.weight = t;
  }
  /** ids: i32 (...) → (..., C). */
  forward(ids: Tensor): Tensor {
    if (this.weight.dtype === "i32" || this.weight.dtype === "u8")
      throw new DTypeError(`Embedding: table must be a float tensor to look up, got ${this.weight.dtype}`);
    return embedding(this.weight, ids);
  }
}

/** HF LlamaRMSNorm. */
export class RMSNorm extends Module {
  weight: Tensor;
  constructor(
    readonly dim: number,
    readonly eps: number,
    opts: { weight?: Tensor } = {},
  ) {
    super();
    this.weight = this.addParam("weight", opts.weight ?? ones([dim]));
  }
  protected override onParamSet(name: string, t: Tensor | null): void {
    if (name === "weight" && t) this.weight = t;
  }
  /** x: (..., C) → (..., C). */
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}
