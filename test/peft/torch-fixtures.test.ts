// LoRA adapters in PEFT layout against PyTorch (scripts/fixtures/make_lora_fixtures.py,
// which applies PEFT's LoRA rules on top of the transformers re-implementation of
// make_llama_fixtures.py): loaded with fromPretrained, lorakit's logits, NLL, greedy tokens
// and merged-weight NLL equal PyTorch's. test/fixtures/lora/lorakit-saved/ was written by
// lorakit (scripts/fixtures/lorakit-adapter.mjs) and read back by the PyTorch script.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { noGrad, tensor, tidy } from "../../src/core/index.js";
import { evaluateNll } from "../../src/models/evaluate.js";
import { generate } from "../../src/models/generate.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { loadModel } from "../../src/models/node/load.js";
import { getPeftModel, PeftModel } from "../../src/peft/model.js";
import { loadAdapter } from "../../src/peft/node/io.js";
import { normErrors as errors, repoRoot } from "../util/repo.js";

const ROOT = repoRoot();
const FIX = join(ROOT, "test/fixtures/lora");

interface Expected {
  fixture: string;
  base_model_dir: string;
  lora_modules: { module: string; r: number; lora_alpha: number; scaling: number }[];
  input_ids: number[];
  nll: number;
  base_nll: number;
  merged_nll: number;
  logits: number[][];
  generation: { prompt_ids: number[]; max_new_tokens: number; new_ids: number[]; base_new_ids: number[] };
}

/** The fields PEFT 0.14's LoraConfig.to_dict() writes into adapter_config.json. */
const PEFT_FIELDS = [
  "alpha_pattern",
  "auto_mapping",
  "base_model_name_or_path",
  "bias",
  "eva_config",
  "exclude_modules",
  "fan_in_fan_out",
  "inference_mode",
  "init_lora_weights",
  "layer_replication",
  "layers_pattern",
  "layers_to_transform",
  "loftq_config",
  "lora_alpha",
  "lora_bias",
  "lora_dropout",
  "megatron_config",
  "megatron_core",
  "modules_to_save",
  "peft_type",
  "r",
  "rank_pattern",
  "revision",
  "target_modules",
  "task_type",
  "use_dora",
  "use_rslora",
];

const NLL_REL = 1e-5;
const LOGITS_NORM_REL = 1e-5;
const LOGITS_ATOL = 1e-4;

function logitsOf(model: LlamaForCausalLM, ids: number[]): Float32Array {
  return noGrad(() =>
    tidy(() => ({ data: Float32Array.from(model.forward(tensor([ids], [1, ids.length], "i32")).data) })),
  ).data;
}

function nllOf(model: LlamaForCausalLM, ids: number[]): number {
  return evaluateNll(model, ids, { seqLen: ids.length }).loss;
}

function assertNll(got: number, want: number, what: string): void {
  const rel = Math.abs(got - want) / Math.abs(want);
  assert.ok(rel <= NLL_REL, `${what}: lorakit ${got} vs PyTorch ${want} (relative ${rel.toExponential(2)})`);
}

function assertLogits(got: Float32Array, want: number[][], what: string): void {
  const { rel, maxAbs } = errors(got, want.flat());
  assert.ok(rel <= LOGITS_NORM_REL, `${what}: norm-relative logits error ${rel.toExponential(2)}`);
  assert.ok(maxAbs < LOGITS_ATOL, `${what}: max |Δlogit| ${maxAbs.toExponential(2)}`);
}

const names = existsSync(FIX)
  ? readdirSync(FIX)
      .filter((n) => existsSync(join(FIX, n, "expected.json")))
      .sort()
  : [];

