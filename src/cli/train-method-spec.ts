// `lorakit train` flags → the library's TrainingMethodSpec (peft/training-method.ts): which
// method, its config in the library's names, and for GoRA the batches its gradients come
// from (a batcher of its own, seeded seed + 2, so the training order is the same as with
// --method lora).
import type { LlamaForCausalLM } from "../models/llama/model.js";
import type { LoraConfig } from "../peft/config.js";
import type { TrainingMethodSpec } from "../peft/training-method.js";
import type { Batch, Example } from "../train/data.js";
import { Batcher } from "../train/data.js";
import { batchLoss } from "../train/trainer.js";
import type { TrainOptions } from "./train-options.js";

export function trainingMethodSpec(
  o: TrainOptions,
  model: LlamaForCausalLM,
  train: readonly Example[],
  padId: number,
): TrainingMethodSpec<Batch> {
  if (o.full) return { method: "full" };
  if (o.method === "adalora")
    return {
      method: "adalora",
      // PEFT's AdaLoraConfig; total_step is the run's step count.
      config: {
        initR: o.initR,
        targetR: o.targetR,
        tinit: o.tinit,
        tfinal: o.tfinal,
        deltaT: o.deltaT,
        beta1: o.beta1,
        beta2: o.beta2,
        orthRegWeight: o.orthRegWeight,
        totalStep: o.steps,
        loraAlpha: o.loraAlpha,
        loraDropout: o.loraDropout,
        targetModules: o.targetModules,
        baseModelNameOrPath: o.model,
      },
    };
  const config: Partial<LoraConfig> = {
    r: o.r,
    loraAlpha: o.loraAlpha,
    loraDropout: o.loraDropout,
    targetModules: o.targetModules,
    useRslora: o.useRslora,
    baseModelNameOrPath: o.model,
  };
  if (o.method === "lora") return { method: "lora", config };
  // GoRA: gradients of the frozen weights over --gora-batches batches.
  const gb = new Batcher(train, { batchSize: o.batchSize, seqLen: o.seqLen, seed: o.seed + 2, padId });
  return {
    method: "gora",
    config,
    gora: {
      importance: o.goraImportance,
      minRank: o.goraMinRank,
      maxRank: o.goraMaxRank,
      gamma: o.goraGamma,
    },
    batches: Array.from({ length: o.goraBatches }, () => gb.next()),
    lossOf: (b) => batchLoss(model, b),
  };
}
