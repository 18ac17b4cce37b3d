// The memory plan of `lorakit train`, made before anything large is loaded: from config.json
// and the safetensors headers it works out what the run will hold (src/train/memory-plan.ts),
// fits it to the budget (--max-memory, or the memory available now less a margin) by
// checkpointing as few decoder layers as needed, and refuses a run that cannot fit, naming
// the flags that would.
import { readFileSync } from "node:fs";
import { freemem } from "node:os";
import { join } from "node:path";
import type { LoadModelOptions, WeightDType } from "../models/node/load.js";
import { describeCheckpoint, residentWeightBytes } from "../models/node/load.js";
import { countBaseParams, countLoraParams } from "../peft/params.js";
import type { LinearName, PlanResult, TrainingShape } from "../train/memory-plan.js";
import { LINEAR_NAMES, parseByteSize, planTraining } from "../train/memory-plan.js";
import { CliError, fmtBytes } from "./output.js";
import type { TrainOptions } from "./train-options.js";

/**
 * The dtype the base weights are loaded in. Full fine-tuning and GoRA (which takes gradients
 * of the base weights) need f32 weights; LoRA keeps what `--dtype` says.
 */
export function residentDTypeFor(o: Pick<TrainOptions, "dtype" | "full" | "method">): WeightDType {
  const needsF32 = o.full
    ? "--full (every weight trains, in f32)"
    : o.method === "gora"
      ? "--method gora (gradients of the base weights)"
      : null;
  if (!needsF32) return o.dtype;
  if (o.dtype === "bf16")
    throw new CliError(`--dtype bf16 cannot be combined with ${needsF32}; use --dtype f32 or auto`);
  return "f32";
}

/** What the default budget leaves to the rest of the machine: 10 % of available, at least 512 MiB. */
function margin(available: number): number {
  return Math.max(512 * 2 ** 20, available * 0.1);
}

/** Memory this process could still use: cgroup-aware where Node knows it (20.13+), else free memory. */
export function availableMemory(): number {
  const p = process as unknown as { availableMemory?: () => number };
  const a = typeof p.availableMemory === "function" ? p.availableMemory() : 0;
  return a > 0 ? a : freemem();
}

/**
 * Refuses, before anything is read, to load a model whose weights alone would not fit in the
 * memory available now (inference commands; `train` has its full plan).
 */
export function checkWeightsFit(dir: string, load: LoadModelOptions): void {
  const bytes = residentWeightBytes(describeCheckpoint(dir), load);
  const available = availableMemory();
  if (bytes + 256 * 2 ** 20 > available)
    throw new CliError(
      `${dir}: its weights take ${fmtBytes(bytes)} in memory${load.dtype && load.dtype !== "auto" ? ` as ${load.dtype}` : ""} but only ${fmtBytes(available)} is available${load.dtype === "bf16" ? "" : "; --dtype bf16 halves f32 weights"}${load.quantize ? "" : "; lorakit quantize makes an NF4 copy (about 0.52 bytes per weight)"}`,
    );
}

export interface TrainPlan {
  budget: number;
  budgetSource: "--max-memory" | "available memory";
  result: PlanResult & { fits: true };
  shape: Omit<TrainingShape, "checkpointLayers" | "lossChunkTokens">;
}

/** The plan for `o`, or a CliError that says what would fit. Reads headers only. */
export function planTrainRun(o: TrainOptions): TrainPlan {
  const summary = describeCheckpoint(o.model);
  const c = summary.config;
  const rawConfig = JSON.parse(readFileSync(join(o.model, "config.json"), "utf8")) as unknown;
  const load: LoadModelOptions = {
    dtype: residentDTypeFor(o),
    quantize: o.quantize === "nf4" ? "nf4" : null,
  };
  const weightBytes = residentWeightBytes(summary, load);
  let trainableParams: number;
  let targets: LinearName[];
  if (o.full) {
    trainableParams = countBaseParams(c);
    targets = [];
  } else {
    const r = o.method === "adalora" ? o.initR : o.r;
    const count = countLoraParams(rawConfig, { r, targetModules: o.targetModules });
    trainableParams = count.trainable;
    const adapted = new Set(count.perModule.map((m) => m.name.split(".").pop()));
    targets = LINEAR_NAMES.filter((n) => adapted.has(n));
  }
  const shape: Omit<TrainingShape, "checkpointLayers" | "lossChunkTokens"> = {
    config: c,
    method: o.full ? "full" : o.quantize === "nf4" || summary.quantized ? "qlora" : "lora",
    weightBytes,
    trainableParams,
    r: o.method === "adalora" ? o.initR : o.r,
    targets,
    dropout: o.loraDropout > 0,
    batchSize: o.batchSize,
    seqLen: o.seqLen,
  };
  let budget: number;
  let budgetSource: TrainPlan["budgetSource"];
  if (o.maxMemory !== null) {
    try {
      budget = parseByteSize(o.maxMemory);
    } catch (e) {
      throw new CliError(`--max-memory: ${(e as Error).message}`);
    }
    budgetSource = "--max-memory";
  } else {
    const a = availableMemory();
    budget = a - margin(a);
    budgetSource = "available memory";
  }
  const result = planTraining(shape, budget, {
    checkpointing: o.gradientCheckpointing,
    qloraWeightBytes:
      shape.method === "lora" ? residentWeightBytes(summary, { ...load, quantize: "nf4" }) : undefined,
    gradAccum: o.gradAccum,
  });
  if (!result.fits) {
    const m = result.best.memory;
    throw new CliError(
      `this run needs about ${fmtBytes(m.total)} (weights ${fmtBytes(m.weights)}, trainable state ${fmtBytes(m.trainable)}, activations ${fmtBytes(m.activations)}${result.best.checkpointLayers ? ` with all ${result.best.checkpointLayers} layers checkpointed` : ""}) but the budget is ${fmtBytes(budget)} (${budgetSource})${
        result.suggestions.length
          ? `; it would fit with: ${result.suggestions.join(", or ")}`
          : "; nothing smaller fits either: use a machine with more memory"
      }`,
    );
  }
  return { budget, budgetSource, result, shape };
}
