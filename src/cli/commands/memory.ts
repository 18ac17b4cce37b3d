import { readFileSync } from "node:fs";
import { defineCommand } from "citty";
import { parseLlamaConfig } from "../../models/llama/config.js";
import type { TrainMethod } from "../../quant/memory.js";
import { estimateMemory } from "../../quant/memory.js";
import { CliError, fmtBytes, fmtInt, numArg, out, printJson, requireArg } from "../output.js";

export const memoryCommand = defineCommand({
  meta: {
    name: "memory",
    description:
      "Estimate training memory (weights, gradients, optimizer state, activations) for full / LoRA / QLoRA",
  },
  args: {
    config: { type: "string", description: "a model's config.json", required: true },
    method: { type: "string", description: "full | lora | qlora (default lora)" },
    r: { type: "string", description: "LoRA rank (default 16)" },
    "target-modules": {
      type: "string",
      description: "comma-separated or all-linear (default q_proj,v_proj)",
    },
    "batch-size": { type: "string", description: "default 1" },
    "seq-len": { type: "string", description: "default 512" },
    "weight-bytes": { type: "string", description: "bytes per stored weight: 2 (bf16, default) or 4" },
    json: { type: "boolean", description: "print one JSON object on stdout" },
  },
  run({ args }) {
    const file = requireArg("config", args.config);
    let cfg: unknown;
    try {
      cfg = JSON.parse(readFileSync(file, "utf8"));
    } catch (e) {
      throw new CliError(`--config ${file}: cannot read it as JSON`, { cause: e });
    }
    const c = parseLlamaConfig(cfg);
    const method = (args.method ?? "lora") as TrainMethod;
    if (!["full", "lora", "qlora"].includes(method))
      throw new CliError(`--method must be full, lora or qlora, got ${JSON.stringify(args.method)}`);
    const tm = args["target-modules"] ?? "q_proj,v_proj";
    const e = estimateMemory(c, {
      method,
      r: args.r === undefined ? 16 : numArg("r", args.r, { int: true, min: 1 }),
      targetModules: tm === "all-linear" ? "all-linear" : tm.split(",").map((s) => s.trim()),
      batchSize:
        args["batch-size"] === undefined
          ? 1
          : numArg("batch-size", args["batch-size"], { int: true, min: 1 }),
      seqLen: args["seq-len"] === undefined ? 512 : numArg("seq-len", args["seq-len"], { int: true, min: 1 }),
      weightBytes:
        args["weight-bytes"] === undefined ? 2 : numArg("weight-bytes", args["weight-bytes"], { min: 1 }),
    });
    if (args.json) return printJson(e);
    out(`${method}: ${fmtInt(e.params)} params, ${fmtInt(e.trainable_params)} trainable`);
    for (const k of ["weights", "gradients", "optimizer", "activations"] as const)
      out(`  ${k.padEnd(12)} ${fmtBytes(e[k]).padStart(12)}   ${e.formulas[k]}`);
    out(`  ${"total".padEnd(12)} ${fmtBytes(e.total).padStart(12)}`);
  },
});
