// Weighted adapter combination: PEFT's add_weighted_adapter (linear, cat, svd).
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { Tensor } from "../../src/core/index.js";
import { noGrad, tensor } from "../../src/core/index.js";
import type { Matrix } from "../../src/linalg/index.js";
import { matmul, matrix, reconstruct, svd, truncatedSvd } from "../../src/linalg/index.js";
import type { LoraConfig } from "../../src/peft/config.js";
import type { LoraLinear } from "../../src/peft/lora/layer.js";
import type { PeftModel } from "../../src/peft/model.js";
import { getPeftModel } from "../../src/peft/model.js";
import { fromPretrained, savePretrained } from "../../src/peft/node/io.js";
import { addWeightedAdapter, quantile } from "../../src/peft/weighted.js";
import { tinyModel } from "../util/tiny-model.js";

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
