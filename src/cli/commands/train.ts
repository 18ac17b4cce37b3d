import { defineCommand } from "citty";
import { demoLoraFlags } from "../demo/lora-recipe.js";
import { prepareOutDir } from "../out-dir.js";
import { log, out, printJson } from "../output.js";
import { TrainProgress } from "../progress.js";
import { lossChartLines, runTraining } from "../run-training.js";
import { setupBackend } from "../setup.js";
import { readConfigFile, resolveTrainOptions } from "../train-options.js";

const s = (description: string) => ({ type: "string" as const, description });
const b = (description: string) => ({ type: "boolean" as const, description });

export const trainCommand = defineCommand({
  meta: {
    name: "train",
    description: `Fine-tune a LoRA adapter (or the full model) and save it in PEFT format. The defaults are PEFT's, for large models; on a small model such as the shipped demo base they barely move the loss: \`npm start\` trains it with ${demoLoraFlags()}`,
  },
  args: {
    model: s("base model folder (Hugging Face layout)"),
    data: s("training data: .txt (plain text) or .jsonl (text / prompt+completion / alpaca / chat messages)"),
    out: s("output folder: adapter, loss.csv, loss.svg, checkpoints/"),
    config: s("YAML or JSON file of options (flags override it)"),
    "valid-data": s("separate validation file"),
    steps: s("optimizer steps (default 100)"),
    "batch-size": s("sequences per micro-batch (default 4)"),
    "seq-len": s("tokens per sequence (default 128)"),
    "grad-accum": s("micro-batches per step (default 1)"),
    lr: s("learning rate (default 2e-4)"),
    schedule: s("constant | linear | cosine (default cosine)"),
    "warmup-steps": s("linear warm-up steps (default 0)"),
    "weight-decay": s("AdamW weight decay (default 0)"),
    "max-grad-norm": s("clip the gradient norm (default 1; 0 = off)"),
    "lora-plus-ratio": s("LoRA+: B learns this many times faster than A (e.g. 16)"),
    r: s("LoRA rank (default 8)"),
    "lora-alpha": s("LoRA alpha (default 16)"),
    "lora-dropout": s("dropout on the adapter input (default 0)"),
    "target-modules": s("q_proj,v_proj,... or all-linear (default q_proj,v_proj)"),
    "use-rslora": b("scale alpha/√r instead of alpha/r"),
    quantize: s(
      "none | nf4: QLoRA, the base's decoder linears in NF4, quantised while loading (default none)",
    ),
    dtype: s(
      "auto | f32 | bf16: dtype the frozen weights live in (default auto: a bf16 checkpoint stays bf16)",
    ),
    "max-memory": s(
      "memory budget, e.g. 4GiB (default: available memory less a margin); the plan is made to fit",
    ),
    "gradient-checkpointing": s(
      "auto | on | off: recompute layer activations in backward (default auto: when the budget needs it)",
    ),
    seed: s("seed for init, data order and dropout (default 0)"),
    threads: s("kernel threads (default: all cores)"),
    "eval-every": s("evaluate every N steps (default: before and after only)"),
    "valid-fraction": s("fraction held out for eval (default 0.05)"),
    "checkpoint-every": s("write a resumable checkpoint every N steps"),
    "save-total-limit": s("checkpoints kept: the latest N (default 2; 0 keeps every one)"),
    resume: s("resume from a checkpoint folder, or 'true' for the latest under OUT/checkpoints"),
    full: b("full fine-tuning: every parameter trains; writes a model instead of an adapter"),
    pack: b("pack short examples into full sequences"),
    "train-on-prompt": b("also train on prompt / user tokens"),
    "log-every": s("print a line every N steps when not on a terminal (default 1)"),
    method: s("lora | adalora | gora (default lora)"),
    "init-r": s("AdaLoRA: initial rank of every module (default 12)"),
    "target-r": s("AdaLoRA: target average rank (default 8)"),
    tinit: s("AdaLoRA: warm-up steps before pruning (default 0)"),
    tfinal: s("AdaLoRA: final steps with the ranks fixed (default 0)"),
    "delta-t": s("AdaLoRA: steps between rank allocations (default 1)"),
    beta1: s("AdaLoRA: EMA of the sensitivity (default 0.85)"),
    beta2: s("AdaLoRA: EMA of the uncertainty (default 0.85)"),
    "orth-reg-weight": s("AdaLoRA: orthogonal regulariser weight (default 0.5)"),
    "gora-batches": s("GoRA: batches of gradient accumulation before training (default 8)"),
    "gora-importance": s("GoRA: union_frobenius_norm | union_mean | grad_frobenius_norm | grad_mean"),
    "gora-min-rank": s("GoRA: smallest rank per module (default 1)"),
    "gora-max-rank": s("GoRA: largest rank per module (default 9999)"),
    "gora-gamma": s("GoRA: γ in B = G·A⁺·γ/α (default 0.02)"),
    json: b("print one JSON summary on stdout"),
  },
  async run({ args }) {
    const file = typeof args.config === "string" ? readConfigFile(args.config) : {};
    const flags: Record<string, unknown> = { ...args };
    delete flags.config;
    delete flags.json;
    delete flags._;
    const o = resolveTrainOptions(file, flags);
    // Before any training: a result that cannot be written is a lost run.
    prepareOutDir("out", o.out);
    const backendName = await setupBackend(o.threads ?? undefined);
    log(`lorakit: train, backend ${backendName}`);
    const progress = new TrainProgress({ json: Boolean(args.json), logEvery: o.logEvery });
    let run: Awaited<ReturnType<typeof runTraining>>;
    try {
      run = await runTraining(o, (ev) => progress.event(ev));
    } finally {
      progress.stop();
    }
    const sm = run.summary;
    if (args.json) return printJson({ ...sm, backend: backendName });
    for (const l of lossChartLines(run.losses)) log(l);
    out(
      `trained ${sm.steps} steps in ${sm.seconds.toFixed(1)} s (${sm.tokens_per_second.toFixed(0)} tokens/s); final loss ${sm.final_loss.toFixed(4)}`,
    );
    if (sm.eval_loss_before !== null || sm.eval_loss_after !== null)
      out(
        `eval loss: before ${sm.eval_loss_before?.toFixed(4) ?? "-"} → after ${sm.eval_loss_after?.toFixed(4) ?? "-"}`,
      );
    out(`wrote ${sm.out} (adapter or model, loss.csv, loss.svg)`);
  },
});
