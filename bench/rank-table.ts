// The seed's rank table, measured: LoRA at r = 2, 4, 8, 16, 32, 64 on every linear layer
// and full fine-tuning, on the demo task (the shipped base model adapted to State of the
// Union addresses 1990–2021). One row each: trainable parameters, held-out loss before and
// after, time per step. Needs models/demo-base.
//
//   npm run build && node dist/bench/rank-table.js [steps=200] [--json]
import { rmSync } from "node:fs";
import { join } from "node:path";
import { runTraining } from "../src/cli/run-training.js";
import type { TrainOptions } from "../src/cli/train-options.js";
import { TRAIN_DEFAULTS } from "../src/cli/train-options.js";
import { prepareDemoTask } from "./demo-task.js";

const args = process.argv.slice(2);
const steps = Number(args.find((a) => /^\d+$/.test(a)) ?? 200);
const json = args.includes("--json");
const task = await prepareDemoTask("rank-table");
const { base, dataFile, work, backend } = task;

const common: TrainOptions = {
  ...TRAIN_DEFAULTS,
  model: base,
  data: dataFile,
  out: "",
  steps,
  batchSize: 8,
  seqLen: 128,
  warmupSteps: 10,
  targetModules: "all-linear",
  validFraction: 0.03,
  seed: 0,
  logEvery: 1_000_000,
};

/** The seed article's verdicts, printed next to the measurements. */
const SEED: Record<string, string> = {
  "2": "acceptable, extreme resource limits",
  "4": "acceptable, extreme resource limits",
  "8": "good, light tasks",
  "16": "very good, general",
  "32": "very good, general",
  "64": "close to full fine-tuning, complex tasks",
  full: "full fine-tuning",
};

const rows: Record<string, unknown>[] = [];
try {
  const runs: [string, Partial<TrainOptions>][] = [
    ...[2, 4, 8, 16, 32, 64].map((r): [string, Partial<TrainOptions>] => [
      String(r),
      { r, loraAlpha: 2 * r, lr: 2e-3 },
    ]),
    ["full", { full: true, lr: 5e-4 }],
  ];
  for (const [name, o] of runs) {
    const out = join(work, `run-${name}`);
    const run = await runTraining({ ...common, ...o, out }, () => {}, true);
    const s = run.summary;
    rows.push({
      method: name === "full" ? "full fine-tuning" : `LoRA r=${name}`,
      trainable_params: s.trainable_params,
      trainable_pct: (100 * s.trainable_params) / s.all_params,
      eval_loss_before: s.eval_loss_before,
      eval_loss_after: s.eval_loss_after,
      seconds_per_step: s.seconds / s.steps,
      tokens_per_second: s.tokens_per_second,
      seed_says: SEED[name],
    });
    rmSync(out, { recursive: true, force: true });
  }
} finally {
  task.cleanup();
}
if (json) for (const r of rows) console.log(JSON.stringify({ ...r, steps, backend }));
else {
  console.log(`demo task, ${steps} steps, batch 8×128, all-linear targets, alpha = 2r, backend ${backend}`);
  console.log(
    "method           | trainable | trainable% | eval loss before → after | s/step | seed article says",
  );
  for (const r of rows)
    console.log(
      `${String(r.method).padEnd(16)} | ${String(r.trainable_params).padStart(9)} | ${(r.trainable_pct as number).toFixed(2).padStart(9)}% | ${(r.eval_loss_before as number).toFixed(4)} → ${(r.eval_loss_after as number).toFixed(4)}        | ${(r.seconds_per_step as number).toFixed(3)} | ${r.seed_says}`,
    );
}
