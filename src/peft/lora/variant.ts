// The plug-in point for LoRA variants (PEFT's LoraVariant): a variant changes how one
// adapter of a LoraLinear initialises, runs and merges, while the layer keeps owning A, B,
// the scale and dropout. DoRA (dora.ts) is the one variant so far.
import type { Tensor } from "../../core/tensor.js";
import type { LoraLinear } from "./layer.js";

export interface LoraVariant {
  /** Short name for messages ("dora"). */
  readonly kind: string;
  /**
   * Called once the adapter's A, B and scale are in place (PEFT's LoraVariant.init, run at
   * the end of update_layer). May register parameters on the layer.
   */
  init(layer: LoraLinear, name: string): void;
  /**
   * What the adapter adds to `result` for input `x` (PEFT's variant forward minus the final
   * `result +`). `result` is the layer's output so far: the base output plus the adapters
   * applied before this one, bias included.
   */
  forward(layer: LoraLinear, name: string, x: Tensor, result: Tensor): Tensor;
  /** Folds the adapter into the f32 base weight `w` (out×in, row-major) in place. */
  merge(layer: LoraLinear, name: string, w: Float32Array): void;
  /** The exact inverse of `merge`, in place. */
  unmerge(layer: LoraLinear, name: string, w: Float32Array): void;
  /** The variant's own trainable tensors for this adapter (made trainable with A and B). */
  parameters(layer: LoraLinear, name: string): Tensor[];
  /** Removes what `init` registered. */
  remove(layer: LoraLinear, name: string): void;
}
