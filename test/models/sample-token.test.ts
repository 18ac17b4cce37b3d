// sampleToken without sorting the vocabulary: the same draws as the sort-everything sampler it
// replaced wherever that one's arithmetic is kept (top-k, with or without top-p), and the
// same distribution where the walk order changed (a whole vocabulary, a wide top-p set).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Rng } from "../../src/core/rng.js";
import type { GenerateOptions } from "../../src/models/generate.js";
import { sampleToken, wideNucleus } from "../../src/models/sampling.js";

/** The sampler before: every id sorted (larger logit first, lower id first), then the walk. */
function sortAllSampler(logits: ArrayLike<number>, opts: GenerateOptions, rng: Rng): number {
  const V = logits.length;
  const temperature = opts.temperature ?? 0;
  let idx = Array.from({ length: V }, (_, i) => i);
  idx.sort((a, b) => logits[b] - logits[a] || a - b);
  const topK = opts.topK ?? 0;
  if (topK > 0) idx = idx.slice(0, topK);
  const mx = logits[idx[0]];
  let probs = idx.map((i) => Math.exp((logits[i] - mx) / temperature));
  let z = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / z);
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    let cum = 0;
    let keep = 0;
    while (keep < probs.length && cum < topP) cum += probs[keep++];
    idx = idx.slice(0, Math.max(1, keep));
    probs = probs.slice(0, idx.length);
    z = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / z);
  }
  let u = rng.uniform();
  for (let j = 0; j < probs.length; j++) {
    u -= probs[j];
    if (u < 0) return idx[j];
  }
  return idx[idx.length - 1];
}

function normalLogits(V: number, sd: number, seed: number): Float32Array {
  const g = new Rng(seed);
  return Float32Array.from({ length: V }, () => g.normal() * sd);
}

/** The probability of each id under temperature, top-k and top-p, from the full sort. */
function exactDistribution(logits: Float32Array, opts: GenerateOptions): Map<number, number> {
  const T = opts.temperature ?? 1;
  let idx = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  if ((opts.topK ?? 0) > 0) idx = idx.slice(0, opts.topK);
  const w = idx.map((i) => Math.exp((logits[i] - logits[idx[0]]) / T));
  const z = w.reduce((a, b) => a + b, 0);
  let keep = idx.length;
  if ((opts.topP ?? 1) < 1) {
    let cum = 0;
    keep = 0;
    while (keep < idx.length && cum < (opts.topP ?? 1)) cum += w[keep++] / z;
  }
  const m = w.slice(0, keep).reduce((a, b) => a + b, 0);
  return new Map(idx.slice(0, keep).map((id, j) => [id, w[j] / m]));
}

