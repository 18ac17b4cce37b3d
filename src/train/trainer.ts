// The training loop. It never prints: it yields typed events (the CLI renders them), and
// it can snapshot everything a resumed run needs to continue to the same losses.
import { backward } from "../core/autograd.js";
import { noGrad, setWeightPacking } from "../core/engine.js";
import { LorakitError } from "../core/errors.js";
import { tidy } from "../core/memory.js";
import { add, crossEntropy, reshape, scale } from "../core/ops/index.js";
import type { Rng } from "../core/rng.js";
import type { Tensor } from "../core/tensor.js";
import { fromArray } from "../core/tensor.js";
import { clipGradNorm } from "../optim/clip.js";
import type { Optimizer, OptimizerStateDict, ParamGroupBase } from "../optim/optimizer.js";
import type { LrScheduler, LrSchedulerState } from "../optim/schedule.js";
import type { Batch, Batcher, BatcherState } from "./data.js";

export class TrainingError extends LorakitError {}

/** What the trainer needs of a model: logits from ids, and its parameters by name. */
export interface TrainableModel {
  forward(ids: Tensor): Tensor;
  /**
   * The mean next-token loss of ids against targets (−100 ignored), when the model computes
   * it without materialising the logits (LlamaForCausalLM, PeftModel); else forward is used.
   */
  loss?(ids: Tensor, targets: Tensor): Tensor;
  namedParameters(): IterableIterator<[string, Tensor]>;
  train(flag?: boolean): unknown;
}

export interface TrainerOptions {
  /** Optimizer steps to run in total (a resumed run continues up to this). */
  steps: number;
  /** Micro-batches per optimizer step (gradient accumulation). Default 1. */
  gradAccumulation?: number;
  /** Clip the global gradient norm to this (0 = off). Default 1.0. */
  maxGradNorm?: number;
  /** Run the eval set every N steps (0 = only at the end). Default 0. */
  evalEvery?: number;
  evalBatches?: readonly Batch[];
  /** Ask for a checkpoint every N steps (0 = never). */
  checkpointEvery?: number;
  /** Randomness inside the model (dropout); saved in checkpoints. */
  rng?: Rng | null;
  /** More state a resumed run needs (e.g. AdaLoRA's allocator), as JSON-able data. */
  extraState?: { save(): unknown; load(state: unknown): void };
  /**
   * Added to each micro-batch's loss before backward (AdaLoRA's orthogonal regulariser, as
   * PEFT adds it in AdaLoraModel.forward). The reported loss stays the data loss.
   */
  extraLoss?: () => Tensor;
  /**
   * Called after optimizer.step() and before zeroGrad() with the 0-based step, where PEFT's
   * examples call AdaLoRA's update_and_allocate(global_step).
   */
  afterOptimizerStep?: (step: number) => void;
}

export type TrainEvent =
  | { type: "start"; step: number; totalSteps: number; trainableParams: number }
  | {
      type: "step";
      step: number;
      totalSteps: number;
      loss: number;
      lr: number;
      gradNorm: number;
      tokens: number;
      tokensPerSecond: number;
      elapsedSeconds: number;
    }
  | { type: "eval"; step: number; loss: number; tokens: number }
  | { type: "checkpoint"; step: number; state: TrainerState }
  | { type: "end"; step: number; finalLoss: number; tokensPerSecond: number; elapsedSeconds: number };

/** Everything besides parameter values that a resumed run needs. JSON-able except optimizer buffers. */
export interface TrainerState {
  step: number;
  /** The run's planned total (the schedule depends on it); a resume with another total differs from an uninterrupted run. */
  totalSteps?: number;
  optimizer: OptimizerStateDict;
  scheduler: LrSchedulerState;
  batcher: BatcherState;
  rng: { s: number[]; spare: number | null } | null;
  losses: { step: number; loss: number; lr: number }[];
  /** Held-out losses so far (step 0: before training), so a resumed run's curve keeps them. */
  evals?: { step: number; loss: number }[];
  /** TrainerOptions.extraState's data. */
  extra?: unknown;
}

