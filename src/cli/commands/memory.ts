import { readFileSync } from "node:fs";
import { join } from "node:path";
import { defineCommand } from "citty";
import { defaultLossChunkTokens } from "../../core/ops/index.js";
import type { LlamaConfig } from "../../models/llama/config.js";
import { parseLlamaConfig } from "../../models/llama/config.js";
import { describeCheckpoint, residentWeightBytes } from "../../models/node/load.js";
import { countBaseParams, countLoraParams } from "../../peft/params.js";
import type { TrainMethod } from "../../quant/memory-estimate.js";
import { estimateMemory } from "../../quant/memory-estimate.js";
import type { LinearName, TrainingShape } from "../../train/memory-plan.js";
import {
  estimateTrainingMemory,
  LINEAR_NAMES,
  NF4_BYTES_PER_WEIGHT,
  parseByteSize,
  planTraining,
  weightCounts,
} from "../../train/memory-plan.js";
import { CliError, DTYPE_FLAG, dtypeArg, fmtBytes, fmtInt, numArg, out, printJson } from "../output.js";

/** Resident weight bytes from a config alone (no checkpoint at hand). */
function weightBytesFromConfig(c: LlamaConfig, method: TrainMethod, dtype: "auto" | "f32" | "bf16"): number {
  const { linear, other } = weightCounts(c);
  // Matrices follow --dtype (auto: a bfloat16 checkpoint stays 16-bit); norms/biases are f32.
  const wb =
    method === "full" ? 4 : dtype === "bf16" || (dtype === "auto" && c.torchDtype === "bfloat16") ? 2 : 4;
  const linearBytes = method === "qlora" ? linear * NF4_BYTES_PER_WEIGHT : linear * wb;
  return linearBytes + other * wb;
}

