import { existsSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { defineCommand } from "citty";
import { chatTemplateToGo, modelfile } from "../../export/gguf/modelfile.js";
import type { GgufDTypeOption } from "../../export/node/export-gguf.js";
import { exportAdapterGguf, exportMergedGguf, exportModelGguf } from "../../export/node/export-gguf.js";
import { loadTokenizer } from "../../tokenizer/node.js";
import { CliError, fmtBytes, log, numArg, out, printJson, requireArg } from "../output.js";
import { setupBackend } from "../setup.js";

const MODEL_DTYPES = ["auto", "f32", "f16", "bf16", "q8_0"] as const;
const ADAPTER_DTYPES = ["f32", "f16", "bf16"] as const;

/** "./x.gguf" for a file beside the Modelfile, else the absolute path. */
function fromModelfile(dir: string, file: string): string {
  const rel = relative(dir, resolve(file));
  return rel.startsWith("..") ? resolve(file) : `./${rel}`;
}

export const exportGgufCommand = defineCommand({
  meta: {
    name: "export-gguf",
    description:
      "Write the model, a LoRA adapter (--adapter) or the merged model (--adapter --merge) as GGUF for llama.cpp, Ollama and LM Studio",
  },
  args: {
    model: {
      type: "string",
      description: "base model folder (config.json, safetensors, tokenizer.json)",
      required: true,
    },
    out: { type: "string", description: "output file (*.gguf)", required: true },
    adapter: { type: "string", description: "PEFT adapter folder: write it as a GGUF LoRA adapter" },
    merge: { type: "boolean", description: "with --adapter: write the merged model instead of the adapter" },
    dtype: {
      type: "string",
      description:
        "tensor type of the weight matrices: auto | f32 | f16 | bf16 | q8_0 (default auto: the checkpoint's own; adapters: f32 | f16 | bf16, default f32)",
    },
    name: { type: "string", description: "general.name in the file (default: the folder's name)" },
    ollama: { type: "boolean", description: "also write an Ollama Modelfile beside --out" },
    "ollama-from": {
      type: "string",
      description:
        "with --adapter --ollama: the base model's GGUF (or Ollama model name) for FROM (default ./<model folder>.gguf)",
    },
    threads: { type: "string", description: "kernel threads for --merge (default: all cores)" },
    json: { type: "boolean", description: "print one JSON object on stdout" },
  },
  async run({ args }) {
    const modelDir = requireArg("model", args.model);
    const outFile = requireArg("out", args.out);
    if (!outFile.endsWith(".gguf")) throw new CliError(`--out ${outFile}: name the file *.gguf`);
    if (!existsSync(dirname(resolve(outFile))))
      throw new CliError(`--out ${outFile}: the folder ${dirname(resolve(outFile))} does not exist`);
    if (args.merge && !args.adapter) throw new CliError("--merge needs --adapter DIR (the adapter to merge)");
    if (args["ollama-from"] && !(args.adapter && !args.merge))
      throw new CliError("--ollama-from is for --adapter without --merge (the Modelfile's FROM line)");
    const adapterOnly = Boolean(args.adapter) && !args.merge;
    const allowed: readonly string[] = adapterOnly ? ADAPTER_DTYPES : MODEL_DTYPES;
    const dtype = args.dtype ?? (adapterOnly ? "f32" : "auto");
    if (!allowed.includes(dtype))
      throw new CliError(
        `--dtype ${dtype}: ${adapterOnly ? "an adapter is written as f32, f16 or bf16 (its B is only r values wide, too narrow for Q8_0 blocks)" : "expected auto, f32, f16, bf16 or q8_0"}`,
      );
    const t0 = performance.now();
    let summary: Record<string, unknown>;
    let warnings: string[] = [];
    let addBos: boolean | null = null;
    if (adapterOnly) {
      const r = exportAdapterGguf(modelDir, args.adapter!, outFile, {
        dtype: dtype as (typeof ADAPTER_DTYPES)[number],
        name: args.name,
      });
      summary = { kind: "adapter", ...r };
    } else {
      if (args.merge) {
        const threads =
          args.threads === undefined ? undefined : numArg("threads", args.threads, { int: true, min: 1 });
        await setupBackend(threads);
      }
      const r = args.merge
        ? exportMergedGguf(modelDir, args.adapter!, outFile, {
            dtype: dtype as GgufDTypeOption,
            name: args.name,
          })
        : exportModelGguf(modelDir, outFile, { dtype: dtype as GgufDTypeOption, name: args.name });
      warnings = r.warnings;
      addBos = r.addBos;
      summary = { kind: args.merge ? "merged" : "model", ...r, chatTemplate: r.chatTemplate !== null };
    }
    for (const w of warnings) log(`lorakit: warning: ${w}`);
    if (args.ollama) {
      const mfDir = dirname(resolve(outFile));
      const mfPath = join(mfDir, "Modelfile");
      let template: string | null = null;
      let note: string | null = null;
      const tok = loadTokenizer(modelDir);
      if (tok.chatTemplate() !== null) {
        const go = chatTemplateToGo((m, g) => tok.applyChatTemplate(m, { addGenerationPrompt: g }), {
          bosToken: tok.bosToken,
          addBos: addBos ?? true,
        });
        template = go.template;
        note = go.reason;
        if (note) log(`lorakit: ${note}; the Modelfile has no TEMPLATE (Ollama reads the GGUF's)`);
      }
      const from = adapterOnly
        ? (args["ollama-from"] ?? `./${basename(resolve(modelDir))}.gguf`)
        : fromModelfile(mfDir, outFile);
      if (adapterOnly && !args["ollama-from"])
        log(
          `lorakit: the Modelfile's FROM is ${from}: write the base model there (lorakit export-gguf --model ${modelDir} --out ${join(mfDir, basename(from))}) or pass --ollama-from`,
        );
      writeFileSync(
        mfPath,
        modelfile({
          from,
          adapter: adapterOnly ? fromModelfile(mfDir, outFile) : null,
          template,
          comment: `written by lorakit export-gguf${note ? `\n${note}` : ""}`,
        }),
      );
      summary.modelfile = mfPath;
    }
    summary.seconds = (performance.now() - t0) / 1000;
    if (args.json) return printJson(summary);
    out(
      `wrote ${outFile} (${summary.kind}, ${summary.arch}, ${fmtBytes(summary.bytes as number)}) in ${(summary.seconds as number).toFixed(2)} s`,
    );
    if (summary.modelfile) out(`  and ${summary.modelfile}`);
  },
});