/** Mean cross-entropy of one batch (targets −100 ignored); through `model.loss` when it has one. */
export function batchLoss(model: Pick<TrainableModel, "forward" | "loss">, batch: Batch): Tensor {
  const ids = fromArray(batch.inputs, [batch.batchSize, batch.seqLen]);
  const targets = fromArray(batch.targets, [batch.batchSize * batch.seqLen]);
  if (model.loss) return model.loss(ids, targets);
  const logits = model.forward(ids);
  return crossEntropy(reshape(logits, [-1, logits.shape[logits.rank - 1]]), targets);
}

/** Token-weighted mean loss over batches, without gradients. */
export function evaluateBatches(
  model: TrainableModel,
  batches: readonly Batch[],
): { loss: number; tokens: number } {
  let sum = 0;
  let tokens = 0;
  model.train(false);
  // An evaluation between training steps leaves the weights row-major: packing them here
  // (inference's layout) would be undone by the next step's backward.
  const packing = setWeightPacking(false);
  try {
    noGrad(() => {
      for (const b of batches) {
        if (b.tokens === 0) continue;
        sum += tidy(() => batchLoss(model, b).item()) * b.tokens;
        tokens += b.tokens;
      }
    });
  } finally {
    setWeightPacking(packing);
  }
  return { loss: tokens ? sum / tokens : Number.NaN, tokens };
}

/**
 * Runs `opts.steps` optimizer steps, yielding an event after each.
 *
 * @example
 * const trainer = new Trainer(peft, batcher, opt, sched, { steps: 100 });
 * for (const ev of trainer.run()) if (ev.type === "step") console.log(ev.step, ev.loss);
 */
export class Trainer {
  step = 0;
  readonly losses: { step: number; loss: number; lr: number }[] = [];
  /** Every held-out loss of the run (its eval events, and what recordEval adds), in order. */
  readonly evals: { step: number; loss: number }[] = [];
  private readonly params: [string, Tensor][];

  constructor(
    readonly model: TrainableModel,
    readonly batcher: Batcher,
    /** Any optimizer: AdamW, SGD, LoRA+ groups. */
    readonly optimizer: Optimizer<ParamGroupBase, object>,
    readonly scheduler: LrScheduler,
    readonly opts: TrainerOptions,
  ) {
    this.params = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
    if (this.params.length === 0) throw new TrainingError("nothing to train: no parameter requires grad");
    if (!Number.isInteger(opts.steps) || opts.steps < 1)
      throw new TrainingError(`steps must be a positive integer, got ${opts.steps}`);
  }

  /** A snapshot for checkpoints (copies). */
  state(): TrainerState {
    return {
      step: this.step,
      totalSteps: this.opts.steps,
      optimizer: this.optimizer.stateDict(),
      scheduler: this.scheduler.stateDict(),
      batcher: this.batcher.getState(),
      rng: this.opts.rng ? this.opts.rng.getState() : null,
      losses: this.losses.map((l) => ({ ...l })),
      evals: this.evals.map((e) => ({ ...e })),
      extra: this.opts.extraState?.save(),
    };
  }

  /** Continues from a snapshot (parameter values must have been restored by the caller). */
  restore(s: TrainerState): void {
    this.step = s.step;
    this.optimizer.loadStateDict(s.optimizer);
    this.scheduler.loadStateDict(s.scheduler);
    this.batcher.setState(s.batcher);
    if (s.rng && this.opts.rng) this.opts.rng.setState(s.rng);
    this.losses.length = 0;
    this.losses.push(...s.losses);
    this.evals.length = 0;
    this.evals.push(...(s.evals ?? []));
    if (s.extra !== undefined) this.opts.extraState?.load(s.extra);
  }

  /** Records a held-out loss measured outside run() (the one before training, at step 0). */
  recordEval(step: number, loss: number): void {
    this.evals.push({ step, loss });
  }

