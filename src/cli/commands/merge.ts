import { copyFileSync, existsSync, realpathSync } from "node:fs";
import { join, resolve } from "node:path";
import { defineCommand } from "citty";
import { loadModel, saveModel } from "../../models/node/load.js";
import { fromPretrained } from "../../peft/node/io.js";
import { prepareOutDir } from "../out-dir.js";
import { CliError, dtypeArg, fmtInt, log, numArg, out, printJson, requireArg } from "../output.js";
import { setupBackend } from "../setup.js";
import { checkWeightsFit } from "../train-plan.js";

/** Files of a model folder that travel unchanged with the merged weights. */
const COPIED = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
];

function samePath(a: string, b: string): boolean {
  const real = (p: string) => (existsSync(p) ? realpathSync(p) : resolve(p));
  return real(a) === real(b);
}

export const mergeCommand = defineCommand({
  meta: {
    name: "merge",
    description: "Fold an adapter into its base model (W += scale·B·A) and save a plain Hugging Face model",
  },
  args: {
    model: { type: "string", description: "base model folder", required: true },
    adapter: { type: "string", description: "PEFT adapter folder", required: true },
    out: { type: "string", description: "output model folder", required: true },
    safe: {
      type: "boolean",
      description: "check the merged weights for NaN/Inf before writing (PEFT's safe_merge)",
    },
    dtype: {
      type: "string",
      description:
        "auto | f32 | bf16: dtype the weights are loaded, merged and saved in (default auto: the checkpoint's own)",
    },
    "max-shard-mb": { type: "string", description: "largest shard in MB (default 5000, as transformers)" },
    threads: { type: "string", description: "kernel threads (default: all cores)" },
    json: { type: "boolean", description: "print one JSON object on stdout" },
  },
  async run({ args }) {
    const modelDir = requireArg("model", args.model);
    const adapterDir = requireArg("adapter", args.adapter);
    const outDir = requireArg("out", args.out);
    const dtypeFlag = dtypeArg(args.dtype);
    const maxShardBytes =
      args["max-shard-mb"] === undefined
        ? undefined
        : numArg("max-shard-mb", args["max-shard-mb"], { min: 0.01 }) * 1e6;
    if (samePath(modelDir, outDir))
      throw new CliError(`--out ${outDir} is the base model folder; write the merged model somewhere else`);
    prepareOutDir("out", outDir);
    const threads =
      args.threads === undefined ? undefined : numArg("threads", args.threads, { int: true, min: 1 });
    await setupBackend(threads);

    const t0 = performance.now();
    checkWeightsFit(modelDir, { dtype: dtypeFlag });
    const { model } = loadModel(modelDir, { dtype: dtypeFlag });
    // auto: the merged model is written in the checkpoint's own dtype (bf16 stays bf16), as
    // PEFT's merge_and_unload keeps the base weight's dtype.
    const dtype =
      dtypeFlag === "auto" ? (model.model.embed_tokens.weight.dtype === "bf16" ? "bf16" : "f32") : dtypeFlag;
    const pm = fromPretrained(model, adapterDir);
    const cfg = pm.peftConfig.get("default")!;
    const mergedModules = pm.targetsOf.get("default")?.length ?? 0;
    log(`lorakit: adapter ${adapterDir}: r=${cfg.r}, alpha=${cfg.loraAlpha}, ${mergedModules} modules`);
    const warned = new Set<string>();
    const merged = pm.mergeAndUnload({
      safeMerge: Boolean(args.safe),
      warn: (msg) => {
        if (!warned.has(msg)) log(`lorakit: warning: ${msg}`);
        warned.add(msg);
      },
    });
    saveModel(merged, outDir, { dtype, maxShardBytes });
    const copied: string[] = [];
    for (const f of COPIED)
      if (existsSync(join(modelDir, f))) {
        copyFileSync(join(modelDir, f), join(outDir, f));
        copied.push(f);
      }
    let parameters = 0;
    for (const [, t] of merged.namedParameters()) parameters += t.size;
    const seconds = (performance.now() - t0) / 1000;
    if (args.json)
      return printJson({ out: outDir, merged_modules: mergedModules, parameters, dtype, copied, seconds });
    out(
      `merged ${mergedModules} module(s) of ${adapterDir} into ${modelDir} → ${outDir} (${fmtInt(parameters)} parameters, ${dtype}) in ${seconds.toFixed(2)} s`,
    );
    if (copied.length) out(`  copied ${copied.join(", ")}`);
    else log(`lorakit: ${modelDir} has no tokenizer files; ${outDir} holds the weights only`);
  },
});
