// `lorakit params`: what a LoRA adapter costs for a model, from its config.json alone.
import { existsSync, readFileSync } from "node:fs";
import { defineCommand } from "citty";
import { countLoraParams } from "../../peft/params.js";
import { CliError, fmtInt, numArg, out, printJson, requireArg } from "../output.js";

export const paramsCommand = defineCommand({
  meta: {
    name: "params",
    description: "LoRA parameter counts for a model's config.json (no weights needed)",
  },
  args: {
    config: { type: "string", description: "the model's config.json", required: true },
    r: { type: "string", description: "LoRA rank (default 8)" },
    "target-modules": {
      type: "string",
      description: "q_proj,v_proj,... or all-linear (default q_proj,v_proj)",
    },
    layers: {
      type: "string",
      description: "only these layer indices, comma-separated (layers_to_transform)",
    },
    dora: { type: "boolean", description: "count DoRA's magnitude vectors too" },
    json: { type: "boolean", description: "print one JSON object on stdout" },
  },
  run({ args }) {
    const path = requireArg("config", args.config);
    if (!existsSync(path)) throw new CliError(`--config ${path}: no such file`);
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw new CliError(`--config ${path}: not valid JSON: ${(e as Error).message}`);
    }
    const r = args.r === undefined ? 8 : numArg("r", args.r, { int: true, min: 1 });
    const tm = args["target-modules"] ?? "q_proj,v_proj";
    const targetModules =
      tm === "all-linear"
        ? "all-linear"
        : tm
            .split(",")
            .map((s) => s.trim())
            .filter(Boolean);
    if (targetModules.length === 0) throw new CliError("--target-modules names no module");
    const layers =
      args.layers === undefined
        ? null
        : args.layers.split(",").map((s) => numArg("layers", s.trim(), { int: true, min: 0 }));
    const n = countLoraParams(json, {
      r,
      targetModules,
      layersToTransform: layers,
      useDora: Boolean(args.dora),
    });
    const all = n.base + n.trainable;
    const pct = (100 * n.trainable) / all;
    // PEFT's print_trainable_parameters line: all params = base + adapter.
    const line = `trainable params: ${fmtInt(n.trainable)} || all params: ${fmtInt(all)} || trainable%: ${pct.toFixed(4)}`;
    const result = {
      config: path,
      r,
      target_modules: targetModules,
      modules: n.perModule.length,
      per_layer: n.perLayer.map((l) => ({
        layer: l.layer,
        trainable: l.trainable,
        full_finetune_targets: l.fullFinetuneTargets,
      })),
      per_module: n.perModule,
      trainable: n.trainable,
      base: n.base,
      all,
      full_finetune_targets: n.fullFinetuneTargets,
      /** Adapter parameters as a fraction of the targeted matrices' parameters. */
      fraction_of_targets: n.trainable / n.fullFinetuneTargets,
      trainable_percent: pct,
      trainable_line: line,
    };
    if (args.json) return printJson(result);

    out(
      `${path}: r=${r}, target_modules ${JSON.stringify(targetModules)}${layers ? `, layers ${layers.join(",")}` : ""}: ${n.perModule.length} modules`,
    );
    const rows = n.perLayer.map((l) => [String(l.layer), fmtInt(l.trainable), fmtInt(l.fullFinetuneTargets)]);
    const head = ["layer", "LoRA trainable", "full fine-tune (targets)"];
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i].length)));
    const fmt = (x: string[]) => x.map((c, i) => c.padStart(w[i])).join("  ");
    out(fmt(head));
    for (const x of rows) out(fmt(x));
    const head2 = n.perModule.find((m) => m.name === "lm_head");
    if (head2) out(`lm_head: ${fmtInt(head2.params)} trainable`);
    out(`total trainable (LoRA):            ${fmtInt(n.trainable)}`);
    out(
      `full fine-tune of those matrices: ${fmtInt(n.fullFinetuneTargets)} (LoRA is ${(100 * result.fraction_of_targets).toFixed(4)}% of it)`,
    );
    out(`base model parameters:            ${fmtInt(n.base)}`);
    out(line);
  },
});
