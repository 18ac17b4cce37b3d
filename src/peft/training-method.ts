// How a model is trained, chosen in one place: full fine-tuning (every parameter), LoRA, GoRA
// (LoRA whose ranks and B come from gradients of the frozen weights) or AdaLoRA (SVD-form
// adapters whose ranks are pruned while training). `prepareTraining` wraps the model and
// returns what the Trainer needs besides data and optimizer: the module to train, its
// dropout RNG and the method's hooks (AdaLoRA's regulariser, allocation and resume state).
// QLoRA is LoRA (or GoRA, AdaLoRA) on a base whose linear layers are already Linear4bit
// (quant/, done while loading); nothing here differs for it.
import { Rng } from "../core/rng.js";
import type { Tensor } from "../core/tensor.js";
import type { AdaLoraConfig } from "./adalora/config.js";
import type { AdaLoraModel } from "./adalora/model.js";
import { adaLoraToLora, getAdaLoraModel } from "./adalora/model.js";
import type { ResumeState } from "./adalora/resume-state.js";
import { adaLoraResumeState } from "./adalora/resume-state.js";
import type { LoraConfig } from "./config.js";
import type { GoraOptions, GoraResult } from "./gora/gora.js";
import { goraInit } from "./gora/gora.js";
import type { AdapterInit, BaseModel, PeftModel } from "./model.js";
import { getPeftModel } from "./model.js";

export type TrainingMethod = "full" | "lora" | "gora" | "adalora";

/** A method and its configuration. */
export type TrainingMethodSpec<B = unknown> =
  | { method: "full" }
  | { method: "lora"; config: Partial<LoraConfig> }
  | {
      method: "gora";
      /** r is the reference rank whose parameter budget GoRA shares out. */
      config: Partial<LoraConfig>;
      gora: Omit<GoraOptions, "seed">;
      /** The batches whose gradients rank and initialise the adapters. */
      batches: Iterable<B>;
      /** A batch's scalar loss on the base model (e.g. the Trainer's batchLoss). */
      lossOf: (batch: B) => Tensor;
    }
  | { method: "adalora"; config: Partial<AdaLoraConfig> };

/** The Trainer options a method sets (the same names as TrainerOptions). */
export interface MethodTrainerOptions {
  /** Randomness inside the model (adapter dropout); null for full fine-tuning. */
  rng: Rng | null;
  /** AdaLoRA: the orthogonal regulariser, added to each micro-batch's loss. */
  extraLoss?: () => Tensor;
  /** AdaLoRA: update_and_allocate after optimizer.step() and before zero_grad(). */
  afterOptimizerStep?: (step: number) => void;
  /** AdaLoRA: allocator state and mask for resumed runs. */
  extraState?: ResumeState;
}

export interface PreparedTraining<M extends BaseModel> {
  method: TrainingMethod;
  /** What the optimizer trains: the model itself (full) or its adapter wrapper. */
  trainable: M | PeftModel<M> | AdaLoraModel<M>;
  /** The LoRA wrapper (lora, gora); null otherwise. */
  peft: PeftModel<M> | null;
  /** The AdaLoRA wrapper; null otherwise. */
  adalora: AdaLoraModel<M> | null;
  /** GoRA's allocation (ranks, budget, importances); null otherwise. */
  gora: GoraResult | null;
  trainerOptions: MethodTrainerOptions;
}

/**
 * Wraps `model` for training by `spec.method`. `seed` seeds the adapters' initialisation
 * and GoRA's random A; the dropout RNG starts from `seed + 1`.
 *
 * @example
 * const t = prepareTraining(model, { method: "lora", config: { r: 8, targetModules: ["q_proj", "v_proj"] } }, { seed: 0 });
 * const trainer = new Trainer(t.trainable, batcher, opt, sched, { steps: 100, ...t.trainerOptions });
 */
export function prepareTraining<M extends BaseModel, B>(
  model: M,
  spec: TrainingMethodSpec<B>,
  opts: { seed: number },
): PreparedTraining<M> {
  const { seed } = opts;
  switch (spec.method) {
    case "full":
      for (const [, p] of model.namedParameters()) p.requiresGrad = true;
      return {
        method: "full",
        trainable: model,
        peft: null,
        adalora: null,
        gora: null,
        trainerOptions: { rng: null },
      };
    case "adalora": {
      // PEFT's AdaLoraConfig; as PEFT, the orthogonal regulariser joins the loss and
      // update_and_allocate runs after optimizer.step() and before zero_grad().
      const ada = getAdaLoraModel(model, spec.config, "default", { seed });
      ada.rng.setState(new Rng(seed + 1).getState());
      return {
        method: "adalora",
        trainable: ada,
        peft: null,
        adalora: ada,
        gora: null,
        trainerOptions: {
          rng: ada.rng,
          extraLoss: () => ada.orthRegularization(),
          afterOptimizerStep: (s) => ada.updateAndAllocate(s),
          extraState: adaLoraResumeState(ada),
        },
      };
    }
    case "lora":
    case "gora": {
      let gora: GoraResult | null = null;
      let config = spec.config;
      let initFor: AdapterInit["initFor"];
      if (spec.method === "gora") {
        gora = goraInit(model, spec.batches, spec.lossOf, spec.config, { ...spec.gora, seed });
        config = gora.config;
        initFor = gora.init.initFor;
      }
      const peft = getPeftModel(model, config, "default", initFor ? { seed, initFor } : { seed });
      peft.rng.setState(new Rng(seed + 1).getState());
      return {
        method: spec.method,
        trainable: peft,
        peft,
        adalora: null,
        gora,
        trainerOptions: { rng: peft.rng },
      };
    }
    default:
      return spec satisfies never;
  }
}

/** Final rank per adapted module: AdaLoRA's kept triplets, GoRA's allocation; null otherwise. */
export function finalRanks<M extends BaseModel>(t: PreparedTraining<M>): Record<string, number> | null {
  if (t.adalora) return Object.fromEntries(t.adalora.ranks());
  return t.gora ? Object.fromEntries(t.gora.ranks) : null;
}

/**
 * The trained AdaLoRA adapter as a plain LoRA adapter of its final ranks on the unloaded
 * base (for merging and serving). `ada` is unloaded: its base layers go back into the model.
 */
export function adaLoraAsLora<M extends BaseModel>(ada: AdaLoraModel<M>): PeftModel<M> {
  const conv = adaLoraToLora(ada);
  return getPeftModel(ada.unload(), conv.config, "default", conv.init);
}
