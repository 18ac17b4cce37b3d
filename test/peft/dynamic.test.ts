// Depth-driven rank patterns: the seed's "Dynamic LoRA" as PEFT rank_pattern / alpha_pattern.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { llamaConfigToJson } from "../../src/models/llama/config.js";
import { dynamicRankPattern, seedRule } from "../../src/peft/dynamic.js";
import { getPeftModel } from "../../src/peft/model.js";
import { countLoraParams } from "../../src/peft/params.js";
import { tinyConfig, tinyModel } from "../util/tiny-model.js";

describe("dynamic rank patterns (the seed's Dynamic LoRA)", () => {
  test("seedRule: rank = min(64, 4 + 4·depth), alpha = 2·rank", () => {
    assert.deepEqual(seedRule(0, 32), { r: 4, alpha: 8 });
    assert.deepEqual(seedRule(3, 32), { r: 16, alpha: 32 });
    assert.deepEqual(seedRule(15, 32), { r: 64, alpha: 128 });
    assert.deepEqual(seedRule(31, 32), { r: 64, alpha: 128 });
  });

  test("getPeftModel gives every layer the rule's rank and alpha; layer 1 never matches layer 11", () => {
    const L = 12;
    const targetModules = ["q_proj", "v_proj", "down_proj"];
    const { rankPattern, alphaPattern } = dynamicRankPattern(L, { targetModules });
    assert.equal(Object.keys(rankPattern).length, L);
    const pm = getPeftModel(tinyModel(0, { num_hidden_layers: L }), {
      r: 4,
      loraAlpha: 8,
      targetModules,
      rankPattern,
      alphaPattern,
    });
    let seen = 0;
    for (const [path, l] of pm.loraLayers()) {
      const depth = Number(/^model\.layers\.(\d+)\./.exec(path)![1]);
      assert.equal(l.r.get("default"), Math.min(64, 4 + 4 * depth), path);
      assert.equal(l.loraAlpha.get("default"), 2 * Math.min(64, 4 + 4 * depth), path);
      assert.equal(l.scaling.get("default"), 2);
      seen++;
    }
    assert.equal(seen, L * 3);
    const json = llamaConfigToJson(tinyConfig({ num_hidden_layers: L }));
    const counted = countLoraParams(json, { r: 4, targetModules, rankPattern });
    assert.equal(counted.trainable, pm.countParameters().trainable, "the counter agrees with the model");
  });

  test("a custom rule, all modules of a layer, a subset of layers, and errors", () => {
    const { rankPattern, alphaPattern } = dynamicRankPattern(4, {
      rule: (d, n) => ({ r: d < n / 2 ? 2 : 6, alpha: 4 }),
      layers: [1, 3],
    });
    const pm = getPeftModel(tinyModel(0, { num_hidden_layers: 4 }), {
      r: 3,
      loraAlpha: 3,
      targetModules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
      layersToTransform: [1, 3],
      rankPattern,
      alphaPattern,
    });
    let seen = 0;
    for (const [path, l] of pm.loraLayers()) {
      const depth = Number(/^model\.layers\.(\d+)\./.exec(path)![1]);
      assert.equal(l.r.get("default"), depth === 1 ? 2 : 6, path);
      assert.equal(l.loraAlpha.get("default"), 4);
      seen++;
    }
    assert.equal(seen, 2 * 7, "every module of layers 1 and 3");
    assert.throws(() => dynamicRankPattern(4, { rule: () => ({ r: 0, alpha: 1 }) }), /rank 0/);
    assert.throws(() => dynamicRankPattern(4, { layers: [4] }), /outside/);
  });
});
