import { cpSync, existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { defineCommand } from "citty";
import { loadModel, saveModel } from "../../models/node/load.js";
import { linear4bitModules, quantizeModel } from "../../quant/model.js";
import { enableNativeNf4 } from "../../quant/node/native.js";
import { fmtBytes, log, printJson, requireArg } from "../output.js";

export const quantizeCommand = defineCommand({
  meta: {
    name: "quantize",
    description:
      "Write the model with every decoder linear in NF4 (block 64, double quantisation), in the transformers + bitsandbytes layout",
  },
  args: {
    model: { type: "string", description: "model folder", required: true },
    out: { type: "string", description: "output folder", required: true },
    json: { type: "boolean", description: "print one JSON object on stdout" },
  },
  run({ args }) {
    const dir = requireArg("model", args.model);
    const outDir = requireArg("out", args.out);
    enableNativeNf4();
    const t0 = performance.now();
    const { model } = loadModel(dir);
    const paths = quantizeModel(model);
    saveModel(model, outDir);
    // tokenizer and generation files travel with the weights
    for (const f of readdirSync(dir))
      if (
        /^(tokenizer.*|special_tokens_map\.json|generation_config\.json|.*\.jinja)$/.test(f) &&
        !existsSync(join(outDir, f))
      )
        cpSync(join(dir, f), join(outDir, f));
    let bytes = 0;
    let n = 0;
    for (const [, l] of linear4bitModules(model)) {
      bytes += l.residentBytes() - (l.bias ? l.bias.size * 4 : 0);
      n += l.inFeatures * l.outFeatures;
    }
    const summary = {
      out: outDir,
      quantized_linears: paths.length,
      quantized_params: n,
      bytes_per_param: n ? bytes / n : 0,
      seconds: (performance.now() - t0) / 1000,
    };
    if (args.json) return printJson(summary);
    log(
      `quantised ${paths.length} linear layers (${n} weights → ${fmtBytes(bytes)}, ${summary.bytes_per_param.toFixed(4)} bytes/weight) into ${outDir}`,
    );
  },
});
