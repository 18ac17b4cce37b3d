// The body of `lorakit train` (also used by the demo): load, wrap, train, save.
import { cpSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Rng } from "../core/rng.js";
import type { Tensor } from "../core/tensor.js";
import type { LlamaForCausalLM } from "../models/llama/model.js";
import { loadModel, saveModel } from "../models/node/load.js";
import { AdamW } from "../optim/adamw.js";
import { createLoraPlusOptimizer } from "../optim/lora-plus.js";
import { LrScheduler, scheduleByName } from "../optim/schedule.js";
import type { AdaLoraModel } from "../peft/adalora/model.js";
import { adaLoraToLora, getAdaLoraModel } from "../peft/adalora/model.js";
import { saveAdaLora } from "../peft/adalora/node/io.js";
import type { LoraConfig } from "../peft/config.js";
import { countParameters } from "../peft/count.js";
import type { GoraResult } from "../peft/gora/gora.js";
import { goraInit } from "../peft/gora/gora.js";
import type { AdapterInit, PeftModel } from "../peft/model.js";
import { getPeftModel } from "../peft/model.js";
import { savePretrained } from "../peft/node/io.js";
import { linear4bitModules } from "../quant/model.js";
import { loadTokenizer } from "../tokenizer/node.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { Batcher, evalBatches, padIdFor } from "../train/data.js";
import { loadSplits } from "../train/data-node.js";
import { latestCheckpoint, loadCheckpoint, restoreParams, saveCheckpoint } from "../train/node/checkpoint.js";
import type { TrainableModel, TrainEvent } from "../train/trainer.js";
import { batchLoss, evaluateBatches, Trainer } from "../train/trainer.js";
import { CliError, fmtBytes, log } from "./output.js";
import { asciiChart, lineChartSvg } from "./plot.js";
import type { TrainOptions } from "./train-options.js";
import type { TrainPlan } from "./train-plan.js";
import { planTrainRun, residentDTypeFor } from "./train-plan.js";

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

  let peft: PeftModel<LlamaForCausalLM> | null = null;
  let ada: AdaLoraModel<LlamaForCausalLM> | null = null;
  let gora: GoraResult | null = null;
  let trainable: TrainableModel;
  const padId = padIdFor(tokenizer);
  if (o.full) {
    for (const [, p] of model.namedParameters()) p.requiresGrad = true;
    trainable = model;
  } else if (o.method === "adalora") {
    // PEFT's AdaLoraConfig; total_step is the run's step count.
    ada = getAdaLoraModel(
      model,
      {
        initR: o.initR,
        targetR: o.targetR,
        tinit: o.tinit,
        tfinal: o.tfinal,
        deltaT: o.deltaT,
        beta1: o.beta1,
        beta2: o.beta2,
        orthRegWeight: o.orthRegWeight,
        totalStep: o.steps,
        loraAlpha: o.loraAlpha,
        loraDropout: o.loraDropout,
        targetModules: o.targetModules,
        baseModelNameOrPath: o.model,
      },
      "default",
      { seed: o.seed },
    );
    ada.rng.setState(new Rng(o.seed + 1).getState());
    trainable = ada;
  } else {
    let cfg: Partial<LoraConfig> = {
      r: o.r,
      loraAlpha: o.loraAlpha,
      loraDropout: o.loraDropout,
      targetModules: o.targetModules,
      useRslora: o.useRslora,
      baseModelNameOrPath: o.model,
    };
    let init: AdapterInit = { seed: o.seed };
    if (o.method === "gora") {
      // GoRA: gradients of the frozen weights over --gora-batches batches (a batcher of its
      // own, so the training order is the same as with --method lora).
      const gb = new Batcher(train, { batchSize: o.batchSize, seqLen: o.seqLen, seed: o.seed + 2, padId });
      const batches = Array.from({ length: o.goraBatches }, () => gb.next());
      gora = goraInit(model, batches, (b) => batchLoss(model, b), cfg, {
        importance: o.goraImportance,
        minRank: o.goraMinRank,
        maxRank: o.goraMaxRank,
        gamma: o.goraGamma,
        seed: o.seed,
      });
      say(
        `GoRA: budget ${gora.totalBudget.toLocaleString("en-US")} params (r=${o.r}), allocated ${gora.actualTrainable.toLocaleString("en-US")}; ranks ${[...gora.ranks.values()].join(",")}`,
      );
      cfg = gora.config;
      init = { seed: o.seed, initFor: gora.init.initFor };
    }
    peft = getPeftModel(model, cfg, "default", init);
    peft.rng.setState(new Rng(o.seed + 1).getState());
    trainable = peft;
  }
  const named = [...trainable.namedParameters()].filter(([, p]) => p.requiresGrad);
  const all = countParameters(trainable).all;
  const nTrain = named.reduce((a, [, p]) => a + p.size, 0);
  const pct = (100 * nTrain) / all;
  const line = `trainable params: ${nTrain.toLocaleString("en-US")} || all params: ${all.toLocaleString("en-US")} || trainable%: ${pct.toFixed(4)}`;
  say(line);

  const opt =
    o.loraPlusRatio !== null && !o.full
      ? createLoraPlusOptimizer(named, {
          lr: o.lr,
          loraPlusLrRatio: o.loraPlusRatio,
          weightDecay: o.weightDecay,
        })
      : new AdamW(
          named.map(([, p]) => p),
          { lr: o.lr, weightDecay: o.weightDecay },
        );
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
    rng: peft?.rng ?? ada?.rng ?? null,
    // AdaLoRA, as PEFT: the orthogonal regulariser joins the loss; update_and_allocate runs
    // after optimizer.step() and before zero_grad().
    extraLoss: ada ? () => ada.orthRegularization() : undefined,
    afterOptimizerStep: ada ? (s) => ada.updateAndAllocate(s) : undefined,
    extraState: ada ? adaLoraResumeState(ada) : undefined,
  });

  const ckptRoot = join(o.out, "checkpoints");
  const liveParams = new Map<string, Tensor>(named);
  let resumedFrom: string | null = null;
  if (o.resume) {
    const dir = typeof o.resume === "string" ? o.resume : latestCheckpoint(ckptRoot);
    if (!dir || !existsSync(dir))
      throw new CliError(
        `--resume: no checkpoint found${typeof o.resume === "string" ? ` at ${o.resume}` : ` under ${ckptRoot}`}`,
      );
    const ck = loadCheckpoint(dir);
    if (ck.state.totalSteps !== undefined && ck.state.totalSteps !== o.steps)
      log(
        `lorakit: warning: the checkpoint's run planned ${ck.state.totalSteps} steps and this one ${o.steps}; the learning-rate schedule changes, so the result will differ from an uninterrupted ${o.steps}-step run`,
      );
    restoreParams(liveParams, ck.params, dir);
    trainer.restore(ck.state);
    resumedFrom = dir;
    say(`resumed from ${dir} at step ${ck.state.step}`);
  }

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

  mkdirSync(o.out, { recursive: true });
  let finalRanks: Record<string, number> | null = gora ? Object.fromEntries(gora.ranks) : null;
  if (ada) {
    // The ADALORA adapter in OUT (PEFT's format), and the same update as a plain LoRA
    // adapter of the final ranks in OUT/lora (for merge and serving).
    finalRanks = Object.fromEntries(ada.ranks());
    saveAdaLora(ada, o.out, { baseModelNameOrPath: o.model });
    const conv = adaLoraToLora(ada);
    peft = getPeftModel(ada.unload(), conv.config, "default", conv.init);
    savePretrained(peft, join(o.out, "lora"), { baseModelNameOrPath: o.model });
  } else if (peft) savePretrained(peft, o.out, { baseModelNameOrPath: o.model });
  else {
    saveModel(model, o.out);
    for (const f of [
      "tokenizer.json",
      "tokenizer_config.json",
      "special_tokens_map.json",
      "generation_config.json",
    ])
      if (existsSync(join(o.model, f))) cpSync(join(o.model, f), join(o.out, f));
  }
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
      method: o.full ? "full" : o.method,
      final_ranks: finalRanks,
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

