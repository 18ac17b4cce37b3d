// torch.optim.AdamW (amsgrad off, maximize off), the update itself done by the backend's
// `adamw` kernel so the native backend runs it with SIMD. Per parameter with a gradient:
//   step += 1
//   param *= 1 − lr·weight_decay                       (decoupled weight decay)
//   m = β1·m + (1−β1)·g ;  v = β2·v + (1−β2)·g²
//   param −= (lr / (1−β1^step)) · m / (√v / √(1−β2^step) + eps)   (eps outside the sqrt)
// Parameters whose `.grad` is null are skipped, their step count included (as PyTorch).
import type { FloatArray, Tensor } from "../core/index.js";
import { backend } from "../core/index.js";
import type { ParamGroupBase, ParamStateDict } from "./optimizer.js";
import {
  checkNonNegative,
  floatData,
  gradData,
  groupLabel,
  loadBuffer,
  Optimizer,
  OptimizerError,
  stripUndefined,
  toGroupSpecs,
  zerosLike,
} from "./optimizer.js";

/** AdamW hyperparameters; every one optional, with torch's defaults. */
export interface AdamWOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Coefficients of the running averages of the gradient and its square (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the denominator, outside the square root (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay coefficient (default 0.01). */
  weightDecay?: number;
}

/** A parameter group as passed in: its tensors and options overriding the optimizer's defaults. */
export interface AdamWParamGroup extends AdamWOptions {
  params: Tensor[];
  name?: string;
}

/** A resolved AdamW group: every option filled in. */
export interface AdamWGroup extends ParamGroupBase {
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

/** Per-parameter AdamW state: first and second moments (dtype of the parameter) and the step count. */
export interface AdamWState {
  step: number;
  m: FloatArray;
  v: FloatArray;
}

export const ADAMW_DEFAULTS = Object.freeze({
  lr: 1e-3,
  betas: Object.freeze([0.9, 0.999]) as readonly [number, number],
  eps: 1e-8,
  weightDecay: 0.01,
});

/**
 * AdamW with PyTorch semantics.
 *
 * @example
 * const opt = new AdamW(model.trainableParameters(), { lr: 2e-4, weightDecay: 0 });
 * backward(loss); clipGradNorm(params, 1.0); opt.step(); opt.zeroGrad();
 *
 * @example  // per-group options
 * new AdamW([{ params: loraA, lr: 1e-4 }, { params: loraB, lr: 1.6e-3, weightDecay: 0 }]);
 */
export class AdamW extends Optimizer<AdamWGroup, AdamWState> {
  constructor(params: readonly Tensor[] | readonly AdamWParamGroup[], defaults: AdamWOptions = {}) {
    const d = { ...ADAMW_DEFAULTS, ...stripUndefined(defaults) };
    const specs = toGroupSpecs<AdamWParamGroup>("AdamW", params);
    const groups = specs.map((s): AdamWGroup => {
      const o = stripUndefined(s);
      const betas = o.betas ?? d.betas;
      const g: AdamWGroup = {
        params: [...s.params],
        lr: o.lr ?? d.lr,
        betas: Array.isArray(betas) ? [betas[0], betas[1]] : (betas as [number, number]),
        eps: o.eps ?? d.eps,
        weightDecay: o.weightDecay ?? d.weightDecay,
      };
      if (s.name !== undefined) g.name = s.name;
      return g;
    });
    super("AdamW", groups);
  }

  protected checkGroup(g: AdamWGroup, where: string): void {
    checkNonNegative("AdamW", "lr", g.lr, where);
    checkNonNegative("AdamW", "eps", g.eps, where);
    checkNonNegative("AdamW", "weightDecay", g.weightDecay, where);
    const b = g.betas;
    if (!Array.isArray(b) || b.length !== 2)
      throw new OptimizerError(`AdamW: betas must be a pair [beta1, beta2], got ${String(b)} (${where})`);
    for (const [i, beta] of b.entries())
      if (typeof beta !== "number" || !(beta >= 0 && beta < 1))
        throw new OptimizerError(
          `AdamW: betas[${i}] must be in [0, 1), got ${String(beta)} (${where}); typical values are [0.9, 0.999]`,
        );
  }

  /** One AdamW update of every parameter whose `.grad` is set. */
  step(): void {
    const be = backend();
    for (const [gi, g] of this.paramGroups.entries()) {
      const where = groupLabel(gi, g.name);
      for (const p of g.params) {
        if (p.grad === null) continue;
        const param = floatData("AdamW", p, where);
        const grad = gradData("AdamW", p, where);
        let s = this.state.get(p);
        if (s === undefined) {
          s = { step: 0, m: zerosLike(param), v: zerosLike(param) };
          this.state.set(p, s);
        }
        s.step += 1;
        be.adamw({
          param,
          grad,
          m: s.m,
          v: s.v,
          lr: g.lr,
          beta1: g.betas[0],
          beta2: g.betas[1],
          eps: g.eps,
          weightDecay: g.weightDecay,
          step: s.step,
        });
      }
    }
  }

  protected saveParamState(s: AdamWState): ParamStateDict {
    return { step: s.step, m: s.m.slice(), v: s.v.slice() };
  }

  protected loadParamState(raw: ParamStateDict, p: Tensor, where: string): AdamWState {
    const step = raw.step;
    if (typeof step !== "number" || !Number.isInteger(step) || step < 0)
      throw new OptimizerError(
        `AdamW.loadStateDict: ${where} has step ${String(step)}; a non-negative integer is expected`,
      );
    return {
      step,
      m: loadBuffer("AdamW", raw, "m", p, where),
      v: loadBuffer("AdamW", raw, "v", p, where),
    };
  }
}
