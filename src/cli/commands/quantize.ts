import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { defineCommand } from "citty";
import { readModelConfig } from "../../models/node/load.js";
import { quantizeCheckpoint } from "../../models/node/quantize-checkpoint.js";
import { bnbQuantizationConfig, isBnb4bitConfig } from "../../quant/model.js";
import { CliError, fmtBytes, log, numArg, printJson, requireArg } from "../output.js";

export const quantizeCommand = defineCommand({
  meta: {
    name: "quantize",
    description:
      "Write the model with every decoder linear in NF4 (block 64, double quantisation), in the transformers + bitsandbytes layout, streaming tensor by tensor",
  },
  args: {
    model: { type: "string", description: "model folder", required: true },
    out: { type: "string", description: "output folder", required: true },
    "max-shard-mb": { type: "string", description: "largest shard in MB (default 5000, as transformers)" },
    json: { type: "boolean", description: "print one JSON object on stdout" },
  },
  run({ args }) {
    const dir = requireArg("model", args.model);
    const outDir = requireArg("out", args.out);
    if (resolve(dir) === resolve(outDir))
      throw new CliError(`--out ${outDir} is the model folder; write the quantised model somewhere else`);
    if (existsSync(outDir) && !statSync(outDir).isDirectory())
      throw new CliError(`--out ${outDir} exists and is not a folder`);
    const maxShardBytes =
      args["max-shard-mb"] === undefined
        ? undefined
        : numArg("max-shard-mb", args["max-shard-mb"], { min: 0.01 }) * 1e6;
    const config = readModelConfig(dir);
    const raw = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    if (isBnb4bitConfig(raw)) throw new CliError(`${dir} is already a 4-bit checkpoint`);
    const t0 = performance.now();
    let lastLog = t0;
    const r = quantizeCheckpoint(dir, outDir, config, {
      maxShardBytes,
      onTensor: (name, done, total) => {
        const now = performance.now();
        if (now - lastLog > 5000 && !args.json) {
          log(`lorakit: quantize: ${done}/${total} tensors (${name})`);
          lastLog = now;
        }
      },
    });
    raw.quantization_config = bnbQuantizationConfig({ doubleQuant: true });
    writeFileSync(join(outDir, "config.json"), `${JSON.stringify(raw, null, 2)}\n`);
    // tokenizer and generation files travel with the weights
    for (const f of readdirSync(dir))
      if (/^(tokenizer.*|special_tokens_map\.json|generation_config\.json|.*\.jinja)$/.test(f))
        cpSync(join(dir, f), join(outDir, f));
    const summary = {
      out: outDir,
      files: r.files.length,
      quantized_linears: r.quantized.length,
      quantized_params: r.quantizedParams,
      bytes_per_param: r.quantizedParams ? r.quantizedBytes / r.quantizedParams : 0,
      seconds: (performance.now() - t0) / 1000,
    };
    if (args.json) return printJson(summary);
    log(
      `quantised ${r.quantized.length} linear layers (${r.quantizedParams} weights → ${fmtBytes(r.quantizedBytes)}, ${summary.bytes_per_param.toFixed(4)} bytes/weight) into ${outDir} (${r.files.length} file${r.files.length > 1 ? "s" : ""}) in ${summary.seconds.toFixed(1)} s`,
    );
  },
});
