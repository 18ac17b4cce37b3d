// What `lorakit train` leaves in OUT: the adapter in PEFT's format (AdaLoRA: its ADALORA
// adapter, and the same update as a plain LoRA adapter in OUT/lora), or for full fine-tuning
// the model with its tokenizer files; and the loss curve as loss.csv and loss.svg.
import { cpSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LlamaForCausalLM } from "../models/llama/model.js";
import { saveModel } from "../models/node/load.js";
import { saveAdaLora } from "../peft/adalora/node/io.js";
import type { PeftModel } from "../peft/model.js";
import { savePretrained } from "../peft/node/io.js";
import type { PreparedTraining } from "../peft/training-method.js";
import { adaLoraAsLora } from "../peft/training-method.js";
import { lineChartSvg } from "./plot.js";

/** Tokenizer and generation files a fully fine-tuned model takes along from its base folder. */
const BASE_FILES_KEPT = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
];

/**
 * Writes the trained model to `out` and returns the LoRA adapter a caller can go on using
 * (AdaLoRA: converted to LoRA, which unloads the AdaLoRA wrapper), null for full fine-tuning.
 */
export function saveTrainedModel(
  t: PreparedTraining<LlamaForCausalLM>,
  model: LlamaForCausalLM,
  out: string,
  baseModelPath: string,
): PeftModel<LlamaForCausalLM> | null {
  mkdirSync(out, { recursive: true });
  if (t.adalora) {
    // The ADALORA adapter in OUT (PEFT's format), and the same update as a plain LoRA
    // adapter of the final ranks in OUT/lora (for merge and serving).
    saveAdaLora(t.adalora, out, { baseModelNameOrPath: baseModelPath });
    const peft = adaLoraAsLora(t.adalora);
    savePretrained(peft, join(out, "lora"), { baseModelNameOrPath: baseModelPath });
    return peft;
  }
  if (t.peft) {
    savePretrained(t.peft, out, { baseModelNameOrPath: baseModelPath });
    return t.peft;
  }
  saveModel(model, out);
  for (const f of BASE_FILES_KEPT)
    if (existsSync(join(baseModelPath, f))) cpSync(join(baseModelPath, f), join(out, f));
  return null;
}

/** loss.csv (step, loss, lr, eval_loss) and loss.svg in the output folder. */
export function writeLossFiles(
  out: string,
  losses: { step: number; loss: number; lr: number }[],
  evals: { step: number; loss: number }[],
): void {
  const ev = new Map(evals.map((e) => [e.step, e.loss]));
  const byStep = new Map(losses.map((l) => [l.step, l]));
  // Eval steps without a training step (step 0, before training) get a row of their own.
  const steps = [...new Set([...byStep.keys(), ...ev.keys()])].sort((a, b) => a - b);
  const rows = [
    "step,loss,lr,eval_loss",
    ...steps.map((s) => {
      const l = byStep.get(s);
      return `${s},${l?.loss ?? ""},${l?.lr ?? ""},${ev.get(s) ?? ""}`;
    }),
  ];
  writeFileSync(join(out, "loss.csv"), `${rows.join("\n")}\n`);
  writeFileSync(
    join(out, "loss.svg"),
    lineChartSvg(
      [
        { name: "train loss", color: "#1f77b4", points: losses.map((l) => ({ x: l.step, y: l.loss })) },
        {
          name: "eval loss",
          color: "#d62728",
          markers: true,
          points: evals.map((e) => ({ x: e.step, y: e.loss })),
        },
      ],
      { title: "lorakit training loss", xLabel: "step", yLabel: "loss (nats/token)" },
    ),
  );
}
