// DoRA (Liu et al. 2024, "Weight-Decomposed Low-Rank Adaptation") as a LoRA variant:
//   W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖_row
// with m [out] a trainable magnitude initialised to the row norms of W + s·B·A (= ‖W‖ when
// B = 0). The norm is a constant for backprop (DoRA §4.3). Follows PEFT's
// tuners/lora/dora.py (DoraLinearLayer) and variants.py (DoraLinearVariant) exactly:
//   forward adds (m/‖·‖ − 1)·base_result + (m/‖·‖)·s·B·A·x', where base_result is the
//   output so far minus the base bias, or — with dropout active — W·dropout(x) recomputed
//   on the dropped-out input x' (PEFT PR #1474);
//   merge: W ← (m/‖W + ΔW‖)·(W + ΔW), the norm kept for unmerge: W ← W'/(m/‖·‖) − ΔW.
import { add, div, linear, mul, scale as scaleOp, sub } from "../../core/ops/index.js";
import type { Tensor } from "../../core/tensor.js";
import { fromArray } from "../../core/tensor.js";
import { ParamHolder } from "../../nn/module.js";
import { PeftError } from "../errors.js";
import type { LoraLinear } from "./layer.js";
import type { LoraVariant } from "./variant.js";

/**
 * Row norms ‖W[o,:] + ΔW[o,:]‖₂ (PEFT's get_weight_norm: torch.linalg.norm(W + s·B·A, dim=1)).
 * `w` and `delta` are out×in row-major; each sum W + ΔW is rounded to f32 as in PyTorch.
 */
export function rowNorms(
  w: Float32Array,
  delta: Float32Array | null,
  out: number,
  inF: number,
): Float32Array {
  const norms = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let acc = 0;
    const off = o * inF;
    for (let i = 0; i < inF; i++) {
      const v = delta ? Math.fround(w[off + i] + delta[off + i]) : w[off + i];
      acc += v * v;
    }
    norms[o] = Math.sqrt(acc);
  }
  return norms;
}

/** ‖W + s·B·A‖ per output row for one adapter, outside autograd (a constant for backprop). */
export function doraWeightNorm(layer: LoraLinear, name: string): Float32Array {
  return rowNorms(layer.baseWeightValues(), layer.deltaWeight(name), layer.outFeatures, layer.inFeatures);
}

export class DoraVariant implements LoraVariant {
  readonly kind = "dora";
  /** ‖W + ΔW‖ taken at merge time, per adapter: unmerge needs the norm of the weights before merging. */
  private readonly mergeNorms = new Map<string, Float32Array>();

  /** PEFT's DoraLinearVariant.init → DoraLinearLayer.update_layer: m = ‖W + s·B·A‖ (trainable). */
  init(layer: LoraLinear, name: string): void {
    if (layer.lora_B.get(name)?.bias)
      throw new PeftError(
        "The argument lora_bias=True is not supported for DoRA, please pass use_dora=False",
      );
    const m = fromArray(this.weightNorm(layer, name), [layer.outFeatures], "f32");
    layer.lora_magnitude_vector.set(name, new ParamHolder(m));
  }

  /** ‖W + s·B·A‖ per output row (PEFT's get_weight_norm), a plain array: no gradient reaches it. */
  weightNorm(layer: LoraLinear, name: string): Float32Array {
    return doraWeightNorm(layer, name);
  }

  magnitude(layer: LoraLinear, name: string): Tensor {
    const h = layer.lora_magnitude_vector.get(name);
    if (!h) throw new PeftError(`DoRA adapter "${name}" has no lora_magnitude_vector on this layer`);
    return h.weight;
  }

  forward(layer: LoraLinear, name: string, x: Tensor, result: Tensor): Tensor {
    const A = layer.lora_A.get(name)!.weight;
    const B = layer.lora_B.get(name)!.weight;
    const s = layer.scaling.get(name)!;
    // Detached: a plain array turned into a tensor that no gradient reaches.
    const norm = fromArray(this.weightNorm(layer, name), [layer.outFeatures], "f32");
    const magNormScale = div(this.magnitude(layer, name), norm); // [out], broadcast over rows
    const dropped = layer.dropoutInput(name, x);
    let baseResult: Tensor;
    let xin = x;
    if (dropped) {
      // PEFT recomputes the base part on the dropped-out input (no bias).
      xin = dropped;
      baseResult = linear(dropped, layer.baseWeight);
    } else {
      const bias = layer.base_layer.param("bias");
      baseResult = bias ? sub(result, bias) : result;
    }
    const loraResult = linear(linear(xin, A), B);
    return add(mul(sub(magNormScale, 1), baseResult), mul(magNormScale, scaleOp(loraResult, s)));
  }

  merge(layer: LoraLinear, name: string, w: Float32Array): void {
    const delta = layer.deltaWeight(name);
    const { outFeatures: out, inFeatures: inF } = layer;
    const norm = rowNorms(w, delta, out, inF);
    this.mergeNorms.set(name, norm);
    const m = this.magnitude(layer, name).data as Float32Array;
    for (let o = 0; o < out; o++) {
      const f = Math.fround(m[o] / norm[o]);
      const off = o * inF;
      for (let i = 0; i < inF; i++) w[off + i] = f * Math.fround(w[off + i] + delta[off + i]);
    }
  }

  unmerge(layer: LoraLinear, name: string, w: Float32Array): void {
    const norm = this.mergeNorms.get(name);
    if (!norm)
      throw new PeftError(`DoRA adapter "${name}": no weight norm stored from merging; it was not merged`);
    this.mergeNorms.delete(name);
    const delta = layer.deltaWeight(name);
    const { outFeatures: out, inFeatures: inF } = layer;
    const m = this.magnitude(layer, name).data as Float32Array;
    for (let o = 0; o < out; o++) {
      const f = Math.fround(m[o] / norm[o]);
      const off = o * inF;
      for (let i = 0; i < inF; i++) w[off + i] = Math.fround(w[off + i] / f) - delta[off + i];
    }
  }

  parameters(layer: LoraLinear, name: string): Tensor[] {
    const h = layer.lora_magnitude_vector.get(name);
    return h ? [h.weight] : [];
  }

  remove(layer: LoraLinear, name: string): void {
    layer.lora_magnitude_vector.delete(name);
    this.mergeNorms.delete(name);
  }
}
