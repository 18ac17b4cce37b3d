// The body of `lorakit train` (also used by the demo): plan, load, wrap (the method is
// peft/training-method.ts's), train with checkpoints and resume, save (train-output.ts).
import { join } from "node:path";
import type { Tensor } from "../core/tensor.js";
import type { LlamaForCausalLM } from "../models/llama/model.js";
import { loadModel } from "../models/node/load.js";
import { AdamW } from "../optim/adamw.js";
import { createLoraPlusOptimizer } from "../optim/lora-plus.js";
import type { Optimizer, ParamGroupBase } from "../optim/optimizer.js";
import { LrScheduler, scheduleByName } from "../optim/schedule.js";
import { countParameters } from "../peft/count.js";
import type { PeftModel } from "../peft/model.js";
import { finalRanks, prepareTraining } from "../peft/training-method.js";
import { linear4bitModules } from "../quant/model.js";
import { loadTokenizer } from "../tokenizer/node.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { Batcher, evalBatches, padIdFor } from "../train/data.js";
import { loadSplits } from "../train/data-node.js";
import { saveCheckpoint } from "../train/node/checkpoint.js";
import type { TrainableModel, TrainEvent } from "../train/trainer.js";
import { evaluateBatches, Trainer } from "../train/trainer.js";
import { CliError, fmtBytes, log } from "./output.js";
import { asciiChart } from "./plot.js";
import { trainingMethodSpec } from "./train-method-spec.js";
import type { TrainOptions } from "./train-options.js";
import { saveTrainedModel, writeLossFiles } from "./train-output.js";
import type { TrainPlan } from "./train-plan.js";
import { planTrainRun, residentDTypeFor } from "./train-plan.js";
import { resumeTraining } from "./train-resume.js";

export interface TrainSummary {
  steps: number;
  final_loss: number;
  tokens_per_second: number;
  eval_loss_before: number | null;
  eval_loss_after: number | null;
  trainable_params: number;
  all_params: number;
  trainable_line: string;
  seconds: number;
  out: string;
  resumed_from: string | null;
  train_examples: number;
  valid_examples: number;
  method: "lora" | "adalora" | "gora" | "full";
  /** Final rank per adapted module (AdaLoRA: kept triplets; GoRA: allocated). */
  final_ranks: Record<string, number> | null;
  /** The memory plan the run followed (bytes) and the process's peak resident set. */
  memory: {
    budget: number;
    estimate: number;
    weights: number;
    trainable: number;
    activations: number;
    checkpointed_layers: number;
    peak_rss: number;
  };
}

export interface TrainRun {
  summary: TrainSummary;
  model: LlamaForCausalLM;
  peft: PeftModel<LlamaForCausalLM> | null;
  tokenizer: Tokenizer;
  losses: { step: number; loss: number; lr: number }[];
  evals: { step: number; loss: number }[];
}

