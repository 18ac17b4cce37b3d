// The decode step on preallocated buffers (models/llama/decode-step.ts): one token of one
// sequence with a KV cache gives bit for bit the logits of the general forward (hidden +
// lm_head), on every backend, with weights packed or not, for plain, qkv-bias (qwen2), tied,
// bf16-weight, NF4 and LoRA models and a bf16 cache; and it is the path a decode step takes.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Backend } from "../../src/core/backend.js";
import { noGrad, setBackend, setWeightPacking } from "../../src/core/engine.js";
import { tidy } from "../../src/core/memory.js";
import { Rng, randNormal } from "../../src/core/rng.js";
import { tensor } from "../../src/core/tensor.js";
import { availableBackends } from "../../src/kernels/select.js";
import { generate } from "../../src/models/generate.js";
import { KVCache, type KVDType } from "../../src/models/llama/kv-cache.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { Linear } from "../../src/nn/layers.js";
import { LoraLinear } from "../../src/peft/lora/layer.js";
import { getPeftModel, type PeftModel } from "../../src/peft/model.js";
import { quantizeModel } from "../../src/quant/model.js";
import { tinyModel } from "../util/tiny-model.js";

const PROMPT = [3, 7, 11, 2, 9, 40, 5];

function cacheOf(m: LlamaForCausalLM, dtype: KVDType = "f32"): KVCache {
  const c = m.config;
  return new KVCache(c.numHiddenLayers, 1, 32, c.numKeyValueHeads, c.headDim, { dtype });
}

function hex(a: Float32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("hex");
}

/**
 * Prefill PROMPT into two caches, then `steps` greedy tokens: one cache through forward (the
 * decode step), the other through hidden + lm_head (the general path). Each step's logits, as
 * hex, from both.
 */
function bothPaths(m: LlamaForCausalLM, kv: KVDType, steps = 6): { step: string[]; general: string[] } {
  const a = cacheOf(m, kv);
  const b = cacheOf(m, kv);
  const step: string[] = [];
  const general: string[] = [];
  noGrad(() =>
    tidy(() => {
      const ids = tensor(PROMPT, [1, PROMPT.length], "i32");
      m.forward(ids, { cache: a, lastOnly: true });
      const last = m.forward(ids, { cache: b, lastOnly: true }).data as Float32Array;
      let next = last.indexOf(Math.max(...last));
      for (let s = 0; s < steps; s++) {
        const t = tensor([next], [1, 1], "i32");
        const x = Float32Array.from(m.forward(t, { cache: a }).data as Float32Array);
        const y = Float32Array.from(m.lm_head.forward(m.hidden(t, { cache: b })).data as Float32Array);
        step.push(hex(x));
        general.push(hex(y));
        next = x.indexOf(Math.max(...x));
      }
    }),
  );
  assert.equal(a.length, b.length);
  return { step, general };
}

type Variant = [name: string, make: () => LlamaForCausalLM];

/** Every LoRA B of pm filled from N(0, 0.1) (seeded: a fresh adapter's zero B adds nothing), then eval mode. */
function evalWithRandomB(pm: PeftModel, seed: number): void {
  const rng = new Rng(seed);
  for (const [, l] of pm.baseModel.namedModules())
    if (l instanceof LoraLinear) {
      const B = l.lora_B.get("default")!.weight;
      B.data.set(randNormal(rng, B.shape as number[], 0, 0.1).data);
    }
  pm.eval();
}

const VARIANTS: Variant[] = [
  ["llama", () => tinyModel(1)],
  ["qwen2 (q/k/v biases, tied head)", () => tinyModel(2, { model_type: "qwen2", tie_word_embeddings: true })],
  [
    "bf16 weights",
    () => {
      const m = tinyModel(3);
      for (const [, l] of m.namedModules())
        if (l instanceof Linear) l.setParam("weight", l.weight.to("bf16"));
      return m;
    },
  ],
  [
    "NF4 decoder linears",
    () => {
      const m = tinyModel(4, { hidden_size: 64, intermediate_size: 128 });
      quantizeModel(m);
      return m;
    },
  ],
  [
    "LoRA on every linear (non-zero B)",
    () => {
      const pm = getPeftModel(tinyModel(5), { r: 4, loraAlpha: 8, targetModules: "all-linear" });
      evalWithRandomB(pm, 9);
      return pm.baseModel;
    },
  ],
  [
    "LoRA on q, v with dropout (off in eval), qwen2 base",
    () => {
      const pm = getPeftModel(tinyModel(7, { model_type: "qwen2" }), {
        r: 2,
        loraAlpha: 3,
        loraDropout: 0.1,
        targetModules: ["q_proj", "v_proj"],
      });
      evalWithRandomB(pm, 11);
      return pm.baseModel;
    },
  ],
  [
    "LoRA on the output layer (the head through its own forward)",
    () => {
      const pm = getPeftModel(tinyModel(8), { r: 2, loraAlpha: 4, targetModules: ["lm_head", "o_proj"] });
      evalWithRandomB(pm, 12);
      assert.ok(pm.baseModel.lm_head instanceof LoraLinear);
      return pm.baseModel;
    },
  ],
];

for (const be of await availableBackends()) {
  describe(`decode step (${be.name} backend)`, () => {
    for (const packing of [true, false])
      for (const [name, make] of VARIANTS)
        test(`${name}, weights ${packing ? "packed" : "row-major"}: the general path's logits, bit for bit`, () => {
          setBackend(be as Backend);
          const prev = setWeightPacking(packing);
          try {
            const m = make();
            m.eval();
            for (const kv of ["f32", "bf16"] as const) {
              const { step, general } = bothPaths(m, kv);
              for (const [s, x] of step.entries()) assert.equal(x, general[s], `${kv} cache, step ${s}`);
            }
          } finally {
            setWeightPacking(prev);
          }
        });

    test("LoRA layers' base products share the q/k/v and gate/up product calls", (t) => {
      if (!be.gemmPacked || !be.gemmPackedShared) return t.skip("no packed products on this backend");
      let calls = 0;
      const counting: Backend = {
        ...(be as Backend),
        gemmPacked: (p) => {
          calls++;
          be.gemmPacked!(p);
        },
        gemmPackedShared: (ps) => {
          calls++;
          be.gemmPackedShared!(ps);
        },
      };
      setBackend(counting);
      const prev = setWeightPacking(true);
      try {
        const m = VARIANTS[4][1]();
        m.eval();
        const cache = cacheOf(m);
        noGrad(() =>
          tidy(() => {
            m.forward(tensor(PROMPT, [1, PROMPT.length], "i32"), { cache, lastOnly: true });
            calls = 0;
            m.forward(tensor([4], [1, 1], "i32"), { cache });
          }),
        );
        // Per layer: q/k/v, o, gate/up, down; then the output layer.
        assert.equal(calls, 4 * m.config.numHiddenLayers + 1);
      } finally {
        setWeightPacking(prev);
        setBackend(be as Backend);
      }
    });

    test("a decode step does not go through the general forward; a prompt and a step without a cache do", () => {
      setBackend(be as Backend);
      const m = tinyModel(6);
      m.eval();
      let general = 0;
      const hidden = m.hidden.bind(m);
      m.hidden = (ids, opts) => {
        general++;
        return hidden(ids, opts);
      };
      const ids = generate(m, PROMPT, { maxNewTokens: 5 });
      assert.equal(ids.length, 5);
      assert.equal(general, 1, "only the prompt's forward is the general one");
      // No cache: the general path.
      noGrad(() => tidy(() => void m.forward(tensor([1], [1, 1], "i32"))));
      assert.equal(general, 2);
    });
  });
}
