// A NaN or an infinity in a weight poisons every output silently: `eval` printed
// `"loss": null` with exit 0 and greedy generation emitted token 0 ("\u0000") forever. The
// outputs are checked (cheap next to the forward pass), and only when one is not finite are
// the weights scanned to name the tensor that holds the bad value.
import { LorakitError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import type { Module } from "../nn/module.js";

/** A model's output is not finite because (as far as the scan can tell) of a named tensor. */
export class NonFiniteError extends LorakitError {}

/** Index of the first NaN / ±Inf in a float tensor, or -1 (f16/bf16 read by their exponent bits). */
export function firstNonFinite(t: Tensor): number {
  const d = t.data;
  if (t.dtype === "f32" || t.dtype === "f64") {
    const a = d as Float32Array | Float64Array;
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
    return -1;
  }
  const mask = t.dtype === "bf16" ? 0x7f80 : t.dtype === "f16" ? 0x7c00 : 0;
  if (mask === 0) return -1;
  const a = d as Uint16Array;
  for (let i = 0; i < a.length; i++) if ((a[i] & mask) === mask) return i;
  return -1;
}

/** The first parameter of `model` holding a NaN or ±Inf, with the element's index, or null. */
export function findNonFiniteParameter(model: Module): { name: string; index: number } | null {
  for (const [name, p] of model.namedParameters()) {
    if (p.isMeta) continue;
    const i = firstNonFinite(p);
    if (i >= 0) return { name, index: i };
  }
  return null;
}

/**
 * Throws NonFiniteError when `value` (a loss) or any of `values` (logits) is not finite,
 * naming the first weight that holds a NaN or ±Inf.
 */
export function assertFiniteOutput(model: Module, what: string, values: ArrayLike<number> | number): void {
  if (typeof values === "number") {
    if (Number.isFinite(values)) return;
  } else {
    let ok = true;
    for (let i = 0; i < values.length && ok; i++) ok = Number.isFinite(values[i]);
    if (ok) return;
  }
  const bad = findNonFiniteParameter(model);
  throw new NonFiniteError(
    bad
      ? `${what} is not finite: the weight ${bad.name} holds a NaN or infinity (element ${bad.index}); the model or adapter file is corrupt`
      : `${what} is not finite though every weight is: the activations overflowed (try --dtype f32, or a shorter input)`,
  );
}