/** loss.csv (step, loss, lr, eval_loss) and loss.svg in the output folder. */
export function writeLossFiles(
  out: string,
  losses: { step: number; loss: number; lr: number }[],
  evals: { step: number; loss: number }[],
): void {
  const ev = new Map(evals.map((e) => [e.step, e.loss]));
  const byStep = new Map(losses.map((l) => [l.step, l]));
  // Eval steps without a training step (step 0, before training) get a row of their own.
  const steps = [...new Set([...byStep.keys(), ...ev.keys()])].sort((a, b) => a - b);
  const rows = [
    "step,loss,lr,eval_loss",
    ...steps.map((s) => {
      const l = byStep.get(s);
      return `${s},${l?.loss ?? ""},${l?.lr ?? ""},${ev.get(s) ?? ""}`;
    }),
  ];
  writeFileSync(join(out, "loss.csv"), `${rows.join("\n")}\n`);
  writeFileSync(
    join(out, "loss.svg"),
    lineChartSvg(
      [
        { name: "train loss", color: "#1f77b4", points: losses.map((l) => ({ x: l.step, y: l.loss })) },
        {
          name: "eval loss",
          color: "#d62728",
          markers: true,
          points: evals.map((e) => ({ x: e.step, y: e.loss })),
        },
      ],
      { title: "lorakit training loss", xLabel: "step", yLabel: "loss (nats/token)" },
    ),
  );
}

export function lossChartLines(losses: { loss: number }[]): string[] {
  return asciiChart(
    losses.map((l) => l.loss),
    { width: 60, rows: 8 },
  );
}

/** AdaLoRA's allocator state and mask, so a resumed run masks as an uninterrupted one. */
function adaLoraResumeState(ada: AdaLoraModel): { save(): unknown; load(s: unknown): void } {
  const maps = ["ipt", "expAvgIpt", "expAvgUnc"] as const;
  return {
    save() {
      const alloc = ada.rankAllocator;
      const out: Record<string, unknown> = {
        rankPattern: ada.peftConfig.get("default")?.rankPattern ?? null,
      };
      if (alloc)
        for (const k of maps) out[k] = Object.fromEntries([...alloc[k]].map(([n, a]) => [n, Array.from(a)]));
      return out;
    },
    load(s) {
      const st = s as Record<string, unknown>;
      const cfg = ada.peftConfig.get("default");
      if (cfg) cfg.rankPattern = (st.rankPattern ?? null) as typeof cfg.rankPattern;
      const alloc = ada.rankAllocator;
      if (!alloc) return;
      for (const k of maps) {
        alloc[k].clear();
        for (const [n, a] of Object.entries((st[k] ?? {}) as Record<string, number[]>))
          alloc[k].set(n, Float32Array.from(a));
      }
      if (cfg?.rankPattern) alloc.maskUsingRankPattern(cfg.rankPattern);
    },
  };
}
