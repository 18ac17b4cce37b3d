// Learning-rate schedules as pure functions of the step (multipliers of the base lr), with
// the formulas of Hugging Face transformers' optimization.py:
//   warm-up (all three):  step < W  →  step / max(1, W)
//   constant:             1
//   linear:               max(0, (N − step) / max(1, N − W))
//   cosine:               max(0, ½·(1 + cos(π · cycles · 2 · (step − W) / max(1, N − W))))
// and LrScheduler, which applies one to each group like torch's LambdaLR:
// lr = base_lr · λ(step), where step counts scheduler.step() calls (0 right after
// construction, so the optimizer's first step uses λ(0)).
import type { ParamGroupBase } from "./optimizer.js";
import { OptimizerError } from "./optimizer.js";

/** The multiplier of the base learning rate at a 0-based step. */
export type LrLambda = (step: number) => number;

export interface WarmupOptions {
  /** Steps over which the multiplier rises linearly from 0 to 1 (default 0). */
  numWarmupSteps?: number;
}

export interface DecayOptions extends WarmupOptions {
  /** The total number of training steps; the multiplier reaches 0 there. */
  numTrainingSteps: number;
}

export interface CosineOptions extends DecayOptions {
  /** Number of cosine waves (default 0.5: one half-cosine from 1 down to 0). */
  numCycles?: number;
}

function count(fn: string, what: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
    throw new OptimizerError(`${fn}: ${what} must be an integer ≥ 0, got ${String(v)}`);
  return v;
}

function warmup(step: number, w: number): number {
  return step / Math.max(1, w);
}

/** transformers' get_constant_schedule_with_warmup: linear warm-up, then 1. */
export function constantScheduleWithWarmup(opts: WarmupOptions = {}): LrLambda {
  const w = count("constantScheduleWithWarmup", "numWarmupSteps", opts.numWarmupSteps ?? 0);
  return (step) => (step < w ? warmup(step, w) : 1);
}

/** transformers' get_linear_schedule_with_warmup: linear warm-up, then linear decay to 0 at numTrainingSteps. */
export function linearScheduleWithWarmup(opts: DecayOptions): LrLambda {
  const fn = "linearScheduleWithWarmup";
  const w = count(fn, "numWarmupSteps", opts.numWarmupSteps ?? 0);
  const n = count(fn, "numTrainingSteps", opts.numTrainingSteps);
  return (step) => (step < w ? warmup(step, w) : Math.max(0, (n - step) / Math.max(1, n - w)));
}

/** transformers' get_cosine_schedule_with_warmup: linear warm-up, then cosine decay (num_cycles 0.5 by default). */
export function cosineScheduleWithWarmup(opts: CosineOptions): LrLambda {
  const fn = "cosineScheduleWithWarmup";
  const w = count(fn, "numWarmupSteps", opts.numWarmupSteps ?? 0);
  const n = count(fn, "numTrainingSteps", opts.numTrainingSteps);
  const cycles = opts.numCycles ?? 0.5;
  if (typeof cycles !== "number" || !Number.isFinite(cycles))
    throw new OptimizerError(`${fn}: numCycles must be a finite number, got ${String(cycles)}`);
  return (step) => {
    if (step < w) return warmup(step, w);
    const progress = (step - w) / Math.max(1, n - w);
    return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
  };
}

export const SCHEDULE_NAMES = ["constant", "linear", "cosine"] as const;
export type ScheduleName = (typeof SCHEDULE_NAMES)[number];

/** A schedule by name (a config file's `lr_scheduler_type`); `constant` ignores numTrainingSteps. */
export function scheduleByName(name: ScheduleName, opts: CosineOptions): LrLambda {
  switch (name) {
    case "constant":
      return constantScheduleWithWarmup(opts);
    case "linear":
      return linearScheduleWithWarmup(opts);
    case "cosine":
      return cosineScheduleWithWarmup(opts);
    default:
      throw new OptimizerError(
        `scheduleByName: unknown schedule "${String(name)}"; choose one of ${SCHEDULE_NAMES.join(", ")}`,
      );
  }
}

/** What LrScheduler needs of an optimizer (AdamW and SGD both fit). */
export interface Schedulable {
  readonly paramGroups: readonly ParamGroupBase[];
  setLr(groupIndex: number, lr: number): void;
}

/** LrScheduler's resumable state. */
export interface LrSchedulerState {
  /** Number of `step()` calls so far (torch's `last_epoch`). */
  lastStep: number;
  baseLrs: number[];
}

/**
 * torch.optim.lr_scheduler.LambdaLR: every group's lr is base_lr · λ(step). The base lr is
 * the group's `initialLr` when set (a resumed optimizer), else its current lr, which is
 * then stored as `initialLr`. Construction applies λ(0). Call `step()` after each
 * optimizer step.
 *
 * @example
 * const sched = new LrScheduler(opt, cosineScheduleWithWarmup({ numWarmupSteps: 10, numTrainingSteps: 1000 }));
 * for (...) { ...; opt.step(); sched.step(); }
 */
export class LrScheduler {
  readonly baseLrs: number[];
  private readonly lambdas: LrLambda[];
  private last = 0;

  constructor(
    readonly optimizer: Schedulable,
    lambda: LrLambda | readonly LrLambda[],
  ) {
    const groups = optimizer.paramGroups;
    if (Array.isArray(lambda)) {
      if (lambda.length !== groups.length)
        throw new OptimizerError(
          `LrScheduler: got ${lambda.length} lr lambdas for ${groups.length} parameter groups; pass one function or one per group`,
        );
      this.lambdas = [...lambda];
    } else this.lambdas = groups.map(() => lambda as LrLambda);
    for (const g of groups) g.initialLr ??= g.lr;
    this.baseLrs = groups.map((g) => g.initialLr as number);
    this.apply();
  }

  /** Scheduler steps taken so far: the lr now set is for the optimizer's step number `lastStep` (0-based). */
  get lastStep(): number {
    return this.last;
  }

  /** Advances one step and sets every group's lr. */
  step(): void {
    this.last += 1;
    this.apply();
  }

  /** The lr of each group as last set. */
  lastLrs(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  stateDict(): LrSchedulerState {
    return { lastStep: this.last, baseLrs: [...this.baseLrs] };
  }

  /** Restores the step count and base lrs, and sets the lrs for that step. */
  loadStateDict(sd: LrSchedulerState): void {
    if (!sd || typeof sd.lastStep !== "number" || !Number.isInteger(sd.lastStep) || sd.lastStep < 0)
      throw new OptimizerError(
        `LrScheduler.loadStateDict: lastStep must be an integer ≥ 0, got ${String(sd?.lastStep)}`,
      );
    if (!Array.isArray(sd.baseLrs) || sd.baseLrs.length !== this.baseLrs.length)
      throw new OptimizerError(
        `LrScheduler.loadStateDict: the state has ${sd.baseLrs?.length} base lrs but the optimizer has ${this.baseLrs.length} groups`,
      );
    this.last = sd.lastStep;
    for (const [i, b] of sd.baseLrs.entries()) this.baseLrs[i] = b;
    this.apply();
  }

  private apply(): void {
    for (const [i, base] of this.baseLrs.entries()) {
      const f = this.lambdas[i](this.last);
      if (!Number.isFinite(f) || f < 0)
        throw new OptimizerError(
          `LrScheduler: the lr lambda of group ${i} returned ${f} at step ${this.last}; it must be a finite number ≥ 0`,
        );
      this.optimizer.setLr(i, base * f);
    }
  }
}
