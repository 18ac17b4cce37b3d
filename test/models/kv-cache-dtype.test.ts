// A KV cache stored in bf16: half the bytes of the f32 one, rows written rounded to nearest
// even, logits within bf16 precision of the f32 cache's, a batch of rows at different
// positions still equal to each row alone (bit for bit), and unknown dtypes refused.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Backend } from "../../src/core/backend.js";
import { f32ToBf16 } from "../../src/core/dtype.js";
import { noGrad, setBackend } from "../../src/core/engine.js";
import { DTypeError } from "../../src/core/errors.js";
import { tensor } from "../../src/core/tensor.js";
import { availableBackends } from "../../src/kernels/select.js";
import { generate } from "../../src/models/generate.js";
import { KVCache, type KVDType } from "../../src/models/llama/kv-cache.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { tinyModel } from "../util/tiny-model.js";

const PROMPT = [3, 7, 11, 2, 9, 40, 5, 1, 17, 23, 8, 30, 12, 44, 6, 19, 2, 33, 4, 28];

function cacheOf(m: LlamaForCausalLM, dtype: KVDType, capacity = 64): KVCache {
  const c = m.config;
  return new KVCache(c.numHiddenLayers, 1, capacity, c.numKeyValueHeads, c.headDim, { dtype });
}

/** Prefill PROMPT, then decode `steps` fixed tokens: the logits of every forward. */
function logitsWith(m: LlamaForCausalLM, cache: KVCache, steps: number): Float32Array[] {
  return noGrad(() => {
    const out = [
      Float32Array.from(m.forward(tensor(PROMPT, [1, PROMPT.length], "i32"), { cache }).data as Float32Array),
    ];
    for (let s = 0; s < steps; s++)
      out.push(
        Float32Array.from(m.forward(tensor([(s * 7) % 48], [1, 1], "i32"), { cache }).data as Float32Array),
      );
    return out;
  });
}

for (const be of await availableBackends()) {
  describe(`bf16 KV cache (${be.name} backend)`, () => {
    test("half the bytes; rows stored rounded; logits within bf16 precision of the f32 cache", () => {
      setBackend(be as Backend);
      const m = tinyModel(4);
      const c32 = cacheOf(m, "f32");
      const c16 = cacheOf(m, "bf16");
      assert.equal(c32.dtype, "f32");
      assert.equal(c16.dtype, "bf16");
      assert.equal(c16.bytes * 2, c32.bytes);
      assert.ok(c16.k[0] instanceof Uint16Array && c16.v[1] instanceof Uint16Array);
      assert.equal(
        c16.bytes,
        c16.k.concat(c16.v as Uint16Array[]).reduce((s, a) => s + a.byteLength, 0),
      );
      const want = logitsWith(m, c32, 6);
      const got = logitsWith(m, c16, 6);
      // Layer 0's keys and values depend on the tokens only: the bf16 cache holds exactly
      // the f32 cache's values rounded to nearest even.
      const stored = c16.length * m.config.numKeyValueHeads * m.config.headDim;
      assert.equal(c16.length, PROMPT.length + 6);
      for (let i = 0; i < stored; i++) {
        assert.equal(c16.k[0][i], f32ToBf16(c32.k[0][i]), `k[0][${i}]`);
        assert.equal(c16.v[0][i], f32ToBf16(c32.v[0][i]), `v[0][${i}]`);
      }
      let worst = 0;
      let differs = false;
      for (const [s, w] of want.entries())
        for (let i = 0; i < w.length; i++) {
          worst = Math.max(worst, Math.abs(got[s][i] - w[i]) / (1 + Math.abs(w[i])));
          if (got[s][i] !== w[i]) differs = true;
        }
      assert.ok(worst < 2e-3, `bf16 cache logits off by ${worst} (relative; 3.3e-4 measured)`);
      assert.ok(differs, "the bf16 cache changed nothing: is it really rounding?");
    });

    test("a batch of rows with bf16 caches at different positions equals each row alone, bit for bit", () => {
      setBackend(be as Backend);
      const m = tinyModel(5);
      m.eval();
      const prompts = [PROMPT.slice(0, 5), PROMPT.slice(3, 15), [9]];
      const next = [12, 13, 14];
      const prefill = (p: number[]) =>
        noGrad(() => {
          const cache = cacheOf(m, "bf16", 32);
          m.forward(tensor(p, [1, p.length], "i32"), { cache, lastOnly: true });
          return cache;
        });
      const alone = prompts.map((p, n) =>
        noGrad(() => {
          const cache = prefill(p);
          return Float32Array.from(
            m.forward(tensor([next[n]], [1, 1], "i32"), { cache }).data as Float32Array,
          );
        }),
      );
      const caches = prompts.map(prefill);
      const got = noGrad(() => m.decode(next, caches).data as Float32Array);
      const V = m.config.vocabSize;
      for (const [n, w] of alone.entries()) assert.deepEqual(got.subarray(n * V, (n + 1) * V), w, `row ${n}`);
    });

    test("generate with kvDtype bf16 runs; the default is the f32 cache", () => {
      setBackend(be as Backend);
      const m = tinyModel(6);
      const dflt = generate(m, PROMPT, { maxNewTokens: 8 });
      assert.deepEqual(generate(m, PROMPT, { maxNewTokens: 8, kvDtype: "f32" }), dflt);
      const bf16 = generate(m, PROMPT, { maxNewTokens: 8, kvDtype: "bf16" });
      assert.equal(bf16.length, 8);
    });
  });
}

test("an unknown KV cache dtype is refused with the choices", () => {
  assert.throws(
    () => new KVCache(1, 1, 4, 1, 8, { dtype: "f16" as KVDType }),
    (e: unknown) => e instanceof DTypeError && /KVCache dtype must be f32 or bf16, got "f16"/.test(e.message),
  );
  const m = tinyModel(1);
  assert.throws(() => generate(m, [1, 2], { maxNewTokens: 2, kvDtype: "fp8" as KVDType }), DTypeError);
});
