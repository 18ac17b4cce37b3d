import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineCommand } from "citty";
import { Rng } from "../../core/rng.js";
import { mobyDickText } from "../../data/corpora.js";
import { parseLlamaConfig } from "../../models/llama/config.js";
import { LlamaForCausalLM } from "../../models/llama/model.js";
import { saveModel } from "../../models/node/load.js";
import { trainBpeTokenizer } from "../../tokenizer/bpe-trainer.js";
import { saveTokenizer } from "../../tokenizer/node.js";
import { DEMO_BASE_DEFAULT_OUT } from "../demo/paths.js";
import { DEMO_BASE_RECIPE as R } from "../demo/recipe.js";
import { log, numArg, printJson } from "../output.js";
import { TrainProgress } from "../progress.js";
import { runTraining } from "../run-training.js";
import { setupBackend } from "../setup.js";
import { TRAIN_DEFAULTS } from "../train-options.js";

export const buildDemoBaseCommand = defineCommand({
  meta: {
    name: "build-demo-base",
    description: "Rebuild the shipped demo base model: train a BPE tokenizer and a small LLaMA on Moby Dick",
  },
  args: {
    out: {
      type: "string",
      description: `output folder (default ./${DEMO_BASE_DEFAULT_OUT}; pass the package's models/demo-base to replace the shipped model)`,
    },
    steps: { type: "string", description: `training steps (default ${R.train.steps})` },
    threads: { type: "string", description: "kernel threads" },
    json: { type: "boolean", description: "print one JSON summary" },
  },
  async run({ args }) {
    // Never the shipped model by default: a bare rebuild must not overwrite what others use.
    const out = args.out ?? DEMO_BASE_DEFAULT_OUT;
    const threads =
      args.threads === undefined ? undefined : numArg("threads", args.threads, { int: true, min: 1 });
    const backendName = await setupBackend(threads);
    const text = mobyDickText();
    log(
      `lorakit: build-demo-base, backend ${backendName}; Moby Dick, ${text.length.toLocaleString("en-US")} characters`,
    );
    const tok = trainBpeTokenizer(text, { vocabSize: R.vocabSize });
    const vocab = (tok.tokenizerJson as { model: { vocab: Record<string, number> } }).model.vocab;
    const added = (tok.tokenizerJson as { added_tokens: { id: number; content: string }[] }).added_tokens;
    const vocabSize = Math.max(...Object.values(vocab), ...added.map((a) => a.id)) + 1;
    const bos = added.find((a) => a.content === "<|begin_of_text|>")?.id ?? null;
    const eos = added.find((a) => a.content === "<|end_of_text|>")?.id ?? null;
    const config = parseLlamaConfig({
      ...R.config,
      vocab_size: vocabSize,
      bos_token_id: bos,
      eos_token_id: eos,
    });
    const work = mkdtempSync(join(tmpdir(), "lorakit-demo-base-"));
    try {
      const init = join(work, "init");
      saveModel(new LlamaForCausalLM(config, { rng: new Rng(R.train.seed) }), init);
      saveTokenizer(init, tok);
      const dataFile = join(work, "moby-dick.txt");
      writeFileSync(dataFile, text);
      mkdirSync(out, { recursive: true });
      const progress = new TrainProgress({ json: Boolean(args.json), logEvery: 50 });
      const run = await runTraining(
        {
          ...TRAIN_DEFAULTS,
          ...R.train,
          steps:
            args.steps === undefined ? R.train.steps : numArg("steps", args.steps, { int: true, min: 1 }),
          model: init,
          data: dataFile,
          out,
          full: true,
          threads: threads ?? null,
          evalEvery: 200,
        },
        (ev) => progress.event(ev),
      );
      progress.stop();
      rmSync(join(out, "checkpoints"), { recursive: true, force: true });
      if (args.json) printJson(run.summary);
      else
        log(
          `demo base written to ${out}: eval loss ${run.summary.eval_loss_before?.toFixed(3)} → ${run.summary.eval_loss_after?.toFixed(3)}`,
        );
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
});
