// Weighted adapter combination (PEFT's add_weighted_adapter: linear, cat, svd), depth-driven
// rank patterns ("Dynamic LoRA"), and parameter counts from a config.json (the seed's
// LLaMA-7B numbers).
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { Tensor } from "../../src/core/index.js";
import { noGrad, tensor } from "../../src/core/index.js";
import type { Matrix } from "../../src/linalg/index.js";
import { matmul, matrix, reconstruct, svd, truncatedSvd } from "../../src/linalg/index.js";
import { llamaConfigToJson } from "../../src/models/llama/config.js";
import type { LoraConfig } from "../../src/peft/config.js";
import { dynamicRankPattern, seedRule } from "../../src/peft/dynamic.js";
import type { LoraLinear } from "../../src/peft/lora/layer.js";
import type { PeftModel } from "../../src/peft/model.js";
import { getPeftModel } from "../../src/peft/model.js";
import { fromPretrained, savePretrained } from "../../src/peft/node/io.js";
import { countBaseParams, countLoraParams } from "../../src/peft/params.js";
import { addWeightedAdapter, quantile } from "../../src/peft/weighted.js";
import { tinyConfig, tinyModel } from "../util/tiny-model.js";

const IDS = [
  [3, 7, 11, 2, 9, 30, 4, 1],
  [5, 5, 40, 12, 8, 19, 22, 6],
];

function logits(m: { forward(x: Tensor, o?: never): Tensor }): Float32Array {
  return noGrad(() => Float32Array.from(m.forward(tensor(IDS, [2, 8], "i32")).data));
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function maxAbs(a: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]));
  return d;
}

function layers(pm: PeftModel): Map<string, LoraLinear> {
  return new Map(pm.loraLayers());
}

/** A layer's adapter factors as f64 matrices: A (r×in), B (out×r). */
function factors(l: LoraLinear, name: string): { A: Matrix; B: Matrix } {
  const A = l.lora_A.get(name)!.weight;
  const B = l.lora_B.get(name)!.weight;
  return {
    A: matrix(A.shape[0], A.shape[1], A.data as Float32Array),
    B: matrix(B.shape[0], B.shape[1], B.data as Float32Array),
  };
}

/** Σ c_i·M_i element-wise. */
function combine(terms: [number, ArrayLike<number>][]): Float64Array {
  const out = new Float64Array(terms[0][1].length);
  for (const [c, m] of terms) for (let i = 0; i < out.length; i++) out[i] += c * m[i];
  return out;
}

