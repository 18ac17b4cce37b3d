// Reading test/fixtures/optim/optim.json (written by scripts/fixtures/make_optim_fixtures.py)
// and driving lorakit's optimizers through the same steps as PyTorch did.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Tensor } from "../../src/core/index.js";
import { fromArray } from "../../src/core/index.js";
import type { LrLambda } from "../../src/optim/index.js";
import {
  AdamW,
  clipGradNorm,
  constantScheduleWithWarmup,
  cosineScheduleWithWarmup,
  LrScheduler,
  linearScheduleWithWarmup,
  SGD,
} from "../../src/optim/index.js";
import { repoRoot } from "../util/repo.js";

export interface Arr {
  shape: number[];
  data: number[];
}
export interface ScheduleSpec {
  kind: "constant" | "linear" | "cosine";
  num_warmup_steps: number;
  num_training_steps?: number;
  num_cycles?: number;
}
export interface RunStep {
  grads: (Arr | null)[];
  lrs: number[];
  total_norm: number | null;
  params: Arr[];
}
export interface Run {
  name: string;
  optimizer: "adamw" | "sgd";
  groups: Record<string, unknown>[];
  init: Arr[];
  schedule: ScheduleSpec;
  max_norm: number | null;
  steps: RunStep[];
  f64_dev: number;
}
export interface ScheduleCase extends ScheduleSpec {
  base_lrs: number[];
  lambdas: number[];
  lrs: number[][];
}
export interface ClipCase {
  max_norm: number;
  norm_type: number | "inf";
  grads: Arr[];
  total_norm: number;
  clipped: Arr[];
}
export interface Fixture {
  runs: Run[];
  schedules: ScheduleCase[];
  clip: ClipCase[];
}

export const fixture: Fixture = JSON.parse(
  readFileSync(join(repoRoot(), "test", "fixtures", "optim", "optim.json"), "utf8"),
);

export function toTensor(a: Arr): Tensor<"f32"> {
  return fromArray(Float32Array.from(a.data), a.shape, "f32");
}

export function lambdaOf(s: ScheduleSpec): LrLambda {
  const opts = {
    numWarmupSteps: s.num_warmup_steps,
    numTrainingSteps: s.num_training_steps ?? 0,
    numCycles: s.num_cycles,
  };
  if (s.kind === "constant") return constantScheduleWithWarmup(opts);
  if (s.kind === "linear") return linearScheduleWithWarmup(opts);
  return cosineScheduleWithWarmup(opts);
}

const KEYS: Record<string, string> = { weight_decay: "weightDecay" };

/** A fresh optimizer + scheduler over fresh parameters (copies of `init`), as the run's groups say. */
export function build(run: Run, init: Arr[] = run.init) {
  const params = init.map((a) => toTensor(a).setRequiresGrad());
  const groups = run.groups.map((g) => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(g)) {
      if (k === "params") out.params = (v as number[]).map((i) => params[i]);
      else out[KEYS[k] ?? k] = v;
    }
    return out as { params: Tensor[] };
  });
  const opt = run.optimizer === "adamw" ? new AdamW(groups) : new SGD(groups, { lr: 0.1 });
  const sched = new LrScheduler(opt, lambdaOf(run.schedule));
  return { params, opt, sched };
}

/** Step k of a run: set grads, clip, step, advance the schedule. Returns the lrs used and the clip norm. */
export function doStep(
  run: Run,
  k: number,
  params: Tensor[],
  opt: AdamW | SGD,
  sched: LrScheduler,
): { lrs: number[]; norm: number | null } {
  for (const [i, g] of run.steps[k].grads.entries()) params[i].grad = g === null ? null : toTensor(g);
  const norm = run.max_norm === null ? null : clipGradNorm(params, run.max_norm);
  const lrs = opt.paramGroups.map((g) => g.lr);
  opt.step();
  sched.step();
  return { lrs, norm };
}

/** max|a − b| / max|b|: the error relative to the tensor's scale. */
export function scaledError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale === 0 ? err : err / scale;
}
