// Issue 17, in the spirit of safetensors-fuzz: thousands of hostile adapter configs, model
// configs and training options, each either accepted with every field of the right type or
// refused with lorakit's own typed error. Never a TypeError, a RangeError, a hang, or an
// allocation sized by an absurd number.
import assert from "node:assert/strict";
import { test } from "node:test";
import { resolveTrainOptions } from "../../src/cli/train-options.js";
import { LorakitError } from "../../src/core/errors.js";
import { parseLlamaConfig } from "../../src/models/llama/config.js";
import { parseLoraConfig } from "../../src/peft/config.js";
import { countBaseParams } from "../../src/peft/params.js";
import { findTargets, rankAndAlpha } from "../../src/peft/targets.js";
import { tinyModel } from "../util/tiny-model.js";

/** mulberry32: a small seeded generator so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HOSTILE: unknown[] = [
  5,
  -1,
  0,
  1e9,
  1e308,
  -0.5,
  0.5,
  "no",
  "true",
  "",
  "5",
  null,
  true,
  false,
  [],
  [5],
  [null],
  ["q_proj", 7],
  {},
  { a: "b" },
  { "(.*)*(.*)*x$": 4 },
  "(.*)*(.*)*(.*)*x$",
  "(a)\\1",
  "[",
  "x".repeat(10_000),
  ["q_proj", "v_proj"],
  "all-linear",
  ".*\\.q_proj",
];

const ADAPTER_CONFIG: Record<string, unknown> = {
  alpha_pattern: {},
  base_model_name_or_path: "base",
  bias: "none",
  exclude_modules: null,
  fan_in_fan_out: false,
  inference_mode: true,
  init_lora_weights: true,
  layers_pattern: null,
  layers_to_transform: null,
  lora_alpha: 8,
  lora_bias: false,
  lora_dropout: 0.0,
  modules_to_save: null,
  peft_type: "LORA",
  r: 4,
  rank_pattern: {},
  target_modules: ["q_proj", "v_proj"],
  task_type: "CAUSAL_LM",
  use_dora: false,
  use_rslora: false,
  use_qalora: false,
  trainable_token_indices: null,
  init_lora_weights_extra: null,
};

function mutateObject(base: Record<string, unknown>, r: () => number): Record<string, unknown> {
  const o = structuredClone(base);
  const keys = Object.keys(o);
  const n = 1 + Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    const k = keys[Math.floor(r() * keys.length)];
    const roll = r();
    if (roll < 0.1) delete o[k];
    else o[k] = structuredClone(HOSTILE[Math.floor(r() * HOSTILE.length)]);
  }
  return o;
}

const isBool = (v: unknown) => typeof v === "boolean";

test("fuzzed adapter_config.json: a well-typed config or a PeftError, matched in linear time", () => {
  const model = tinyModel();
  const r = rng(17);
  let accepted = 0;
  for (let i = 0; i < 2000; i++) {
    const json = mutateObject(ADAPTER_CONFIG, r);
    try {
      const c = parseLoraConfig(json);
      for (const v of [c.useRslora, c.useDora, c.loraBias, c.fanInFanOut, c.inferenceMode])
        assert.ok(isBool(v));
      assert.ok(Number.isInteger(c.r) && c.r > 0);
      assert.ok(typeof c.loraDropout === "number" && c.loraDropout >= 0 && c.loraDropout < 1);
      assert.ok(
        c.targetModules === null || typeof c.targetModules === "string" || Array.isArray(c.targetModules),
      );
      for (const p of findTargets(c, model, "llama")) rankAndAlpha(c, p);
      accepted++;
    } catch (e) {
      assert.ok(
        e instanceof LorakitError,
        `case ${i} ${JSON.stringify(json).slice(0, 300)}: ${(e as Error).stack}`,
      );
    }
  }
  assert.ok(accepted > 100, `only ${accepted} configs were accepted: the fuzzer is not reaching the matcher`);
});

const MODEL_CONFIG: Record<string, unknown> = {
  model_type: "llama",
  vocab_size: 48,
  hidden_size: 32,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  sliding_window: null,
  rope_scaling: null,
  bos_token_id: 1,
  eos_token_id: 2,
};

test("fuzzed config.json: a config of bounded size or a ConfigError, before anything is allocated", () => {
  const r = rng(1717);
  for (let i = 0; i < 3000; i++) {
    const json = mutateObject(MODEL_CONFIG, r);
    if (r() < 0.3) json.model_type = ["llama", "mistral", "qwen2"][Math.floor(r() * 3)];
    try {
      const c = parseLlamaConfig(json);
      assert.ok(c.numHiddenLayers <= 1024 && c.hiddenSize <= 65536 && c.vocabSize <= 1 << 22);
      assert.ok(Number.isFinite(countBaseParams(c)));
    } catch (e) {
      assert.ok(
        e instanceof LorakitError,
        `case ${i} ${JSON.stringify(json).slice(0, 300)}: ${(e as Error).stack}`,
      );
    }
  }
});

const FLAGS = [
  "steps",
  "batch-size",
  "seq-len",
  "grad-accum",
  "lr",
  "r",
  "lora-alpha",
  "lora-dropout",
  "target-modules",
  "threads",
  "seed",
  "warmup-steps",
  "schedule",
  "method",
  "gora-min-rank",
  "gora-max-rank",
  "gora-batches",
  "init-r",
  "target-r",
  "beta1",
  "quantize",
  "dtype",
  "valid-fraction",
  "max-grad-norm",
  "use-rslora",
];
const FLAG_VALUES = [
  "0",
  "-1",
  "1e9",
  "1e308",
  "NaN",
  "Infinity",
  "abc",
  "",
  "0.5",
  "2",
  "1",
  "true",
  "all-linear",
  ",",
  "q_proj,,v_proj",
];

test("fuzzed train flags: options within bounds or a CliError", () => {
  const r = rng(71);
  for (let i = 0; i < 3000; i++) {
    const flags: Record<string, unknown> = { model: "m", data: "d", out: "o" };
    const n = 1 + Math.floor(r() * 4);
    for (let j = 0; j < n; j++)
      flags[FLAGS[Math.floor(r() * FLAGS.length)]] = FLAG_VALUES[Math.floor(r() * FLAG_VALUES.length)];
    try {
      const o = resolveTrainOptions({}, flags);
      assert.ok(o.batchSize >= 1 && o.batchSize <= 65536 && o.r >= 1 && o.r <= 65536 && o.seqLen <= 1 << 20);
      assert.ok(o.goraMinRank >= 1 && o.goraMaxRank >= o.goraMinRank);
      assert.ok(Number.isFinite(o.lr) && o.lr > 0);
    } catch (e) {
      assert.ok(e instanceof LorakitError, `case ${i} ${JSON.stringify(flags)}: ${(e as Error).stack}`);
    }
  }
});
