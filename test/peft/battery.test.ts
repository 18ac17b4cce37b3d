// PEFT-style table of LoRA configurations, each run through one battery of identities:
// B = 0 equals the base model exactly; merged equals unmerged; unmerge restores the base;
// save → load gives identical outputs; a mixed batch equals per-row single-adapter runs;
// disable and delete behave. DoRA and PiSSA run through the same battery: DoRA's B = 0
// start is the base model exactly; PiSSA's start equals the base model to rounding
// (residual + s·B·A = W), its adapter loads onto the residual model, and its rank-2r
// conversion loads onto the original one.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { Tensor } from "../../src/core/index.js";
import { noGrad, tensor } from "../../src/core/index.js";
import type { LoraConfig } from "../../src/peft/config.js";
import type { PeftModel } from "../../src/peft/model.js";
import { getPeftModel } from "../../src/peft/model.js";
import { fromPretrained, savePretrained } from "../../src/peft/node/io.js";
import { quantizeModel } from "../../src/quant/model.js";
import { tinyModel as tinyBase } from "../util/tiny-model.js";

const IDS = [
  [3, 7, 11, 2, 9, 30, 4, 1],
  [5, 5, 40, 12, 8, 19, 22, 6],
  [1, 2, 3, 4, 5, 6, 7, 8],
];

function logits(m: { forward(x: Tensor, o?: never): Tensor }, rows = IDS, opts?: unknown): Float32Array {
  return noGrad(() =>
    Float32Array.from(m.forward(tensor(rows, [rows.length, rows[0].length], "i32"), opts as never).data),
  );
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function weights(m: ReturnType<typeof tinyBase>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [p, t] of m.namedParameters())
    out.set(p.replace(".base_layer", ""), Float32Array.from(t.data as Float32Array));
  return out;
}

