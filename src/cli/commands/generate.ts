import { defineCommand } from "citty";
import { type GenerationStats, generate, generationRates } from "../../models/generate.js";
import { loadForInference } from "../load.js";
import {
  CliError,
  DTYPE_FLAG,
  dtypeArg,
  KV_DTYPE_FLAG,
  kvDtypeArg,
  log,
  numArg,
  printJson,
  requireArg,
} from "../output.js";
import { setupBackend } from "../setup.js";

export const generateCommand = defineCommand({
  meta: { name: "generate", description: "Continue a prompt with a model (and adapter)" },
  args: {
    model: { type: "string", description: "model folder", required: true },
    adapter: { type: "string", description: "PEFT adapter folder" },
    dtype: DTYPE_FLAG,
    "kv-dtype": KV_DTYPE_FLAG,
    prompt: { type: "string", description: "prompt text", required: true },
    "max-new-tokens": { type: "string", description: "tokens to generate (default 64)" },
    temperature: { type: "string", description: "0 = greedy (default)" },
    "top-k": { type: "string", description: "sample from the k most likely (0 = off)" },
    "top-p": { type: "string", description: "nucleus sampling threshold (1 = off)" },
    seed: { type: "string", description: "sampling seed (default 0)" },
    "stop-at-eos": { type: "boolean", description: "stop after an end-of-sequence token" },
    "add-bos": { type: "boolean", description: "prepend the tokenizer's BOS token to the prompt" },
    threads: { type: "string", description: "kernel threads (default: all cores)" },
    json: { type: "boolean", description: "print one JSON object on stdout" },
  },
  async run({ args }) {
    const threads =
      args.threads === undefined ? undefined : numArg("threads", args.threads, { int: true, min: 1 });
    await setupBackend(threads);
    // Every flag is checked before the model loads, so a typo fails at once.
    const prompt = requireArg("prompt", args.prompt);
    const kvDtype = kvDtypeArg(args["kv-dtype"]);
    const maxNewTokens =
      args["max-new-tokens"] === undefined
        ? 64
        : numArg("max-new-tokens", args["max-new-tokens"], { int: true, min: 0 });
    const sampling = {
      temperature: args.temperature === undefined ? 0 : numArg("temperature", args.temperature, { min: 0 }),
      topK: args["top-k"] === undefined ? 0 : numArg("top-k", args["top-k"], { int: true, min: 0 }),
      topP: args["top-p"] === undefined ? 1 : numArg("top-p", args["top-p"], { min: 0, max: 1 }),
      seed: args.seed === undefined ? 0 : numArg("seed", args.seed, { int: true }),
    };
    const { model, tokenizer } = await loadForInference(requireArg("model", args.model), args.adapter, {
      dtype: dtypeArg(args.dtype),
    });
    const promptIds = tokenizer.encode(prompt, { addSpecialTokens: false });
    if (args["add-bos"]) {
      if (tokenizer.bosTokenId === null) throw new CliError("--add-bos: the tokenizer has no BOS token");
      promptIds.unshift(tokenizer.bosTokenId);
    }
    if (promptIds.length === 0)
      throw new CliError("--prompt encodes to no tokens; give some text (or --add-bos)");
    const limit = model.config.maxPositionEmbeddings;
    if (promptIds.length + maxNewTokens > limit)
      throw new CliError(
        `prompt (${promptIds.length} tokens) + --max-new-tokens ${maxNewTokens} exceed the model's ${limit} positions`,
      );
    const eos = [
      tokenizer.eosTokenId,
      ...(Array.isArray(model.config.eosTokenId) ? model.config.eosTokenId : [model.config.eosTokenId]),
    ].filter((x): x is number => typeof x === "number");
    let streamed = 0;
    const tokens: number[] = [];
    const t0 = performance.now();
    const stats = {} as GenerationStats;
    const ids = generate(model, promptIds, {
      stats,
      kvDtype,
      maxNewTokens,
      ...sampling,
      stopAtEos: Boolean(args["stop-at-eos"]),
      eosTokenIds: eos,
      onToken: (id) => {
        tokens.push(id);
        if (args.json) return;
        // Stream decoded text as it grows (decode the whole tail so multi-byte characters join).
        const text = tokenizer.decode(tokens);
        if (!text.endsWith("\uFFFD")) {
          process.stdout.write(text.slice(streamed));
          streamed = text.length;
        }
      },
    });
    const seconds = (performance.now() - t0) / 1000;
    const text = tokenizer.decode(ids);
    const rates = generationRates(stats);
    if (args.json)
      return printJson({
        tokens: ids,
        text,
        prompt_tokens: promptIds.length,
        kv_dtype: kvDtype,
        seconds,
        tokens_per_second: ids.length / seconds,
        prefill_tokens_per_second: Number.isFinite(rates.prefill) ? rates.prefill : null,
        decode_tokens_per_second: Number.isFinite(rates.decode) ? rates.decode : null,
      });
    process.stdout.write(`${text.slice(streamed)}\n`);
    const fmt = (r: number) => (Number.isFinite(r) ? r.toFixed(1) : "–");
    log(
      `${ids.length} tokens in ${seconds.toFixed(2)} s: prefill ${promptIds.length} tokens at ${fmt(rates.prefill)} tokens/s, decode at ${fmt(rates.decode)} tokens/s`,
    );
  },
});