describe("sampleToken", () => {
  test("top-k (with and without top-p) draws the same tokens as sorting the whole vocabulary", () => {
    for (const [V, sd] of [
      [50, 1],
      [3000, 2],
      [40000, 3],
    ] as const) {
      const logits = normalLogits(V, sd, V);
      for (const opts of [
        { maxNewTokens: 1, temperature: 0.7, topK: 1 },
        { maxNewTokens: 1, temperature: 0.7, topK: 40 },
        { maxNewTokens: 1, temperature: 1.3, topK: 25, topP: 0.8 },
        { maxNewTokens: 1, temperature: 0.9, topK: Math.min(V - 1, 600), topP: 0.95 },
      ]) {
        const a = new Rng(11);
        const b = new Rng(11);
        for (let i = 0; i < (V > 10000 ? 12 : 150); i++)
          assert.equal(
            sampleToken(logits, opts, a),
            sortAllSampler(logits, opts, b),
            `V ${V} ${JSON.stringify(opts)}`,
          );
      }
    }
  });

  test("ties go to the lower id, as in the full sort", () => {
    const logits = Float32Array.of(1, 3, 3, 0, 3, 2);
    const opts = { maxNewTokens: 1, temperature: 1, topK: 2 };
    const seen = new Set<number>();
    const rng = new Rng(5);
    for (let i = 0; i < 400; i++) seen.add(sampleToken(logits, opts, rng));
    assert.deepEqual([...seen].sort(), [1, 2]);
  });

  test("a whole vocabulary and top-p sets, narrow and wide: the exact distribution", () => {
    // V = 30: every path; V = 20000 with flat logits: a top-p set of thousands (bucketed).
    for (const [V, sd, opts] of [
      [30, 1.5, { maxNewTokens: 1, temperature: 0.8 }],
      [30, 1.5, { maxNewTokens: 1, temperature: 1.1, topP: 0.7 }],
      [20000, 0.05, { maxNewTokens: 1, temperature: 1, topP: 0.5 }],
    ] as const) {
      const logits = normalLogits(V, sd, 3);
      const want = exactDistribution(logits, opts);
      const rng = new Rng(17);
      const n = V <= 30 ? 60000 : 1200;
      const got = new Map<number, number>();
      for (let i = 0; i < n; i++) {
        const t = sampleToken(logits, opts, rng);
        got.set(t, (got.get(t) ?? 0) + 1);
      }
      for (const t of got.keys()) assert.ok(want.has(t), `token ${t} is outside the allowed set (V ${V})`);
      if (V <= 30) {
        for (const [t, p] of want) {
          const f = (got.get(t) ?? 0) / n;
          assert.ok(Math.abs(f - p) < 4 * Math.sqrt((p * (1 - p)) / n) + 1e-4, `token ${t}: ${f} vs ${p}`);
        }
      } else {
        // Thousands of tokens: the mass of the best half of the set and its share of draws.
        const ids = [...want.keys()];
        const half = ids.slice(0, ids.length >> 1);
        const p = half.reduce((a, t) => a + (want.get(t) ?? 0), 0);
        const f = half.reduce((a, t) => a + (got.get(t) ?? 0), 0) / n;
        assert.ok(Math.abs(f - p) < 4 * Math.sqrt((p * (1 - p)) / n), `best half ${f} vs ${p}`);
      }
    }
  });

  test("the bucketed top-p set is the sorted one", () => {
    const cases: [number, number, number, number, number][] = [];
    for (const [V, sd, T] of [
      [20000, 0.05, 1],
      [9000, 1, 0.7],
      [5000, 3, 1],
    ])
      for (const topP of [0.3, 0.5, 0.8, 0.95, 0.999])
        for (const seed of [1, 2, 3]) cases.push([V, sd, T, topP, seed]);
    for (const [V, sd, T, topP, seed] of cases) {
      const logits = normalLogits(V, sd, V + seed);
      let mx = -Infinity;
      for (const x of logits) mx = Math.max(mx, x);
      const w = Float64Array.from(logits, (x) => Math.exp((x - mx) / T));
      const z = w.reduce((a, b) => a + b, 0);
      const { inSet, mass } = wideNucleus(logits, w, z, mx, topP);
      const want = exactDistribution(logits, { maxNewTokens: 1, temperature: T, topP });
      const got = [...inSet.keys()].filter((i) => inSet[i] === 1);
      assert.deepEqual(
        got,
        [...want.keys()].sort((a, b) => a - b),
        `V ${V} topP ${topP}`,
      );
      assert.ok(mass >= topP - 1e-12 && mass <= 1 + 1e-12, `mass ${mass}`);
    }
  });

  test("−∞ logits (banned tokens) are never drawn, on every path", () => {
    const logits = normalLogits(6000, 0.05, 21);
    for (let id = 0; id < logits.length; id += 3) logits[id] = Number.NEGATIVE_INFINITY;
    for (const opts of [
      { maxNewTokens: 1, temperature: 1 },
      { maxNewTokens: 1, temperature: 1, topK: 100 },
      { maxNewTokens: 1, temperature: 1, topP: 0.9 }, // a set of thousands: the bucketed path
      { maxNewTokens: 1, temperature: 1, topP: 0.01 },
    ]) {
      const rng = new Rng(2);
      for (let i = 0; i < 300; i++)
        assert.notEqual(sampleToken(logits, opts, rng) % 3, 0, JSON.stringify(opts));
    }
  });

  test("one uniform draw per token, so a seeded stream does not depend on the vocabulary path", () => {
    const logits = normalLogits(5000, 1, 9);
    for (const opts of [
      { maxNewTokens: 1, temperature: 0.8 },
      { maxNewTokens: 1, temperature: 0.8, topK: 50 },
      { maxNewTokens: 1, temperature: 0.8, topP: 0.9 },
    ]) {
      const a = new Rng(4);
      const b = new Rng(4);
      sampleToken(logits, opts, a);
      b.uniform();
      assert.equal(a.uniform(), b.uniform(), JSON.stringify(opts));
    }
  });
});
