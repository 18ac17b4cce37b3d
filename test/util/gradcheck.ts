// Finite-difference gradient checks in f64: the analytic gradient of L = Σ f(x)⊙R
// (R a fixed random projection) must match central differences for every input.
import assert from "node:assert/strict";
import type { Tensor } from "../../src/core/index.js";
import { backward, mul, noGrad, Rng, randNormal, sum, tidy } from "../../src/core/index.js";

export function randn(rng: Rng, shape: number[], scale = 1): Tensor<"f64"> {
  return randNormal(rng, shape, 0, scale, "f64").setRequiresGrad() as Tensor<"f64">;
}

/**
 * Checks dL/dx for each input against (L(x+h) − L(x−h)) / 2h.
 * `inputs` must be f64 leaves; those with requiresGrad are checked.
 */
export function gradcheck(
  name: string,
  f: (...xs: Tensor[]) => Tensor,
  inputs: Tensor[],
  opts: { h?: number; rtol?: number; atol?: number; seed?: number } = {},
): void {
  const h = opts.h ?? 1e-6;
  const rtol = opts.rtol ?? 1e-5;
  const atol = opts.atol ?? 1e-7;
  const rng = new Rng(opts.seed ?? 99);
  const probe = noGrad(() => f(...inputs));
  const R = randNormal(rng, probe.shape, 0, 1, "f64");
  const loss = (): number => noGrad(() => tidy(() => sum(mul(f(...inputs), R)).item()));
  for (const x of inputs) x.grad = null;
  tidy(() => {
    backward(sum(mul(f(...inputs), R)));
  });
  for (const [xi, x] of inputs.entries()) {
    if (!x.requiresGrad) continue;
    assert.ok(x.grad, `${name}: input ${xi} got no gradient`);
    const g = x.grad.data;
    const d = x.data as Float64Array;
    for (let i = 0; i < d.length; i++) {
      const orig = d[i];
      d[i] = orig + h;
      const lp = loss();
      d[i] = orig - h;
      const lm = loss();
      d[i] = orig;
      const num = (lp - lm) / (2 * h);
      const err = Math.abs(num - g[i]);
      if (err > atol + rtol * Math.max(Math.abs(num), Math.abs(g[i])))
        assert.fail(`${name}: d/dx${xi}[${i}] analytic ${g[i]} vs numeric ${num} (|diff| ${err})`);
    }
  }
}
