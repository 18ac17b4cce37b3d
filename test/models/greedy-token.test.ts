// Greedy decoding's pick and finiteness check in one pass (generate.ts greedyToken/nextToken):
// the same token as sampleToken at temperature 0 (the first of equal maxima), −1 / a
// NonFiniteError for NaN or ±Inf anywhere, the first position included; sampling unchanged.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Rng } from "../../src/core/rng.js";
import { greedyToken, nextToken, sampleToken } from "../../src/models/generate.js";
import { NonFiniteError } from "../../src/models/non-finite.js";
import { tinyModel } from "../util/tiny-model.js";

describe("greedyToken / nextToken", () => {
  test("the index sampleToken picks at temperature 0, ties to the first", () => {
    const rng = new Rng(3);
    for (let r = 0; r < 50; r++) {
      const a = Float32Array.from({ length: 1 + (r % 40) }, () => Math.round(rng.uniform() * 8) - 4);
      assert.equal(greedyToken(a), sampleToken(a, { maxNewTokens: 1 }, rng));
    }
    assert.equal(greedyToken(Float32Array.of(-3, 5, 5, 1)), 1);
    assert.equal(greedyToken(Float32Array.of(-1e30)), 0);
  });

  test("−1 when a logit is NaN or ±Inf, at any position", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])
      for (const at of [0, 2, 4]) {
        const a = Float32Array.of(1, 2, 3, 4, 5);
        a[at] = bad;
        assert.equal(greedyToken(a), -1, `${bad} at ${at}`);
      }
  });

  test("nextToken: greedy pick, sampling as sampleToken, NonFiniteError on a bad logit", () => {
    const m = tinyModel(0);
    const a = Float32Array.of(0.5, 2, -1, 1.5);
    assert.equal(nextToken(m, "x", a, { maxNewTokens: 1 }, new Rng(0)), 1);
    const opts = { maxNewTokens: 1, temperature: 0.8, topK: 3 };
    assert.equal(nextToken(m, "x", a, opts, new Rng(7)), sampleToken(a, opts, new Rng(7)));
    a[3] = Number.NaN;
    assert.throws(() => nextToken(m, "the logits", a, { maxNewTokens: 1 }, new Rng(0)), NonFiniteError);
    assert.throws(() => nextToken(m, "the logits", a, opts, new Rng(0)), NonFiniteError);
  });
});
