// The demo task with three ways to spend the same parameter budget: LoRA r=8, AdaLoRA
// (init_r 12 → target_r 8, PEFT's schedule) and GoRA (budget of LoRA r=8, ranks from
// gradients). One table: eval loss before/after, trainable parameters during training,
// final rank per layer, time. Needs the demo base model at models/demo-base.
// Run: npx tsc -p tsconfig.json && node dist/bench/rank-methods.js [steps] [--json]
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { runTraining } from "../src/cli/run-training.js";
import type { TrainOptions } from "../src/cli/train-options.js";
import { TRAIN_DEFAULTS } from "../src/cli/train-options.js";
import { prepareDemoTask } from "./demo-task.js";

const args = process.argv.slice(2);
const steps = Number(args.find((a) => /^\d+$/.test(a)) ?? 120);
const json = args.includes("--json");
const task = await prepareDemoTask("rank-methods");
const { base, dataFile, work, backend } = task;
const TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"];

const common: TrainOptions = {
  ...TRAIN_DEFAULTS,
  model: base,
  data: dataFile,
  out: "",
  steps,
  batchSize: 8,
  seqLen: 128,
  lr: 2e-3,
  warmupSteps: 10,
  r: 8,
  loraAlpha: 16,
  targetModules: TARGETS,
  validFraction: 0.03,
  seed: 0,
  evalEvery: 0,
};
const runs: { name: string; o: Partial<TrainOptions> }[] = [
  { name: "LoRA r=8", o: { method: "lora" } },
  {
    name: "AdaLoRA 12→8",
    // PEFT's examples leave a warm-up and a final phase; here 10% and 30% of the run.
    o: {
      method: "adalora",
      initR: 12,
      targetR: 8,
      tinit: Math.round(steps * 0.1),
      tfinal: Math.round(steps * 0.3),
      deltaT: 1,
    },
  },
  { name: "GoRA budget r=8", o: { method: "gora", goraBatches: 8 } },
];

interface Row {
  method: string;
  eval_before: number | null;
  eval_after: number | null;
  trainable_params: number;
  final_params: number;
  seconds: number;
  ranks: Record<string, number>;
}
const rows: Row[] = [];
for (const r of runs) {
  const out = join(work, r.name.replace(/\W+/g, "-"));
  mkdirSync(out, { recursive: true });
  const run = await runTraining({ ...common, ...r.o, out }, () => {}, true);
  const ranks: Record<string, number> = {};
  let finalParams = 0;
  for (const [path, l] of run.peft!.loraLayers()) {
    const k = l.r.get("default")!;
    ranks[path] = k;
    finalParams += k * (l.inFeatures + l.outFeatures);
  }
  rows.push({
    method: r.name,
    eval_before: run.summary.eval_loss_before,
    eval_after: run.summary.eval_loss_after,
    trainable_params: run.summary.trainable_params,
    final_params: finalParams,
    seconds: run.summary.seconds,
    ranks,
  });
  if (!json) console.error(`${r.name}: done in ${run.summary.seconds.toFixed(1)} s`);
}
task.cleanup();

if (json) console.log(JSON.stringify({ backend, steps, targets: TARGETS, rows }, null, 2));
else {
  console.log(
    `demo task (SOTU 1990–2021 on models/demo-base), ${steps} steps, targets ${TARGETS.join(",")}, backend ${backend}\n`,
  );
  console.log(
    "| method | eval loss before → after | trainable params (training) | LoRA params at the end | time (s) |",
  );
  console.log("|---|---|---|---|---|");
  for (const r of rows)
    console.log(
      `| ${r.method} | ${r.eval_before?.toFixed(4)} → ${r.eval_after?.toFixed(4)} | ${r.trainable_params.toLocaleString("en-US")} | ${r.final_params.toLocaleString("en-US")} | ${r.seconds.toFixed(1)} |`,
    );
  const paths = Object.keys(rows[0].ranks);
  const kinds = TARGETS;
  const layers = [...new Set(paths.map((p) => /layers\.(\d+)\./.exec(p)?.[1] ?? "?"))];
  console.log("\nfinal rank per layer (q,k,v,o):\n");
  console.log(`| method | ${layers.map((l) => `layer ${l}`).join(" | ")} |`);
  console.log(`|---|${layers.map(() => "---").join("|")}|`);
  for (const r of rows)
    console.log(
      `| ${r.method} | ${layers
        .map((l) => kinds.map((k) => r.ranks[`model.layers.${l}.self_attn.${k}`] ?? 0).join(","))
        .join(" | ")} |`,
    );
}
