// lorakit's core ops against PyTorch: outputs and input gradients (for a fixed random
// upstream gradient) recorded by scripts/fixtures/make_core_fixtures.py in
// test/fixtures/core/ops.json, all in float32.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { FloatDType, Tensor } from "../../src/core/index.js";
import * as L from "../../src/core/index.js";
import { backward, fromArray } from "../../src/core/index.js";
import { repoRoot } from "../util/repo.js";

interface Arr {
  shape: number[];
  data: number[];
}
interface Case {
  name: string;
  op: string;
  params: Record<string, unknown>;
  inputs: Record<string, Arr>;
  ints?: Record<string, Arr>;
  upstream: Arr;
  output: Arr;
  grads: Record<string, Arr>;
  f64_dev: number;
}

const fixture = JSON.parse(
  readFileSync(join(repoRoot(), "test", "fixtures", "core", "ops.json"), "utf8"),
) as {
  cases: Case[];
};

// Both sides are float32 computations of the same formula, so they differ only by
// rounding (accumulation order, exp/erf/tanh implementations): about 1e-7 of the scale of
// the terms summed. Relative 1e-5 is two orders above that. A value that ends up near zero
// through cancellation keeps the absolute rounding error of its (larger) terms, so a pure
// relative test would fail on it for no fault; hence an absolute floor, 1e-6 times the
// tensor's scale (max |expected|, at least 1), i.e. still ~10 ulps of the largest entry.
const RTOL = 1e-5;
const ATOL = 1e-6;

/** Asserts got ≈ want; returns the largest error as a fraction of the allowed one (< 1 passes). */
function close(what: string, got: Tensor, want: Arr): number {
  assert.deepEqual([...got.shape], want.shape, `${what}: shape`);
  const g = got.data as ArrayLike<number>;
  const w = want.data;
  let scale = 1;
  for (const v of w) scale = Math.max(scale, Math.abs(v));
  const atol = ATOL * scale;
  const bad: string[] = [];
  let worst = 0;
  for (let i = 0; i < w.length; i++) {
    const e = Math.fround(w[i]);
    const err = Math.abs(g[i] - e);
    worst = Math.max(worst, err / (RTOL * Math.abs(e) + atol));
    if (!(err <= RTOL * Math.abs(e) + atol))
      bad.push(`[${i}] got ${g[i]} want ${e} (|Δ| ${err.toExponential(2)})`);
  }
  assert.ok(
    bad.length === 0,
    `${what}: ${bad.length}/${w.length} values outside rtol ${RTOL} + atol ${atol.toExponential(1)}: ${bad.slice(0, 8).join("; ")}`,
  );
  return worst;
}

function f32(a: Arr, grad = false): Tensor<FloatDType> {
  const t = fromArray(Float32Array.from(a.data), a.shape, "f32");
  return grad ? t.setRequiresGrad() : t;
}

function run(c: Case, x: Record<string, Tensor>): Tensor {
  const p = c.params;
  switch (c.op) {
    case "rmsNorm":
      return L.rmsNorm(x.x, x.w, p.eps as number);
    case "rope": {
      const T = x.x.shape[1];
      const { cos, sin } = L.ropeTables(p.invFreq as number[], T, p.offset as number, "f32");
      return L.rope(x.x, cos, sin);
    }
    case "attention":
      return L.attention(x.q, x.k, x.v, {
        causal: p.causal as boolean,
        offset: p.offset as number,
        ...(p.scale !== undefined ? { scale: p.scale as number } : {}),
      });
    case "crossEntropy": {
      const tg = c.ints?.targets;
      assert.ok(tg, `${c.name}: targets missing`);
      const targets = fromArray(Int32Array.from(tg.data), tg.shape, "i32");
      return L.crossEntropy(x.logits, targets, {
        ignoreIndex: p.ignoreIndex as number,
        reduction: p.reduction as "mean" | "sum" | "none",
      });
    }
    case "gelu":
      return L.gelu(x.x, p.approximate as "none" | "tanh");
    case "silu":
      return L.silu(x.x);
    case "softmax":
      return L.softmax(x.x, p.axis as number);
    case "logSoftmax":
      return L.logSoftmax(x.x, p.axis as number);
    case "siluMul":
      return L.siluMul(x.gate, x.up);
    case "linear":
      return L.linear(x.x, x.w, x.bias);
    case "matmul":
      return L.matmul(x.a, x.b);
    default:
      throw new Error(`torch-fixtures: no runner for op "${c.op}" (case ${c.name})`);
  }
}

describe("core ops match PyTorch (float32 outputs and gradients)", () => {
  test("the fixture has cases", () => assert.ok(fixture.cases.length >= 15));
  for (const c of fixture.cases)
    test(c.name, (t) => {
      const x: Record<string, Tensor<FloatDType>> = {};
      for (const [k, a] of Object.entries(c.inputs)) x[k] = f32(a, true);
      const out = run(c, x);
      assert.equal(out.dtype, "f32", `${c.name}: output dtype`);
      let worst = close(`${c.name}: output`, out, c.output);
      backward(out, f32(c.upstream));
      for (const [k, want] of Object.entries(c.grads)) {
        const g = x[k].grad;
        assert.ok(g, `${c.name}: no gradient reached input ${k}`);
        worst = Math.max(worst, close(`${c.name}: d/d${k}`, g, want));
      }
      t.diagnostic(`largest error / allowed: ${worst.toFixed(3)}`);
    });
});