describe("LoRA adapters (PEFT layout) vs PyTorch", () => {
  test("every fixture is present", () => {
    for (const n of [
      "llama-gqa-qv",
      "llama-gqa-all-linear-rslora",
      "llama-gqa-patterns",
      "qwen2-bias-qv",
      "qwen2-bias-all-linear-rslora",
      "qwen2-bias-patterns",
      "lorakit-saved",
    ])
      assert.ok(names.includes(n), `missing test/fixtures/lora/${n} (found ${names.join(", ")})`);
  });

  for (const name of names) {
    test(name, () => {
      const dir = join(FIX, name);
      const exp: Expected = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8"));
      const { model } = loadModel(join(ROOT, exp.base_model_dir));
      const ids = exp.input_ids;
      const g = exp.generation;

      // The base model first: the adapter must make a difference for the test to mean anything.
      assertNll(nllOf(model, ids), exp.base_nll, "base model NLL");
      assert.deepEqual(generate(model, g.prompt_ids, { maxNewTokens: g.max_new_tokens }), g.base_new_ids);

      const pm = new PeftModel(model);
      const report = loadAdapter(pm, dir);
      assert.deepEqual(report, { missing: [], unexpected: [] });

      // Same modules, ranks, alphas and scales as PEFT's target / pattern rules give.
      const layers = new Map(pm.loraLayers());
      assert.deepEqual(
        [...(pm.targetsOf.get("default") ?? [])].sort(),
        exp.lora_modules.map((m) => m.module).sort(),
      );
      for (const m of exp.lora_modules) {
        const l = layers.get(m.module);
        assert.ok(l, `${m.module} has no LoRA layer`);
        assert.equal(l.r.get("default"), m.r, `${m.module} r`);
        assert.equal(l.loraAlpha.get("default"), m.lora_alpha, `${m.module} lora_alpha`);
        const s = l.scaling.get("default")!;
        assert.ok(Math.abs(s - m.scaling) <= 1e-12 * m.scaling, `${m.module} scaling ${s} vs ${m.scaling}`);
      }

      // Unmerged.
      assertLogits(logitsOf(model, ids), exp.logits, "unmerged");
      assertNll(nllOf(model, ids), exp.nll, "NLL with the adapter");
      assert.deepEqual(generate(model, g.prompt_ids, { maxNewTokens: g.max_new_tokens }), g.new_ids);

      // Merged into the weights.
      pm.mergeAdapter();
      assertLogits(logitsOf(model, ids), exp.logits, "merged");
      assertNll(nllOf(model, ids), exp.merged_nll, "merged NLL");
      assertNll(nllOf(model, ids), exp.nll, "merged NLL vs unmerged PyTorch NLL");
      assert.deepEqual(generate(model, g.prompt_ids, { maxNewTokens: g.max_new_tokens }), g.new_ids);

      // Unmerging gives the base model back (within f32 rounding of W + ΔW − ΔW).
      pm.unmergeAdapter();
      pm.withAdaptersDisabled(() => assertNll(nllOf(model, ids), exp.base_nll, "after unmerge, disabled"));
    });
  }

  test("lorakit-saved: adapter_config.json is PEFT 0.14's, byte for byte in form", () => {
    const text = readFileSync(join(FIX, "lorakit-saved", "adapter_config.json"), "utf8");
    const cfg = JSON.parse(text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(cfg), PEFT_FIELDS, "every LoraConfig field, keys sorted");
    // json.dumps(indent=2, sort_keys=True), no trailing newline (numbers aside: Python writes 0.0).
    assert.equal(text, JSON.stringify(cfg, null, 2));
    assert.equal(cfg.peft_type, "LORA");
    assert.equal(cfg.inference_mode, true);
    assert.equal(cfg.r, 4);
    assert.equal(cfg.lora_alpha, 8);
    assert.deepEqual(cfg.target_modules, ["o_proj", "q_proj", "up_proj"]);
  });

  test("lorakit-saved: the adapter made in-process again gives PyTorch's NLL", () => {
    const exp: Expected = JSON.parse(readFileSync(join(FIX, "lorakit-saved", "expected.json"), "utf8"));
    const { model } = loadModel(join(ROOT, exp.base_model_dir));
    getPeftModel(
      model,
      { r: 4, loraAlpha: 8, targetModules: ["q_proj", "o_proj", "up_proj"], initLoraWeights: false },
      "default",
      { seed: 7 },
    );
    const got = nllOf(model, exp.input_ids);
    assert.ok(
      Math.abs(got - exp.nll) / exp.nll <= NLL_REL,
      `lorakit ${got} vs PyTorch ${exp.nll}: if lorakit's initialisation changed, regenerate with ` +
        "`npm run build && node scripts/fixtures/lorakit-adapter.mjs && /usr/bin/python3 scripts/fixtures/make_lora_fixtures.py`",
    );
  });
});
