// State integrity across merge, save and load: parameters installed inside a tidy scope
// survive it; a bias="all" adapter with lora_bias saves and loads; tied weights stay tied.
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { noGrad, tensor, tidy } from "../../src/core/index.js";
import type { TensorSource } from "../../src/nn/state.js";
import { loadStateDict } from "../../src/nn/state.js";
import { getPeftModel } from "../../src/peft/model.js";
import { fromPretrained, savePretrained } from "../../src/peft/node/io.js";
import { tinyModel } from "../util/tiny-model.js";

const ids = tensor([[1, 5, 9, 2]], [1, 4], "i32");

describe("state integrity across merge, save and load", () => {
  test("merging into a bf16 base inside tidy keeps the new f32 weight alive", () => {
    const m = tinyModel(4);
    for (const [path, mod] of m.namedModules())
      if (path.endsWith("q_proj")) mod.setParam("weight", mod.param("weight")!.to("bf16"));
    const pm = getPeftModel(m, { r: 2, initLoraWeights: false, loraBias: true });
    const before = noGrad(() => Float32Array.from(pm.forward(ids).data));
    tidy(() => pm.mergeAdapter());
    const after = noGrad(() => Float32Array.from(pm.forward(ids).data));
    for (let i = 0; i < before.length; i++) assert.ok(Math.abs(before[i] - after[i]) < 1e-4);
  });

  test("bias=all with lora_bias saves only PEFT keys and loads back", () => {
    const m = tinyModel(5, { attention_bias: true });
    const pm = getPeftModel(m, { r: 2, initLoraWeights: false, bias: "all", loraBias: true }, "default", {
      seed: 3,
    });
    const want = noGrad(() => Float32Array.from(pm.forward(ids).data));
    const dir = mkdtempSync(join(tmpdir(), "lorakit-bias-all-"));
    savePretrained(pm, dir);
    const loaded = fromPretrained(tinyModel(5, { attention_bias: true }), dir);
    const got = noGrad(() => Float32Array.from(loaded.forward(ids).data));
    assert.deepEqual(got, want);
  });

  test("loadStateDict keeps tied embeddings tied", () => {
    const src = tinyModel(6, { tie_word_embeddings: true });
    const dst = tinyModel(7, { tie_word_embeddings: true });
    const tensors = new Map(src.namedParameters());
    const source: TensorSource = {
      names: () => [...tensors.keys()],
      has: (n) => tensors.has(n),
      shape: (n) => tensors.get(n)!.shape,
      tensor: (n) => tensors.get(n)!.to("f32"),
    };
    loadStateDict(dst, source);
    assert.equal(dst.lm_head.weight, dst.model.embed_tokens.weight);
    assert.deepEqual(
      noGrad(() => Array.from(dst.forward(ids).data)),
      noGrad(() => Array.from(src.forward(ids).data)),
    );
  });
});