export const memoryCommand = defineCommand({
  meta: {
    name: "memory",
    description:
      "Memory of a lorakit training run (weights as loaded, trainable state, activations; the plan that fits --max-memory), or with --gpu the 16-bit GPU formulas of the seed article",
  },
  args: {
    model: { type: "string", description: "a model folder (exact weight sizes from its headers)" },
    config: { type: "string", description: "or a model's config.json alone" },
    method: { type: "string", description: "full | lora | qlora (default lora)" },
    r: { type: "string", description: "LoRA rank (default 16)" },
    "target-modules": {
      type: "string",
      description: "comma-separated or all-linear (default q_proj,v_proj)",
    },
    "batch-size": { type: "string", description: "default 1" },
    "seq-len": { type: "string", description: "default 512" },
    dtype: DTYPE_FLAG,
    "lora-dropout": { type: "string", description: "LoRA dropout (default 0)" },
    "gradient-checkpointing": { type: "string", description: "auto | on | off (default auto)" },
    "max-memory": { type: "string", description: "a budget (e.g. 6GiB): show the plan that fits it" },
    gpu: { type: "boolean", description: "the seed article's 16-bit GPU formulas instead of lorakit's own" },
    "weight-bytes": { type: "string", description: "--gpu: bytes per stored weight, 2 (default) or 4" },
    json: { type: "boolean", description: "print one JSON object on stdout" },
  },
  run({ args }) {
    if (!args.model === !args.config)
      throw new CliError("give --model DIR or --config config.json (one of them)");
    let raw: unknown;
    const cfgFile = args.model ? join(args.model, "config.json") : args.config!;
    try {
      raw = JSON.parse(readFileSync(cfgFile, "utf8"));
    } catch (e) {
      throw new CliError(`${cfgFile}: cannot read it as JSON`, { cause: e });
    }
    const c = parseLlamaConfig(raw);
    const method = (args.method ?? "lora") as TrainMethod;
    if (!["full", "lora", "qlora"].includes(method))
      throw new CliError(`--method must be full, lora or qlora, got ${JSON.stringify(args.method)}`);
    const tm = args["target-modules"] ?? "q_proj,v_proj";
    const targetModules = tm === "all-linear" ? "all-linear" : tm.split(",").map((s) => s.trim());
    const r = args.r === undefined ? 16 : numArg("r", args.r, { int: true, min: 1 });
    const batchSize =
      args["batch-size"] === undefined ? 1 : numArg("batch-size", args["batch-size"], { int: true, min: 1 });
    const seqLen =
      args["seq-len"] === undefined ? 512 : numArg("seq-len", args["seq-len"], { int: true, min: 1 });
    if (args.gpu) {
      const e = estimateMemory(c, {
        method,
        r,
        targetModules,
        batchSize,
        seqLen,
        weightBytes:
          args["weight-bytes"] === undefined ? 2 : numArg("weight-bytes", args["weight-bytes"], { min: 1 }),
      });
      if (args.json) return printJson(e);
      out(
        `${method} (16-bit GPU formulas): ${fmtInt(e.params)} params, ${fmtInt(e.trainable_params)} trainable`,
      );
      for (const k of ["weights", "gradients", "optimizer", "activations"] as const)
        out(`  ${k.padEnd(12)} ${fmtBytes(e[k]).padStart(12)}   ${e.formulas[k]}`);
      out(`  ${"total".padEnd(12)} ${fmtBytes(e.total).padStart(12)}`);
      return;
    }
    const dtype = dtypeArg(args.dtype);
    const ckMode = args["gradient-checkpointing"] ?? "auto";
    if (!["auto", "on", "off"].includes(ckMode))
      throw new CliError(`--gradient-checkpointing must be auto, on or off, got ${JSON.stringify(ckMode)}`);
    const weightBytes = args.model
      ? residentWeightBytes(describeCheckpoint(args.model), {
          dtype: method === "full" ? "f32" : dtype,
          quantize: method === "qlora" ? "nf4" : null,
        })
      : weightBytesFromConfig(c, method, dtype);
    let trainableParams = countBaseParams(c);
    let targets: LinearName[] = [];
    if (method !== "full") {
      const count = countLoraParams(raw, { r, targetModules });
      trainableParams = count.trainable;
      const adapted = new Set(count.perModule.map((m) => m.name.split(".").pop()));
      targets = LINEAR_NAMES.filter((n) => adapted.has(n));
    }
    const shape: Omit<TrainingShape, "checkpointLayers" | "lossChunkTokens"> = {
      config: c,
      method,
      weightBytes,
      trainableParams,
      r,
      targets,
      dropout:
        args["lora-dropout"] !== undefined && numArg("lora-dropout", args["lora-dropout"], { min: 0 }) > 0,
      batchSize,
      seqLen,
    };
    let checkpointLayers = ckMode === "on" ? c.numHiddenLayers : 0;
    let lossChunkTokens = defaultLossChunkTokens(c.vocabSize);
    let budget: number | null = null;
    let fits: boolean | null = null;
    let suggestions: string[] = [];
    if (args["max-memory"] !== undefined) {
      try {
        budget = parseByteSize(args["max-memory"]);
      } catch (e) {
        throw new CliError(`--max-memory: ${(e as Error).message}`);
      }
      const plan = planTraining(shape, budget, { checkpointing: ckMode as "auto" | "on" | "off" });
      fits = plan.fits;
      const choice = plan.fits ? plan : plan.best;
      checkpointLayers = choice.checkpointLayers;
      lossChunkTokens = choice.lossChunkTokens;
      if (!plan.fits) suggestions = plan.suggestions;
    }
    const e = estimateTrainingMemory({ ...shape, checkpointLayers, lossChunkTokens });
    const result = {
      method,
      params: countBaseParams(c),
      trainable_params: trainableParams,
      checkpointed_layers: checkpointLayers,
      loss_chunk_tokens: lossChunkTokens,
      runtime: e.runtime,
      weights: e.weights,
      trainable: e.trainable,
      activations: e.activations,
      total: e.total,
      budget,
      fits,
      suggestions,
    };
    if (args.json) return printJson(result);
    out(
      `${method}: ${fmtInt(result.params)} params, ${fmtInt(trainableParams)} trainable, ${batchSize}×${seqLen} tokens${checkpointLayers ? `, checkpointing ${checkpointLayers} of ${c.numHiddenLayers} layers` : ""}`,
    );
    const rows: [string, number, string][] = [
      ["runtime", e.runtime, "Node with lorakit loaded"],
      [
        "weights",
        e.weights,
        method === "qlora" ? "decoder linears NF4, the rest as loaded" : "as loaded (--dtype)",
      ],
      ["trainable", e.trainable, "f32 parameters, gradients, AdamW m and v: 16 B each"],
      ["activations", e.activations, "f32 tensors kept for backward, loss scratch, backward peak"],
    ];
    for (const [k, v, why] of rows) out(`  ${k.padEnd(12)} ${fmtBytes(v).padStart(12)}   ${why}`);
    out(`  ${"total".padEnd(12)} ${fmtBytes(e.total).padStart(12)}`);
    if (budget !== null)
      out(
        fits
          ? `  fits ${fmtBytes(budget)}`
          : `  does not fit ${fmtBytes(budget)}${suggestions.length ? `; would with: ${suggestions.join(", or ")}` : ""}`,
      );
  },
});
