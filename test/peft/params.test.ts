// LoRA parameter counts from a config.json alone (the seed's LLaMA-7B numbers).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { llamaConfigToJson } from "../../src/models/llama/config.js";
import { getPeftModel } from "../../src/peft/model.js";
import { countBaseParams, countLoraParams } from "../../src/peft/params.js";
import { tinyConfig, tinyModel } from "../util/tiny-model.js";

describe("countLoraParams from config.json", () => {
  const LLAMA_7B = {
    model_type: "llama",
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    vocab_size: 32000,
    tie_word_embeddings: false,
  };

  test("the seed's LLaMA-7B numbers on q, k, v", () => {
    const qkv = ["q_proj", "k_proj", "v_proj"];
    const r8 = countLoraParams(LLAMA_7B, { r: 8, targetModules: qkv });
    assert.equal(r8.perLayer[0].trainable, 196_608); // 3 × 2 × 4096 × 8
    assert.equal(r8.perLayer[0].fullFinetuneTargets, 50_331_648); // 3 × 4096²
    assert.equal(r8.trainable, 32 * 196_608);
    assert.equal(r8.fullFinetuneTargets, 32 * 50_331_648);
    assert.equal(r8.perModule.length, 96);
    assert.deepEqual(r8.perModule[0], {
      name: "model.layers.0.self_attn.q_proj",
      in: 4096,
      out: 4096,
      r: 8,
      params: 65_536,
    });
    const r64 = countLoraParams(LLAMA_7B, { r: 64, targetModules: qkv });
    assert.equal(r64.perLayer[0].trainable, 1_572_864);
    assert.equal(r8.base, 6_738_415_616, "LLaMA-7B has 6.74 B parameters");
  });

  test("all-linear, DoRA, layers_to_transform, GQA and Qwen2 biases", () => {
    const all = countLoraParams(LLAMA_7B, { r: 16, targetModules: "all-linear" });
    // PEFT's well-known line for LLaMA-7B, r=16, all linear layers: 39,976,960 trainable.
    assert.equal(all.trainable, 39_976_960);
    const dora = countLoraParams(LLAMA_7B, { r: 16, targetModules: "all-linear", useDora: true });
    assert.equal(dora.trainable - all.trainable, 32 * (4 * 4096 + 2 * 11008 + 4096));
    const some = countLoraParams(LLAMA_7B, { r: 8, targetModules: ["q_proj"], layersToTransform: [0, 5] });
    assert.deepEqual(
      some.perModule.map((m) => m.name),
      ["model.layers.0.self_attn.q_proj", "model.layers.5.self_attn.q_proj"],
    );
    // Qwen2-0.5B: GQA (2 kv heads of 64), q/k/v biases, tied embeddings: 494,032,768 parameters.
    const qwen = countLoraParams(
      {
        model_type: "qwen2",
        hidden_size: 896,
        intermediate_size: 4864,
        num_hidden_layers: 24,
        num_attention_heads: 14,
        num_key_value_heads: 2,
        vocab_size: 151936,
        tie_word_embeddings: true,
      },
      { r: 8, targetModules: ["k_proj"] },
    );
    assert.equal(qwen.base, 494_032_768);
    assert.deepEqual([qwen.perModule[0].in, qwen.perModule[0].out], [896, 128]);
    assert.throws(() => countLoraParams(LLAMA_7B, { r: 8, targetModules: ["nope"] }), /not found/);
  });

  test("agrees with getPeftModel and the built model on the tiny config", () => {
    const model = tinyModel(0);
    const json = llamaConfigToJson(tinyConfig());
    let all = 0;
    for (const p of model.parameters()) all += p.size;
    assert.equal(countBaseParams(tinyConfig()), all);
    const cases: Parameters<typeof countLoraParams>[1][] = [
      { r: 4, targetModules: "all-linear" },
      { r: 4, targetModules: ["q_proj", "v_proj", "down_proj"], rankPattern: { down_proj: 2 } },
      { r: 2, targetModules: ".*\\.mlp\\.(gate|up)_proj" },
      { r: 4, targetModules: ["o_proj", "lm_head"], layersToTransform: null },
    ];
    for (const c of cases) {
      const pm = getPeftModel(tinyModel(0), {
        r: c.r,
        targetModules: c.targetModules as string[] | string,
        rankPattern: c.rankPattern ?? {},
      });
      const n = countLoraParams(json, c);
      assert.equal(n.trainable, pm.countParameters().trainable, JSON.stringify(c));
      assert.equal(n.base + n.trainable, pm.countParameters().all, JSON.stringify(c));
    }
  });
});
