// Optimizer and BLAS-1 kernels.
import type { AdamWParams, FloatArray } from "../../core/backend.js";

// y (n) += alpha·x (n).
export function axpy(alpha: number, x: FloatArray, y: FloatArray): void {
  const n = x.length;
  for (let i = 0; i < n; i++) y[i] += alpha * x[i];
}

export function fill(out: FloatArray, value: number): void {
  out.fill(value);
}

// torch.optim.AdamW (single-tensor path, amsgrad off), in place on param, m, v:
//   param *= 1 − lr·wd;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//   param −= (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + eps)
export function adamw(p: AdamWParams): void {
  const { param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step } = p;
  if (!(step >= 1)) throw new RangeError(`adamw: step must be a 1-based count, got ${step}`);
  const decay = 1 - lr * weightDecay;
  const stepSize = lr / (1 - beta1 ** step);
  const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
  const n = param.length;
  for (let i = 0; i < n; i++) {
    const g = grad[i];
    const mi = beta1 * m[i] + (1 - beta1) * g;
    const vi = beta2 * v[i] + (1 - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
  }
}
