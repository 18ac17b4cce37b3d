// LoRA initialisations (PEFT's reset_lora_parameters). Each returns A (r, in) and B (out, r).
import type { Rng } from "../../core/rng.js";
import { kaimingUniform, randNormal } from "../../core/rng.js";
import type { Tensor } from "../../core/tensor.js";
import { zeros } from "../../core/tensor.js";
import { PeftError } from "../errors.js";

export interface LoraInit {
  A: Tensor;
  B: Tensor;
}

/**
 * - true: A Kaiming-uniform with a = √5 (U(±1/√in)), B = 0, so training starts exactly
 *   at the base model.
 * - "gaussian": A ~ N(0, 1/r), B = 0.
 * - false: A and B both Kaiming-uniform (nn.Linear's default), a non-identity start used
 *   by tests.
 */
export function initLora(
  init: boolean | string,
  r: number,
  inFeatures: number,
  outFeatures: number,
  rng: Rng,
): LoraInit {
  if (init === true) return { A: kaimingUniform(rng, [r, inFeatures]), B: zeros([outFeatures, r]) };
  if (init === "gaussian")
    return { A: randNormal(rng, [r, inFeatures], 0, 1 / r), B: zeros([outFeatures, r]) };
  if (init === false)
    return { A: kaimingUniform(rng, [r, inFeatures]), B: kaimingUniform(rng, [outFeatures, r]) };
  throw new PeftError(
    `init_lora_weights ${JSON.stringify(init)} is not handled by initLora (PiSSA has its own initialiser)`,
  );
}
