// LlamaForCausalLM.decode (and PeftModel.decode with a mixed-adapter batch): N sequences at
// different positions, each with its own cache and adapter, decoded in one call, give every
// row the logits it gets decoding alone — bit for bit on each backend, since the grouped
// LoRA kernel repeats the fused op's arithmetic. Also: the contract's errors.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Backend } from "../../src/core/backend.js";
import { noGrad, setBackend } from "../../src/core/engine.js";
import { ShapeError } from "../../src/core/errors.js";
import { Rng, randNormal } from "../../src/core/rng.js";
import { tensor } from "../../src/core/tensor.js";
import { availableBackends } from "../../src/kernels/select.js";
import { type GenerationStats, generate, generationRates } from "../../src/models/generate.js";
import { KVCache } from "../../src/models/llama/kv-cache.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { BASE_ROW, LoraLinear } from "../../src/peft/lora/layer.js";
import { getPeftModel, type PeftModel } from "../../src/peft/model.js";
import { tinyModel } from "../util/tiny-model.js";

const PROMPTS = [[3, 7, 11, 2, 9], [5, 40], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [30]];
const ADAPTERS = ["alpha", BASE_ROW, "beta", "alpha"];

function newCache(m: LlamaForCausalLM): KVCache {
  const c = m.config;
  return new KVCache(c.numHiddenLayers, 1, 32, c.numKeyValueHeads, c.headDim);
}

/** Two adapters with non-zero B (rsLoRA on one, a lora bias on neither), s exact in f32. */
function peftModel(): PeftModel<LlamaForCausalLM> {
  const pm = getPeftModel(tinyModel(3), { r: 4, loraAlpha: 8, targetModules: "all-linear" }, "alpha");
  pm.addAdapter("beta", { r: 2, loraAlpha: 4, targetModules: ["q_proj", "v_proj", "down_proj"] });
  const rng = new Rng(9);
  for (const [, m] of pm.baseModel.namedModules())
    if (m instanceof LoraLinear)
      for (const name of ["alpha", "beta"])
        if (m.hasAdapter(name)) {
          const B = m.lora_B.get(name)!.weight;
          B.data.set(randNormal(rng, B.shape as number[], 0, 0.1).data);
        }
  pm.eval();
  return pm;
}

/** Each prompt alone: prefill with its adapter, then one decode step; the step's logits. */
function aloneLogits(pm: PeftModel<LlamaForCausalLM>, next: number[]): Float32Array[] {
  return PROMPTS.map((p, n) =>
    noGrad(() => {
      const cache = newCache(pm.baseModel);
      const names = [ADAPTERS[n]];
      pm.forward(tensor(p, [1, p.length], "i32"), { cache, lastOnly: true, adapterNames: names });
      const out = pm.forward(tensor([next[n]], [1, 1], "i32"), { cache, adapterNames: names });
      return Float32Array.from(out.data as Float32Array);
    }),
  );
}

for (const be of await availableBackends()) {
  describe(`decode mode (${be.name} backend)`, () => {
    test("a mixed batch of rows at different positions equals each row alone, bit for bit", () => {
      setBackend(be as Backend);
      const pm = peftModel();
      const next = [12, 13, 14, 15];
      const want = aloneLogits(pm, next);
      const caches = PROMPTS.map((p, n) =>
        noGrad(() => {
          const cache = newCache(pm.baseModel);
          pm.forward(tensor(p, [1, p.length], "i32"), { cache, lastOnly: true, adapterNames: [ADAPTERS[n]] });
          return cache;
        }),
      );
      const got = noGrad(() => pm.decode(next, caches, { adapterNames: ADAPTERS }));
      assert.deepEqual(got.shape, [4, 1, pm.baseModel.config.vocabSize]);
      const V = pm.baseModel.config.vocabSize;
      const data = got.data as Float32Array;
      for (const [n, w] of want.entries()) assert.deepEqual(data.subarray(n * V, (n + 1) * V), w, `row ${n}`);
      for (const [n, c] of caches.entries()) assert.equal(c.length, PROMPTS[n].length + 1);
    });
  });
}

for (const be of await availableBackends()) {
  describe(`continuous batch (${be.name} backend)`, () => {
    test("prompt chunks and decode tokens of different sequences in one step equal each alone", () => {
      setBackend(be as Backend);
      const pm = peftModel();
      const promptB = [4, 9, 16, 25, 36, 1, 2, 3, 7, 11, 13];
      // Alone: B's whole prompt prefilled with "beta"; A decodes one token with "alpha".
      const aloneB = noGrad(() => {
        const cache = newCache(pm.baseModel);
        const l = pm.forward(tensor(promptB, [1, promptB.length], "i32"), {
          cache,
          lastOnly: true,
          adapterNames: ["beta"],
        });
        return Float32Array.from(l.data as Float32Array);
      });
      const [aloneA] = aloneLogits(pm, [12, 0, 0, 0]);
      // Together: A's decode step beside B's prompt in two chunks (5 then 6 tokens).
      const cA = newCache(pm.baseModel);
      const cB = newCache(pm.baseModel);
      noGrad(() =>
        pm.forward(tensor(PROMPTS[0], [1, PROMPTS[0].length], "i32"), {
          cache: cA,
          lastOnly: true,
          adapterNames: ["alpha"],
        }),
      );
      const first = noGrad(() =>
        pm.step([[12], promptB.slice(0, 5)], [cA, cB], { adapterNames: ["alpha", "beta"] }),
      );
      const V = pm.baseModel.config.vocabSize;
      assert.deepEqual((first.data as Float32Array).subarray(0, V), aloneA, "the decode row");
      const second = noGrad(() =>
        pm.step([[13], promptB.slice(5)], [cA, cB], { adapterNames: ["alpha", "beta"] }),
      );
      assert.deepEqual((second.data as Float32Array).subarray(V, 2 * V), aloneB, "the prompt's last chunk");
      assert.equal(cB.length, promptB.length);
      assert.equal(cA.length, PROMPTS[0].length + 2);
    });
  });
}

describe("decode mode: bad input", () => {
  test("caches and tokens must pair up, once each", () => {
    const m = tinyModel(1);
    const c = newCache(m);
    noGrad(() => {
      assert.throws(() => m.decode([1, 2], [c]), ShapeError);
      assert.throws(() => m.decode([], []), ShapeError);
      assert.throws(() => m.decode([1, 2], [c, c]), /appears twice/);
    });
  });
});

describe("generation stats", () => {
  test("the prefill covers the prompt and the first token; each later token is a decode step", () => {
    const stats = {} as GenerationStats;
    const ids = generate(tinyModel(2), [1, 2, 3, 4], { maxNewTokens: 5, stats });
    assert.equal(ids.length, 5);
    assert.equal(stats.promptTokens, 4);
    assert.equal(stats.decodeSteps, 4);
    assert.ok(stats.prefillSeconds > 0 && stats.decodeSeconds > 0);
    const r = generationRates(stats);
    assert.ok(r.prefill > 0 && r.decode > 0);
    const none = {} as GenerationStats;
    generate(tinyModel(2), [1], { maxNewTokens: 1, stats: none });
    assert.ok(Number.isNaN(generationRates(none).decode), "one new token: no decode step ran");
  });
});
