// torch.optim.SGD (maximize off). Per parameter with a gradient:
//   d = g + weight_decay·param                        (coupled L2, when weight_decay ≠ 0)
//   buf = d on the first step, else momentum·buf + (1 − dampening)·d   (when momentum ≠ 0)
//   d = nesterov ? d + momentum·buf : buf
//   param −= lr·d
// Parameters whose `.grad` is null are skipped (their momentum buffer is left as is).
import type { FloatArray, Tensor } from "../core/index.js";
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
} from "./optimizer.js";

/** SGD hyperparameters; every one optional. */
export interface SGDOptions {
  /** Learning rate (default 1e-3, as torch ≥ 2.0; torch 1.x required it). */
  lr?: number;
  /** Momentum factor (default 0: plain SGD). */
  momentum?: number;
  /** Dampening of the momentum (default 0). */
  dampening?: number;
  /** L2 penalty added to the gradient (default 0). */
  weightDecay?: number;
  /** Nesterov momentum (default false); needs momentum > 0 and dampening 0. */
  nesterov?: boolean;
}

export interface SGDParamGroup extends SGDOptions {
  params: Tensor[];
  name?: string;
}

export interface SGDGroup extends ParamGroupBase {
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

/** Per-parameter SGD state: the momentum buffer (null until the first step with momentum). */
export interface SGDState {
  momentumBuffer: FloatArray | null;
}

export const SGD_DEFAULTS = Object.freeze({
  lr: 1e-3,
  momentum: 0,
  dampening: 0,
  weightDecay: 0,
  nesterov: false,
});

/**
 * Stochastic gradient descent with momentum, dampening, Nesterov and weight decay, as
 * torch.optim.SGD.
 *
 * @example
 * const opt = new SGD(params, { lr: 0.1, momentum: 0.9, nesterov: true });
 */
export class SGD extends Optimizer<SGDGroup, SGDState> {
  constructor(params: readonly Tensor[] | readonly SGDParamGroup[], defaults: SGDOptions = {}) {
    const d = { ...SGD_DEFAULTS, ...stripUndefined(defaults) };
    const groups = toGroupSpecs<SGDParamGroup>("SGD", params).map((s): SGDGroup => {
      const o = stripUndefined(s);
      const g: SGDGroup = {
        params: s.params,
        lr: o.lr ?? d.lr,
        momentum: o.momentum ?? d.momentum,
        dampening: o.dampening ?? d.dampening,
        weightDecay: o.weightDecay ?? d.weightDecay,
        nesterov: o.nesterov ?? d.nesterov,
      };
      if (s.name !== undefined) g.name = s.name;
      return g;
    });
    super("SGD", groups);
  }

  protected checkGroup(g: SGDGroup, where: string): void {
    checkNonNegative("SGD", "lr", g.lr, where);
    checkNonNegative("SGD", "momentum", g.momentum, where);
    checkNonNegative("SGD", "dampening", g.dampening, where);
    checkNonNegative("SGD", "weightDecay", g.weightDecay, where);
    if (typeof g.nesterov !== "boolean")
      throw new OptimizerError(`SGD: nesterov must be true or false, got ${String(g.nesterov)} (${where})`);
    if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0))
      throw new OptimizerError(
        `SGD: Nesterov momentum requires momentum > 0 and dampening = 0, got momentum ${g.momentum} and dampening ${g.dampening} (${where})`,
      );
  }

  /** One SGD update of every parameter whose `.grad` is set. */
  step(): void {
    for (const [gi, g] of this.paramGroups.entries()) {
      const where = groupLabel(gi, g.name);
      const { lr, momentum, dampening, weightDecay: wd, nesterov } = g;
      for (const p of g.params) {
        if (p.grad === null) continue;
        const param = floatData("SGD", p, where);
        const grad = gradData("SGD", p, where);
        const n = param.length;
        if (momentum === 0) {
          for (let i = 0; i < n; i++) param[i] -= lr * (grad[i] + wd * param[i]);
          continue;
        }
        let s = this.state.get(p);
        if (s === undefined) {
          s = { momentumBuffer: null };
          this.state.set(p, s);
        }
        let buf = s.momentumBuffer;
        const first = buf === null;
        if (buf === null) {
          buf = param instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
          s.momentumBuffer = buf;
        }
        const keep = 1 - dampening;
        for (let i = 0; i < n; i++) {
          const d = grad[i] + wd * param[i];
          buf[i] = first ? d : momentum * buf[i] + keep * d;
          param[i] -= lr * (nesterov ? d + momentum * buf[i] : buf[i]);
        }
      }
    }
  }

  protected saveParamState(s: SGDState): ParamStateDict {
    return s.momentumBuffer === null ? {} : { momentumBuffer: s.momentumBuffer.slice() };
  }

  protected loadParamState(raw: ParamStateDict, p: Tensor, where: string): SGDState {
    if (raw.momentumBuffer === undefined) return { momentumBuffer: null };
    return { momentumBuffer: loadBuffer("SGD", raw, "momentumBuffer", p, where) };
  }
}
