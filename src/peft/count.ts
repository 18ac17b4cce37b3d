// Parameter counts as PEFT's get_nb_trainable_parameters gives them. A 4-bit base weight is
// not a parameter tensor here (Linear4bit holds packed codes), but it is a weight of the
// model: PEFT counts a Params4bit as its element count (two codes per byte), and so do we,
// or QLoRA's "all params" would hold only the adapter, norms and embeddings.
import type { Tensor } from "../core/tensor.js";

/** A module holding weights outside its parameters (Linear4bit): how many elements they encode. */
interface HoldsQuantizedWeights {
  readonly quantizedNumel: number;
}

function quantizedNumel(m: object): number {
  const n = (m as Partial<HoldsQuantizedWeights>).quantizedNumel;
  return typeof n === "number" ? n : 0;
}

/** Trainable and all parameters of `model`, 4-bit weights counted by the elements they encode. */
export function countParameters(model: { namedParameters(): Iterable<[string, Tensor]> }): {
  trainable: number;
  all: number;
} {
  let trainable = 0;
  let all = 0;
  for (const [, p] of model.namedParameters()) {
    all += p.size;
    if (p.requiresGrad) trainable += p.size;
  }
  // Every Module has namedModules; a model-like object without it holds no 4-bit layers.
  const modules = (model as { namedModules?: () => Iterable<[string, object]> }).namedModules?.();
  for (const [, m] of modules ?? []) all += quantizedNumel(m);
  return { trainable, all };
}
