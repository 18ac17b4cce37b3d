// A KV cache draws its arrays from the tensor buffer pool and gives them back on dispose():
// the next cache of the same size reuses them (zeroed, whatever the last one left there),
// generate gives its cache back whether it ends or throws, and a disposed cache refuses use.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { noGrad, setBackend } from "../../src/core/engine.js";
import { ShapeError } from "../../src/core/errors.js";
import { poolStats } from "../../src/core/memory.js";
import { tensor } from "../../src/core/tensor.js";
import { refBackend } from "../../src/kernels/ref/index.js";
import { generate } from "../../src/models/generate.js";
import { KVCache } from "../../src/models/llama/kv-cache.js";
import { tinyModel } from "../util/tiny-model.js";

// 256 positions × 2 KV heads × 8 channels = 4096 values per array: large enough to be pooled.
const CAPACITY = 256;
const model = () => tinyModel(4, { max_position_embeddings: 512 });

/** Hits and misses of the pool while fn runs. */
function poolUse(fn: () => void): { hits: number; misses: number } {
  const s0 = poolStats();
  fn();
  const s1 = poolStats();
  return { hits: s1.hits - s0.hits, misses: s1.misses - s0.misses };
}

describe("KV cache and the buffer pool", () => {
  test("a disposed cache's arrays serve the next cache, zeroed", () => {
    const c = model().config;
    const dims = [c.numHiddenLayers, 1, CAPACITY, c.numKeyValueHeads, c.headDim] as const;
    const first = new KVCache(...dims);
    for (const a of [...first.k, ...first.v]) (a as Float32Array).fill(Number.NaN);
    const bytes = first.bytes;
    first.dispose();
    assert.equal(first.isDisposed, true);
    assert.equal(first.bytes, 0);
    first.dispose(); // a second dispose is a no-op
    let second: KVCache | undefined;
    const use = poolUse(() => {
      second = new KVCache(...dims);
    });
    assert.deepEqual(use, { hits: 2 * c.numHiddenLayers, misses: 0 });
    assert.equal(second!.bytes, bytes);
    for (const a of [...second!.k, ...second!.v]) assert.ok(a.every((x) => x === 0));
    second!.dispose();
  });

  test("a disposed cache refuses to be attended over", () => {
    setBackend(refBackend);
    const m = model();
    const c = m.config;
    const cache = new KVCache(c.numHiddenLayers, 1, CAPACITY, c.numKeyValueHeads, c.headDim);
    cache.dispose();
    assert.throws(
      () => noGrad(() => m.forward(tensor([1, 2, 3], [1, 3], "i32"), { cache })),
      (e: unknown) => e instanceof ShapeError && /disposed/.test(e.message),
    );
  });

  test("generate gives its cache back, when it finishes and when it throws", () => {
    setBackend(refBackend);
    const m = model();
    const c = m.config;
    const prompt = [3, 7, 11, 2, 9, 40];
    const opts = { maxNewTokens: CAPACITY - prompt.length };
    const want = generate(m, prompt, opts);
    // The same dims again: every array comes from the pool.
    const use = poolUse(() =>
      new KVCache(c.numHiddenLayers, 1, CAPACITY, c.numKeyValueHeads, c.headDim).dispose(),
    );
    assert.deepEqual(use, { hits: 2 * c.numHiddenLayers, misses: 0 });
    // A reused cache gives the same tokens.
    assert.deepEqual(generate(m, prompt, opts), want);
    // A throwing callback still returns the cache.
    assert.throws(
      () =>
        generate(m, prompt, {
          ...opts,
          onToken: () => {
            throw new Error("client went away");
          },
        }),
      /client went away/,
    );
    const after = poolUse(() =>
      new KVCache(c.numHiddenLayers, 1, CAPACITY, c.numKeyValueHeads, c.headDim).dispose(),
    );
    assert.deepEqual(after, { hits: 2 * c.numHiddenLayers, misses: 0 });
  });
});