export async function runTraining(
  o: TrainOptions,
  onEvent: (ev: TrainEvent) => void,
  quiet = false,
): Promise<TrainRun> {
  const say = quiet ? () => {} : log;
  const t0 = performance.now();
  // The plan comes first: from the headers alone, before any weight is read.
  const plan = planTrainRun(o);
  const ck = plan.result.checkpointLayers;
  say(
    `memory plan: about ${fmtBytes(plan.result.memory.total)} of a ${fmtBytes(plan.budget)} budget (${plan.budgetSource}): weights ${fmtBytes(plan.result.memory.weights)}, trainable state ${fmtBytes(plan.result.memory.trainable)}, activations ${fmtBytes(plan.result.memory.activations)}${ck ? `, activation checkpointing on ${ck} of ${model0Layers(plan)} layers` : ""}`,
  );
  const { model } = loadModel(o.model, {
    dtype: residentDTypeFor(o),
    quantize: o.quantize === "nf4" ? "nf4" : null,
  });
  model.lossChunkTokens = plan.result.lossChunkTokens;
  if (ck > 0) model.gradientCheckpointingEnable(ck);
  if (o.quantize === "nf4")
    say(
      `QLoRA: ${linear4bitModules(model).length} decoder linear layers quantised to NF4 while loading (block 64, double quantisation)`,
    );
  const tokenizer = loadTokenizer(o.model);
  const { train, valid, data } = loadSplits(o.data, tokenizer, {
    seqLen: o.seqLen,
    validPath: o.validData ?? undefined,
    validFraction: o.validData ? 0 : o.validFraction,
    seed: o.seed,
    pack: o.pack,
    trainOnPrompt: o.trainOnPrompt,
  });
  if (train.length === 0) throw new CliError(`--data ${o.data}: no training examples after the split`);
  say(
    `data: ${data.stats.examples} examples, ${data.stats.tokens} tokens → ${train.length} train / ${valid.length} valid`,
  );

  // Wrap the model for the method (peft/training-method.ts).
  const padId = padIdFor(tokenizer);
  const prepared = prepareTraining(model, trainingMethodSpec(o, model, train, padId), { seed: o.seed });
  const gora = prepared.gora;
  if (gora)
    say(
      `GoRA: budget ${gora.totalBudget.toLocaleString("en-US")} params (r=${o.r}), allocated ${gora.actualTrainable.toLocaleString("en-US")}; ranks ${[...gora.ranks.values()].join(",")}`,
    );
  const trainable: TrainableModel = prepared.trainable;
  const named = [...trainable.namedParameters()].filter(([, p]) => p.requiresGrad);
  const all = countParameters(trainable).all;
  const nTrain = named.reduce((a, [, p]) => a + p.size, 0);
  const pct = (100 * nTrain) / all;
  const line = `trainable params: ${nTrain.toLocaleString("en-US")} || all params: ${all.toLocaleString("en-US")} || trainable%: ${pct.toFixed(4)}`;
  say(line);

  const opt = createOptimizer(o, named);
  const sched = new LrScheduler(
    opt,
    scheduleByName(o.schedule, { numWarmupSteps: o.warmupSteps, numTrainingSteps: o.steps }),
  );
  const batcher = new Batcher(train, { batchSize: o.batchSize, seqLen: o.seqLen, seed: o.seed, padId });
  const validBatches = valid.length
    ? evalBatches(valid, { batchSize: o.batchSize, seqLen: o.seqLen, padId })
    : [];
  const trainer = new Trainer(trainable, batcher, opt, sched, {
    steps: o.steps,
    gradAccumulation: o.gradAccum,
    maxGradNorm: o.maxGradNorm,
    evalEvery: o.evalEvery,
    evalBatches: validBatches,
    checkpointEvery: o.checkpointEvery,
    // The dropout RNG and, for AdaLoRA, its regulariser, allocation and resume state.
    ...prepared.trainerOptions,
  });

  const ckptRoot = join(o.out, "checkpoints");
  const liveParams = new Map<string, Tensor>(named);
  const resumedFrom = o.resume ? resumeTraining(o.resume, ckptRoot, o.steps, trainer, liveParams, say) : null;

  const evalBefore =
    validBatches.length && !resumedFrom ? evaluateBatches(trainable, validBatches).loss : null;
  if (evalBefore !== null) say(`eval loss before training: ${evalBefore.toFixed(4)}`);
  if (evalBefore !== null) trainer.recordEval(0, evalBefore);
  // The trainer keeps every eval (a resumed run gets the earlier ones from its checkpoint).
  const evals = trainer.evals;
  let end: Extract<TrainEvent, { type: "end" }> | null = null;
  for (const ev of trainer.run()) {
    onEvent(ev);
    if (ev.type === "checkpoint")
      saveCheckpoint(ckptRoot, liveParams, ev.state, { keep: o.saveTotalLimit || null });
    if (ev.type === "end") end = ev;
  }
  const evalAfter = evals.length ? evals[evals.length - 1].loss : null;

  // Read before saving: AdaLoRA's conversion to LoRA unloads its layers.
  const ranks = finalRanks(prepared);
  const peft = saveTrainedModel(prepared, model, o.out, o.model);
  writeLossFiles(o.out, trainer.losses, evals);
  const seconds = (performance.now() - t0) / 1000;
  return {
    summary: {
      steps: trainer.step,
      final_loss: end?.finalLoss ?? Number.NaN,
      tokens_per_second: end?.tokensPerSecond ?? 0,
      eval_loss_before: evalBefore,
      eval_loss_after: evalAfter,
      trainable_params: nTrain,
      all_params: all,
      trainable_line: line,
      seconds,
      out: o.out,
      resumed_from: resumedFrom,
      train_examples: train.length,
      valid_examples: valid.length,
      method: prepared.method,
      final_ranks: ranks,
      memory: {
        budget: plan.budget,
        estimate: plan.result.memory.total,
        weights: plan.result.memory.weights,
        trainable: plan.result.memory.trainable,
        activations: plan.result.memory.activations,
        checkpointed_layers: ck,
        // resourceUsage().maxRSS is in KiB
        peak_rss: process.resourceUsage().maxRSS * 1024,
      },
    },
    model,
    peft,
    tokenizer,
    losses: trainer.losses,
    evals,
  };
}

function model0Layers(plan: TrainPlan): number {
  return plan.shape.config.numHiddenLayers;
}

/** AdamW over the trained parameters; with --lora-plus-ratio, LoRA+'s parameter groups. */
function createOptimizer(o: TrainOptions, named: [string, Tensor][]): Optimizer<ParamGroupBase, object> {
  return o.loraPlusRatio !== null && !o.full
    ? createLoraPlusOptimizer(named, {
        lr: o.lr,
        loraPlusLrRatio: o.loraPlusRatio,
        weightDecay: o.weightDecay,
      })
    : new AdamW(
        named.map(([, p]) => p),
        { lr: o.lr, weightDecay: o.weightDecay },
      );
}

export function lossChartLines(losses: { loss: number }[]): string[] {
  return asciiChart(
    losses.map((l) => l.loss),
    { width: 60, rows: 8 },
  );
}
