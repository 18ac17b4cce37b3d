// Finite-difference gradient checks in f64: the analytic gradient of L = Σ f(x)⊙R
// (R a fixed random projection) must match central differences for every input.
import assert from "node:assert/strict";
import type { Tensor } from "../../src/core/index.js";
import { backward, mul, noGrad, Rng, randNormal, sum, tidy } from "../../src/core/index.js";

export function randn(rng: Rng, shape: number[], scale = 1): Tensor<"f64"> {
  return randNormal(rng, shape, 0, scale, "f64").setRequiresGrad() as Tensor<"f64">;
}

/** The op names recorded in the graph that produced t. */
export function graphOps(t: Tensor): Set<string> {
  const ops = new Set<string>();
  const seen = new Set<Tensor>();
  const stack = [t];
  while (stack.length) {
    const u = stack.pop()!;
    if (seen.has(u) || !u.node) continue;
    seen.add(u);
    ops.add(u.node.op);
    stack.push(...u.node.inputs);
  }
  return ops;
}

/**
 * Checks dL/dx for each input against (L(x+h) − L(x−h)) / 2h.
 * `inputs` must be f64 leaves; those with requiresGrad are checked. The first word of `name`
 * is the op under test: it must be recorded in f's graph (test/core/op-table.test.ts counts
 * on it, so a check cannot claim an op it never runs).
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
    const y = f(...inputs);
    const op = name.split(" ")[0];
    const ops = graphOps(y);
    assert.ok(ops.has(op), `${name}: the graph records no "${op}" op (it has ${[...ops].join(", ")})`);
    backward(sum(mul(y, R)));
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