/** `nf4`: the base model's decoder linears are NF4 (QLoRA): merging re-quantises, so merge is not exact there. */
const CASES: [string, Partial<LoraConfig>, { nf4?: boolean }?][] = [
  ["q,v (architecture default)", { r: 4, loraAlpha: 8 }],
  ["all-linear", { r: 4, loraAlpha: 16, targetModules: "all-linear" }],
  [
    "rsLoRA on attention",
    { r: 8, loraAlpha: 8, useRslora: true, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"] },
  ],
  [
    "rank and alpha patterns",
    {
      r: 4,
      loraAlpha: 8,
      targetModules: ["q_proj", "v_proj", "down_proj"],
      rankPattern: { down_proj: 2, "layers\\.1\\.self_attn\\.q_proj": 6 },
      alphaPattern: { v_proj: 3 },
    },
  ],
  ["layersToTransform", { r: 4, targetModules: ["q_proj", "v_proj"], layersToTransform: [1] }],
  ["regex target", { r: 2, targetModules: ".*\\.mlp\\.(gate|up)_proj" }],
  ["bias all + dropout", { r: 4, targetModules: ["q_proj", "v_proj"], bias: "all", loraDropout: 0.1 }],
  ["DoRA on q,v", { r: 4, loraAlpha: 8, useDora: true }],
  [
    "DoRA all-linear + rsLoRA + dropout",
    { r: 4, loraAlpha: 16, targetModules: "all-linear", useRslora: true, useDora: true, loraDropout: 0.1 },
  ],
  [
    "PiSSA on attention",
    { r: 4, loraAlpha: 8, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"], initLoraWeights: "pissa" },
  ],
  [
    "PiSSA niter + rank pattern",
    {
      r: 4,
      loraAlpha: 8,
      targetModules: ["q_proj", "v_proj", "down_proj"],
      rankPattern: { down_proj: 2 },
      initLoraWeights: "pissa_niter_2",
    },
  ],
  ["DoRA + PiSSA", { r: 4, loraAlpha: 8, useDora: true, initLoraWeights: "pissa" }],
  ["QLoRA: all-linear on an NF4 base", { r: 4, loraAlpha: 16, targetModules: "all-linear" }, { nf4: true }],
];

/** Moves a freshly initialised adapter away from its start: A, B (PiSSA) and m (DoRA). */
function perturb(pm: PeftModel, name: string, ab: boolean): void {
  for (const [, l] of pm.loraLayers()) {
    if (!l.hasAdapter(name)) continue;
    const ts = [l.lora_magnitude_vector.get(name)?.weight];
    if (ab) ts.push(l.lora_A.get(name)!.weight, l.lora_B.get(name)!.weight);
    for (const t of ts) {
      if (!t) continue;
      const d = t.data as Float32Array;
      for (let i = 0; i < d.length; i++) d[i] *= 1 + 0.05 * Math.sin(1 + 3 * i);
    }
  }
}

function quantized(seed: number): ReturnType<typeof tinyBase> {
  const m = tinyBase(seed);
  quantizeModel(m);
  return m;
}

/** Merging gives the unmerged outputs; unmerging restores the weights (the base's, unless PiSSA changed them). */
function mergeRoundTrip(
  pm: PeftModel,
  model: ReturnType<typeof tinyBase>,
  adapted: Float32Array,
  baseW: Map<string, Float32Array>,
  pissa: boolean,
): void {
  const preMerge = weights(model);
  pm.mergeAdapter();
  assert.ok(maxDiff(logits(pm), adapted) < 1e-5, "merged equals unmerged");
  pm.unmergeAdapter();
  for (const [p, w] of weights(model)) {
    const b = preMerge.get(p);
    if (b) assert.ok(maxDiff(w, b) < 1e-6, `unmerge restores ${p}`);
    const b0 = baseW.get(p);
    if (b0 && !pissa) assert.ok(maxDiff(w, b0) < 1e-6, `unmerge restores the base ${p}`);
  }
  assert.ok(maxDiff(logits(pm), adapted) < 1e-6);
}

describe("LoRA battery", () => {
  for (const [name, cfg, opts] of CASES) {
    test(name, () => {
      const tinyModel = (seed: number) => (opts?.nf4 ? quantized(seed) : tinyBase(seed));
      const model = tinyModel(1);
      const base = logits(model);
      const baseW = weights(model);
      const init = cfg.initLoraWeights;
      const pissa = typeof init === "string" && init.startsWith("pissa");
      // The adapter under test: PiSSA as configured, otherwise both A and B random.
      const adapterCfg = { ...cfg, initLoraWeights: pissa ? init : false };

      // B = 0 at init: exactly the base model (DoRA too: m = ‖W‖ makes the rescaling 1).
      const pm0 = getPeftModel(tinyModel(1), { ...cfg, initLoraWeights: true });
      assert.equal(maxDiff(logits(pm0), base), 0, "B = 0 must equal the base model exactly");

      const pm = getPeftModel(model, adapterCfg, "default", { seed: 5 });
      const initDir = mkdtempSync(join(tmpdir(), "lorakit-peft-init-"));
      if (pissa) {
        // residual + s·B·A = W: the model is unchanged to rounding.
        assert.ok(maxDiff(logits(pm), base) < 1e-4, "PiSSA at init equals the base model");
        savePretrained(pm, initDir); // the initial adapter, for the rank-2r conversion
      }
      perturb(pm, "default", pissa);
      const adapted = logits(pm);
      assert.ok(maxDiff(adapted, base) > 1e-3, "the adapter changes the output");
      // The model with adapters off: the base, or for PiSSA the residual model.
      const baseNow = pm.withAdaptersDisabled(() => logits(pm));
      if (!pissa) assert.ok(maxDiff(baseNow, base) < 1e-6);

      // Merge = unmerged; unmerge restores the weights (and the base ones are the original's).
      // (An NF4 base is re-quantised by a merge, lossy by design: QLoRA's merge is tested in
      // test/quant/linear4bit.test.ts.)
      if (!opts?.nf4) mergeRoundTrip(pm, model, adapted, baseW, pissa);

      // Disable is the base model; enabling again is the adapter.
      assert.ok(
        maxDiff(
          pm.withAdaptersDisabled(() => logits(pm)),
          baseNow,
        ) < 1e-6,
      );
      assert.ok(maxDiff(logits(pm), adapted) < 1e-6);

      // Save → load into a fresh base gives identical outputs.
      const dir = mkdtempSync(join(tmpdir(), "lorakit-peft-"));
      savePretrained(pm, dir);
      const cfgJson = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
      assert.equal(cfgJson.peft_type, "LORA");
      assert.equal(cfgJson.inference_mode, true);
      assert.deepEqual(Object.keys(cfgJson), Object.keys(cfgJson).sort());
      assert.equal(cfgJson.use_dora, cfg.useDora ?? false);
      // A PiSSA adapter loads onto the residual model (the same decomposition again, then unloaded).
      const target = pissa
        ? getPeftModel(tinyModel(1), adapterCfg, "default", { seed: 5 }).unload()
        : tinyModel(1);
      const loaded = fromPretrained(target, dir);
      assert.equal(maxDiff(logits(loaded), adapted), 0, "save → load is exact");

      if (pissa && !cfg.useDora) {
        // Converted to rank 2r, it works on the original base model.
        const conv = mkdtempSync(join(tmpdir(), "lorakit-peft-conv-"));
        savePretrained(pm, conv, { pathInitialModelForWeightConversion: initDir });
        const convCfg = JSON.parse(readFileSync(join(conv, "adapter_config.json"), "utf8"));
        assert.equal(convCfg.r, 2 * (cfg.r ?? 8));
        assert.equal(convCfg.init_lora_weights, true);
        const initCfg = JSON.parse(readFileSync(join(initDir, "adapter_config.json"), "utf8"));
        assert.equal(initCfg.init_lora_weights, true, "the initial folder is marked as PEFT does");
        assert.ok(
          maxDiff(logits(fromPretrained(tinyModel(1), conv)), adapted) < 1e-4,
          "rank-2r adapter on W",
        );
      }

      // A second adapter; a mixed batch equals per-row single-adapter runs.
      pm.addAdapter("other", { ...cfg, initLoraWeights: false }, { seed: 9 });
      perturb(pm, "other", false);
      pm.setAdapter("other");
      const other = logits(pm);
      pm.setAdapter("default");
      const rows = ["other", "__base__", "default"];
      const mixed = logits(pm, IDS, { adapterNames: rows });
      const V = 48;
      const per = IDS[0].length * V;
      const want = [other, baseNow, adapted];
      for (let r = 0; r < 3; r++)
        assert.ok(
          maxDiff(mixed.subarray(r * per, (r + 1) * per), want[r].subarray(r * per, (r + 1) * per)) < 1e-5,
          `row ${r}`,
        );

      // Delete: the remaining adapter still works; deleting the last gives the base back.
      pm.deleteAdapter("other");
      assert.ok(maxDiff(logits(pm), adapted) < 1e-6);
      pm.deleteAdapter("default");
      assert.ok(maxDiff(logits(pm), baseNow) < 1e-6);
    });
  }
});

describe("trainable parameters", () => {
  test("PEFT's line, and only A/B (and biases when asked) train", () => {
    const pm = getPeftModel(tinyBase(2), { r: 4, targetModules: ["q_proj", "v_proj"] });
    // q_proj: 32→32 (A 4×32 + B 32×4 = 256), v_proj: 32→16 (A 4×32 + B 16×4 = 192), 2 layers.
    const { trainable, all } = pm.countParameters();
    assert.equal(trainable, 2 * (256 + 192));
    const line = pm.trainableParametersLine();
    assert.match(line, /^trainable params: 896 \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}$/);
    assert.equal(
      line,
      `trainable params: 896 || all params: ${all.toLocaleString("en-US")} || trainable%: ${((100 * 896) / all).toFixed(4)}`,
    );
  });
  test("merge-and-unload returns a plain model equal to the adapted one", () => {
    const pm = getPeftModel(tinyBase(3), { r: 4, targetModules: "all-linear", initLoraWeights: false });
    const adapted = logits(pm);
    const plain = pm.mergeAndUnload({ safeMerge: true });
    assert.ok(maxDiff(logits(plain), adapted) < 1e-5);
    for (const [p] of plain.namedParameters())
      assert.ok(!p.includes("lora_") && !p.includes("base_layer"), p);
  });
});