  private evalEvent(): Extract<TrainEvent, { type: "eval" }> {
    const ev = {
      type: "eval" as const,
      step: this.step,
      ...evaluateBatches(this.model, this.opts.evalBatches ?? []),
    };
    this.evals.push({ step: ev.step, loss: ev.loss });
    return ev;
  }

  private firstNonFiniteGrad(): string | null {
    for (const [name, p] of this.params) {
      const g = p.grad?.data;
      if (!g) continue;
      for (let i = 0; i < g.length; i++) if (!Number.isFinite(g[i])) return name;
    }
    return null;
  }

  *run(): Generator<TrainEvent> {
    const total = this.opts.steps;
    const accum = this.opts.gradAccumulation ?? 1;
    const maxNorm = this.opts.maxGradNorm ?? 1;
    const trainableParams = this.params.reduce((a, [, p]) => a + p.size, 0);
    const tensors = this.params.map(([, p]) => p);
    yield { type: "start", step: this.step, totalSteps: total, trainableParams };
    const t0 = performance.now();
    let tokensSeen = 0;
    let lastLoss = Number.NaN;
    while (this.step < total) {
      this.model.train(true);
      const lr = this.optimizer.getLr(0);
      let lossSum = 0;
      let stepTokens = 0;
      // Draw every micro-batch first: those without a trained token are skipped, and the
      // rest share the step equally (1/counted each, PyTorch's usual accumulation loop).
      const batches = Array.from({ length: accum }, () => this.batcher.next());
      for (const b of batches) stepTokens += b.batchSize * b.seqLen;
      const counted = batches.filter((b) => b.tokens > 0);
      for (const [m, batch] of counted.entries()) {
        const l = tidy(() => {
          const loss = batchLoss(this.model, batch);
          const v = loss.item();
          if (!Number.isFinite(v))
            throw new TrainingError(
              `the loss is ${v} at step ${this.step + 1} (micro-batch ${m + 1}); lower the learning rate or check the data${maxNorm > 0 ? "" : ", or enable gradient clipping"}`,
            );
          const extra = this.opts.extraLoss;
          const total = extra ? add(loss, extra()) : loss;
          backward(counted.length === 1 ? total : scale(total, 1 / counted.length));
          return v;
        });
        lossSum += l;
      }
      const gradNorm = maxNorm > 0 ? clipGradNorm(tensors, maxNorm) : Number.NaN;
      if (maxNorm > 0 && !Number.isFinite(gradNorm)) {
        const bad = this.firstNonFiniteGrad();
        throw new TrainingError(
          `the gradient norm is ${gradNorm} at step ${this.step + 1}${bad ? `; first non-finite gradient: ${bad}` : ""}`,
        );
      }
      this.optimizer.step();
      this.opts.afterOptimizerStep?.(this.step);
      this.optimizer.zeroGrad();
      this.scheduler.step();
      this.step++;
      lastLoss = counted.length ? lossSum / counted.length : Number.NaN;
      tokensSeen += stepTokens;
      this.losses.push({ step: this.step, loss: lastLoss, lr });
      const elapsed = (performance.now() - t0) / 1000;
      yield {
        type: "step",
        step: this.step,
        totalSteps: total,
        loss: lastLoss,
        lr,
        gradNorm,
        tokens: stepTokens,
        tokensPerSecond: tokensSeen / elapsed,
        elapsedSeconds: elapsed,
      };
      const ev = this.opts.evalEvery ?? 0;
      if (this.opts.evalBatches?.length && ev > 0 && this.step % ev === 0 && this.step < total)
        yield this.evalEvent();
      const ce = this.opts.checkpointEvery ?? 0;
      if (ce > 0 && this.step % ce === 0) yield { type: "checkpoint", step: this.step, state: this.state() };
    }
    if (this.opts.evalBatches?.length) yield this.evalEvent();
    const elapsed = (performance.now() - t0) / 1000;
    yield {
      type: "end",
      step: this.step,
      finalLoss: lastLoss,
      tokensPerSecond: tokensSeen / Math.max(elapsed, 1e-9),
      elapsedSeconds: elapsed,
    };
  }
}
