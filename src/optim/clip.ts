// torch.nn.utils.clip_grad_norm_: the norm of all gradients together (as if concatenated
// into one vector), then every gradient scaled by min(1, max_norm / (total_norm + 1e-6)).
// Sums run in f64 (torch sums in the gradients' dtype), so the norm is at least as
// accurate as PyTorch's.
import type { Tensor } from "../core/index.js";
import { OptimizerError } from "./optimizer.js";

/**
 * Clips the gradients of `params` in place so their total `normType`-norm is at most
 * `maxNorm`, and returns the total norm before clipping. Parameters without a gradient
 * are ignored (no gradients at all: returns 0). `normType` is p > 0 or Infinity (max |g|).
 *
 * A non-finite total norm (a NaN or ±Inf in some gradient) is returned as is and the
 * gradients are left untouched, so the trainer can report it and skip the step (PyTorch
 * would multiply them by 0 or NaN, which loses the evidence).
 *
 * @example
 * const norm = clipGradNorm(model.trainableParameters(), 1.0);
 * if (!Number.isFinite(norm)) skipStep();
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number, normType = 2): number {
  if (typeof maxNorm !== "number" || !(maxNorm >= 0))
    throw new OptimizerError(`clipGradNorm: maxNorm must be a number ≥ 0, got ${String(maxNorm)}`);
  if (typeof normType !== "number" || !(normType > 0))
    throw new OptimizerError(
      `clipGradNorm: normType must be a number > 0 or Infinity, got ${String(normType)}; use 2 for the Euclidean norm`,
    );
  const grads: (Float32Array | Float64Array)[] = [];
  for (const p of params) {
    if (p.grad === null) continue;
    if (p.grad.dtype !== "f32" && p.grad.dtype !== "f64")
      throw new OptimizerError(
        `clipGradNorm: the gradient of ${p.name ?? `#${p.id}`} is ${p.grad.dtype}; f32 or f64 expected`,
      );
    grads.push(p.grad.data as Float32Array | Float64Array);
  }
  if (grads.length === 0) return 0;

  let total: number;
  if (normType === Number.POSITIVE_INFINITY) {
    total = 0;
    for (const g of grads)
      for (let i = 0; i < g.length; i++) {
        const a = Math.abs(g[i]);
        if (a > total) total = a;
        else if (Number.isNaN(a)) return Number.NaN;
      }
  } else if (normType === 2) {
    let s = 0;
    for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
    total = Math.sqrt(s);
  } else if (normType === 1) {
    let s = 0;
    for (const g of grads) for (let i = 0; i < g.length; i++) s += Math.abs(g[i]);
    total = s;
  } else {
    // Scaled by the largest |g| so |g|^p neither overflows nor underflows.
    let m = 0;
    for (const g of grads) for (let i = 0; i < g.length; i++) m = Math.max(m, Math.abs(g[i]));
    if (m === 0 || !Number.isFinite(m)) total = m;
    else {
      let s = 0;
      for (const g of grads) for (let i = 0; i < g.length; i++) s += (Math.abs(g[i]) / m) ** normType;
      total = m * s ** (1 / normType);
    }
  }
  if (!Number.isFinite(total)) return total;

  const coef = maxNorm / (total + 1e-6);
  if (coef < 1) for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= coef;
  return total;
}