/** Two random adapters with different ranks and scales on overlapping modules. */
function twoAdapters(over: { a?: Partial<LoraConfig>; b?: Partial<LoraConfig> } = {}): PeftModel {
  const pm = getPeftModel(
    tinyModel(4),
    { r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj"], initLoraWeights: false, ...over.a },
    "a",
    { seed: 1 },
  );
  pm.addAdapter(
    "b",
    { r: 2, loraAlpha: 6, targetModules: ["q_proj", "v_proj"], initLoraWeights: false, ...over.b },
    { seed: 2 },
  );
  return pm;
}

describe("addWeightedAdapter (PEFT add_weighted_adapter)", () => {
  test("cat: ΔW_new = Σ w_i·ΔW_i exactly, rank Σ r_i, scale 1", () => {
    const pm = twoAdapters();
    const w = [0.7, -1.3];
    addWeightedAdapter(pm, ["a", "b"], w, "mix", "cat");
    const cfg = pm.peftConfig.get("mix")!;
    assert.equal(cfg.r, 6);
    assert.equal(cfg.loraAlpha, 6);
    assert.deepEqual(cfg.targetModules, ["q_proj", "v_proj"]);
    assert.deepEqual(cfg.rankPattern, {});
    assert.deepEqual(pm.activeAdapters, ["a"], "the new adapter is not made active");
    for (const [path, l] of layers(pm)) {
      assert.equal(l.scaling.get("mix"), 1);
      const want = combine([
        [w[0], l.deltaWeight("a")],
        [w[1], l.deltaWeight("b")],
      ]);
      assert.ok(maxDiff(l.deltaWeight("mix"), want) < 1e-5 * Math.max(1, maxAbs(want)), path);
    }
  });

  test("linear: A = Σ sign·√|w·s|·A_i, B = Σ √|w·s|·B_i (PEFT's factor-wise task arithmetic)", () => {
    const pm = twoAdapters({ b: { r: 4, loraAlpha: 2 } });
    const w = [0.5, -2];
    addWeightedAdapter(pm, ["a", "b"], w, "lin", "linear");
    assert.equal(pm.peftConfig.get("lin")!.r, 4);
    for (const [path, l] of layers(pm)) {
      const fa = factors(l, "a");
      const fb = factors(l, "b");
      const ws = [w[0] * l.scaling.get("a")!, w[1] * l.scaling.get("b")!];
      assert.deepEqual(ws, [0.5 * 2, -2 * 0.5]);
      const root = ws.map((x) => Math.sqrt(Math.abs(x)));
      const A = combine([
        [Math.sign(ws[0]) * root[0], fa.A.data],
        [Math.sign(ws[1]) * root[1], fb.A.data],
      ]);
      const B = combine([
        [root[0], fa.B.data],
        [root[1], fb.B.data],
      ]);
      const want = matmul(matrix(fa.B.rows, 4, B), matrix(4, fa.A.cols, A)).data;
      assert.ok(maxDiff(l.deltaWeight("lin"), want) < 1e-5 * Math.max(1, maxAbs(want)), path);
      const got = factors(l, "lin");
      assert.ok(maxDiff(got.A.data, A) < 1e-6 && maxDiff(got.B.data, B) < 1e-6, `${path} factors`);
    }
  });

  test("linear refuses different ranks; one adapter combines as linear whatever is asked", () => {
    const pm = twoAdapters();
    assert.throws(() => addWeightedAdapter(pm, ["a", "b"], [1, 1], "x", "linear"), /same r value/);
    assert.ok(!pm.peftConfig.has("x"), "nothing was added");
    addWeightedAdapter(pm, ["b"], [3], "solo", "cat");
    assert.equal(pm.peftConfig.get("solo")!.r, 2, "linear's rank, not cat's sum");
    for (const [, l] of layers(pm))
      assert.ok(maxDiff(l.deltaWeight("solo"), combine([[3, l.deltaWeight("b")]])) < 1e-5);
  });

  test("svd: the rank-k truncation of Σ (w_i·s_i)·ΔW_i, B = U·S, A = Vᵀ", () => {
    const pm = twoAdapters();
    const w = [1.5, 0.4];
    addWeightedAdapter(pm, ["a", "b"], w, "s3", "svd", { svdRank: 3 });
    addWeightedAdapter(pm, ["a", "b"], w, "sdef", "svd");
    addWeightedAdapter(pm, ["a", "b"], w, "sfull", "svd", { svdRank: 6 });
    assert.equal(pm.peftConfig.get("s3")!.r, 3);
    assert.equal(pm.peftConfig.get("sdef")!.r, 4, "default: the largest input rank");
    for (const [path, l] of layers(pm)) {
      const sa = l.scaling.get("a")!;
      const sb = l.scaling.get("b")!;
      // PEFT weights get_delta_weight() (which holds s_i) by w_i·s_i.
      const M = combine([
        [w[0] * sa, l.deltaWeight("a")],
        [w[1] * sb, l.deltaWeight("b")],
      ]);
      const m = matrix(l.outFeatures, l.inFeatures, M);
      const best3 = reconstruct(truncatedSvd(m, 3)).data;
      const tol = 1e-5 * Math.max(1, maxAbs(M));
      assert.ok(maxDiff(l.deltaWeight("s3"), best3) < tol, `${path}: rank-3 best approximation`);
      assert.ok(maxDiff(l.deltaWeight("sdef"), reconstruct(truncatedSvd(m, 4)).data) < tol);
      assert.ok(maxDiff(l.deltaWeight("sfull"), M) < tol, `${path}: rank Σ r_i is exact`);
      // The factors are U·S and Vᵀ: A has orthonormal rows, B orthogonal columns of norm σ_k.
      const f = factors(l, "s3");
      const ref = svd(m);
      for (let k = 0; k < 3; k++) {
        let aa = 0;
        let bb = 0;
        for (let j = 0; j < l.inFeatures; j++) aa += f.A.data[k * l.inFeatures + j] ** 2;
        for (let o = 0; o < l.outFeatures; o++) bb += f.B.data[o * 3 + k] ** 2;
        assert.ok(Math.abs(aa - 1) < 1e-5, "rows of A are unit vectors");
        assert.ok(Math.abs(Math.sqrt(bb) - ref.S[k]) < 1e-5 * ref.S[0], "columns of B have norm σ_k");
      }
    }
  });

  test("svd with α = r is the rank-k approximation of Σ w_i·ΔW_i; clamp bounds the factors", () => {
    const pm = twoAdapters({ a: { loraAlpha: 4 }, b: { loraAlpha: 2 } });
    addWeightedAdapter(pm, ["a", "b"], [1, -1], "d", "svd", { svdRank: 6 });
    addWeightedAdapter(pm, ["a", "b"], [1, -1], "c", "svd", { svdRank: 4, svdClamp: 0.8 });
    addWeightedAdapter(pm, ["a", "b"], [1, -1], "u", "svd", { svdRank: 4 });
    for (const [path, l] of layers(pm)) {
      const want = combine([
        [1, l.deltaWeight("a")],
        [-1, l.deltaWeight("b")],
      ]);
      assert.ok(maxDiff(l.deltaWeight("d"), want) < 1e-5);
      // PEFT: hi = quantile(cat(U·S, Vᵀ), clamp); both factors clamped to [−hi, hi].
      const c = factors(l, "c");
      const u = factors(l, "u");
      const hi = quantile(Float64Array.from([...u.B.data, ...u.A.data]), 0.8);
      assert.ok(hi > 0);
      const clip = (m: Float64Array) => m.map((v) => Math.min(hi, Math.max(-hi, v)));
      assert.ok(maxDiff(c.A.data, clip(u.A.data)) < 1e-6, `${path} A clamped`);
      assert.ok(maxDiff(c.B.data, clip(u.B.data)) < 1e-6, `${path} B clamped`);
      assert.ok(maxDiff(c.A.data, u.A.data) > 1e-3, "the clamp changes something");
    }
    assert.equal(quantile(Float64Array.from([3, 1, 2, 4]), 0.5), 2.5, "torch.quantile's linear rule");
    assert.equal(quantile(Float64Array.from([3, 1, 2, 4]), 1), 4);
  });

  test("target_modules union over different targets; layers an adapter lacks use the others", () => {
    const pm = twoAdapters({ b: { targetModules: ["v_proj", "down_proj"] } });
    addWeightedAdapter(pm, ["a", "b"], [1, 2], "u", "cat");
    const cfg = pm.peftConfig.get("u")!;
    assert.deepEqual(cfg.targetModules, ["down_proj", "q_proj", "v_proj"]);
    for (const [path, l] of layers(pm)) {
      const terms: [number, ArrayLike<number>][] = [];
      if (l.hasAdapter("a")) terms.push([1, l.deltaWeight("a")]);
      if (l.hasAdapter("b")) terms.push([2, l.deltaWeight("b")]);
      assert.ok(maxDiff(l.deltaWeight("u"), combine(terms)) < 1e-5, path);
      assert.equal(l.r.get("u"), 6, "rank Σ r_i, unused rank zero-padded");
    }
  });

  test("the combined adapter is a working adapter: active forward = merged, save → load exact", () => {
    const pm = twoAdapters({ a: { useRslora: true } });
    addWeightedAdapter(pm, ["a", "b"], [0.6, 0.4], "mix", "svd", { svdRank: 5 });
    const cfg = pm.peftConfig.get("mix")!;
    assert.equal(cfg.useRslora, false, "rsLoRA would scale the result by √r (PEFT #3449)");
    pm.setAdapter("mix");
    const out = logits(pm);
    pm.setAdapter("a");
    assert.ok(maxDiff(logits(pm), out) > 1e-4, "a different adapter gives different logits");
    pm.setAdapter("mix");
    pm.mergeAdapter();
    assert.ok(maxDiff(logits(pm), out) < 1e-5, "merged equals unmerged");
    pm.unmergeAdapter();
    const dir = mkdtempSync(join(tmpdir(), "lorakit-weighted-"));
    savePretrained(pm, dir, { adapterNames: ["mix"] });
    const json = JSON.parse(readFileSync(join(dir, "mix", "adapter_config.json"), "utf8"));
    assert.equal(json.r, 5);
    assert.equal(json.lora_alpha, 5);
    const loaded = fromPretrained(tinyModel(4), join(dir, "mix"));
    assert.equal(maxDiff(logits(loaded), out), 0);
  });

  test("errors: unknown adapter, weight count, existing name, mixed target types", () => {
    const pm = twoAdapters();
    assert.throws(
      () => addWeightedAdapter(pm, ["a", "nope"], [1, 1], "x", "cat"),
      /Adapter nope does not exist/,
    );
    assert.throws(() => addWeightedAdapter(pm, ["a", "b"], [1], "x", "cat"), /one weight per adapter/);
    assert.throws(() => addWeightedAdapter(pm, ["a", "b"], [1, 1], "b", "cat"), /already exists/);
    pm.addAdapter("re", { r: 2, targetModules: ".*\\.q_proj", initLoraWeights: false });
    assert.throws(() => addWeightedAdapter(pm, ["a", "re"], [1, 1], "x", "cat"), /same target modules type/);
    assert.throws(() => addWeightedAdapter(pm, ["a", "b"], [1, 1], "x", "svd", { svdClamp: 2 }), /svd_clamp/);
    assert.deepEqual([...pm.peftConfig.keys()], ["a", "b", "re"]);
  });
});

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
