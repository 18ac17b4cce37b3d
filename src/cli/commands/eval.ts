import { readFileSync } from "node:fs";
import { defineCommand } from "citty";
import { evaluateNll } from "../../models/evaluate.js";
import { loadForInference } from "../load.js";
import { CliError, DTYPE_FLAG, dtypeArg, log, numArg, out, printJson, requireArg } from "../output.js";
import { setupBackend } from "../setup.js";

export const evalCommand = defineCommand({
  meta: {
    name: "eval",
    description: "Mean negative log-likelihood (nats) of a text file's tokens under a model (and adapter)",
  },
  args: {
    model: { type: "string", description: "model folder", required: true },
    adapter: { type: "string", description: "PEFT adapter folder" },
    dtype: DTYPE_FLAG,
    text: { type: "string", description: "UTF-8 text file", required: true },
    "seq-len": { type: "string", description: "window length in tokens (default: min(max positions, 1024))" },
    "batch-size": { type: "string", description: "windows per forward (default 4)" },
    threads: { type: "string", description: "kernel threads (default: all cores)" },
    json: { type: "boolean", description: "print one JSON object on stdout" },
  },
  async run({ args }) {
    const threads =
      args.threads === undefined ? undefined : numArg("threads", args.threads, { int: true, min: 1 });
    const backendName = await setupBackend(threads);
    // Every flag is checked before the model loads, so a typo fails at once.
    const file = requireArg("text", args.text);
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      if ((e as { code?: string }).code === "ENOENT") throw new CliError(`--text ${file}: no such file`);
      throw new CliError(`--text ${file}: cannot read it`, { cause: e });
    }
    const seqLenArg =
      args["seq-len"] === undefined ? undefined : numArg("seq-len", args["seq-len"], { int: true, min: 2 });
    const batchSize =
      args["batch-size"] === undefined ? 4 : numArg("batch-size", args["batch-size"], { int: true, min: 1 });
    const { model, tokenizer } = await loadForInference(requireArg("model", args.model), args.adapter, {
      dtype: dtypeArg(args.dtype),
    });
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    if (ids.length < 2)
      throw new CliError(`--text ${file}: ${ids.length} token(s); at least 2 are needed to predict one`);
    const seqLen = seqLenArg ?? Math.min(model.config.maxPositionEmbeddings, 1024);
    if (seqLen > model.config.maxPositionEmbeddings)
      log(
        `lorakit: warning: --seq-len ${seqLen} exceeds the model's ${model.config.maxPositionEmbeddings} positions; positions past them were never trained`,
      );
    const t0 = performance.now();
    const r = evaluateNll(model, ids, { seqLen, batchSize });
    const seconds = (performance.now() - t0) / 1000;
    const result = {
      loss: r.loss,
      tokens: r.tokens,
      perplexity: Math.exp(r.loss),
      windows: r.windows,
      seq_len: seqLen,
      seconds,
      tokens_per_second: r.tokens / seconds,
      backend: backendName,
    };
    if (args.json) return printJson(result);
    log(`backend ${backendName}, ${r.windows} window(s) of ≤ ${seqLen} tokens`);
    out(
      `loss ${r.loss.toFixed(6)} nats over ${r.tokens} tokens (perplexity ${result.perplexity.toFixed(3)}) in ${seconds.toFixed(2)} s`,
    );
  },
});
