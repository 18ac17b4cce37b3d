// Loading what commands work on: a model folder, its tokenizer, an optional adapter.
import type { LlamaForCausalLM } from "../models/llama/model.js";
import type { WeightDType } from "../models/node/load.js";
import { loadModel } from "../models/node/load.js";
import { fromPretrained } from "../peft/node/io.js";
import { loadTokenizer } from "../tokenizer/node.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { log } from "./output.js";
import { checkWeightsFit } from "./train-plan.js";

export interface Loaded {
  model: LlamaForCausalLM;
  tokenizer: Tokenizer;
}

export async function loadForInference(
  modelDir: string,
  adapterDir?: string,
  opts: { dtype?: WeightDType } = {},
): Promise<Loaded> {
  const t0 = performance.now();
  checkWeightsFit(modelDir, { dtype: opts.dtype });
  const { model, report } = loadModel(modelDir, { dtype: opts.dtype });
  if (report.unexpected.length)
    log(
      `lorakit: ignored ${report.unexpected.length} unexpected checkpoint tensor(s): ${report.unexpected.slice(0, 5).join(", ")}`,
    );
  const tokenizer = loadTokenizer(modelDir);
  if (adapterDir) {
    // The LoRA layers are injected into the model's own tree, so model.forward uses them.
    const pm = fromPretrained(model, adapterDir);
    const cfg = pm.peftConfig.get("default")!;
    log(
      `lorakit: adapter ${adapterDir}: r=${cfg.r}, alpha=${cfg.loraAlpha}, ${pm.targetsOf.get("default")?.length ?? 0} modules`,
    );
  }
  log(`lorakit: loaded ${modelDir} in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  return { model, tokenizer };
}
