import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { LlamaConfig } from "../../src/models/llama/config.js";
import {
  ConfigError,
  computeRopeInvFreq,
  LLAMA_CONFIG_DEFAULTS,
  llamaConfigToJson,
  parseLlamaConfig,
} from "../../src/models/llama/config.js";

// meta-llama/Llama-3.2-1B-Instruct config.json
const llama32 = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  head_dim: 64,
  hidden_act: "silu",
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: "llama3",
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.45.0.dev0",
  use_cache: true,
  vocab_size: 128256,
};

// mistralai/Mistral-7B-v0.1 config.json
const mistral7b = {
  architectures: ["MistralForCausalLM"],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: "silu",
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: "mistral",
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  sliding_window: 4096,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  transformers_version: "4.34.0.dev0",
  use_cache: true,
  vocab_size: 32000,
};

// Qwen/Qwen2.5-0.5B config.json
const qwen25 = {
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: "silu",
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  model_type: "qwen2",
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.40.1",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

const minimal = (model_type: string, more: Record<string, unknown> = {}) => ({
  model_type,
  vocab_size: 100,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 8,
  ...more,
});

function refuses(json: unknown, ...res: RegExp[]): void {
  assert.throws(
    () => parseLlamaConfig(json),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      for (const re of res) assert.match(e.message, re);
      return true;
    },
  );
}

describe("parseLlamaConfig", () => {
  test("Llama 3.2 1B", () => {
    const c = parseLlamaConfig(llama32);
    assert.equal(c.modelType, "llama");
    assert.equal(c.hiddenSize, 2048);
    assert.equal(c.intermediateSize, 8192);
    assert.equal(c.numHiddenLayers, 16);
    assert.equal(c.numAttentionHeads, 32);
    assert.equal(c.numKeyValueHeads, 8);
    assert.equal(c.headDim, 64);
    assert.equal(c.rmsNormEps, 1e-5);
    assert.equal(c.ropeTheta, 500000);
    assert.deepEqual(c.ropeScaling, {
      type: "llama3",
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.qkvBias, false);
    assert.equal(c.oProjBias, false);
    assert.equal(c.mlpBias, false);
    assert.equal(c.bosTokenId, 128000);
    assert.deepEqual(c.eosTokenId, [128001, 128008, 128009]);
    assert.equal(c.torchDtype, "bfloat16");
    assert.equal(c.slidingWindow, null);
    assert.deepEqual(c.layerTypes, Array(16).fill("full_attention"));
    assert.equal(c.extra.pretraining_tp, 1);
    assert.ok(Object.isFrozen(c));
  });

  test("Mistral 7B: sliding window on every layer, no biases", () => {
    const c = parseLlamaConfig(mistral7b);
    assert.equal(c.slidingWindow, 4096);
    assert.deepEqual(c.layerTypes, Array(32).fill("sliding_attention"));
    assert.equal(c.headDim, 128);
    assert.equal(c.qkvBias, false);
    assert.equal(c.oProjBias, false);
    assert.equal(parseLlamaConfig({ ...mistral7b, sliding_window: null }).slidingWindow, null);
  });

  test("Qwen2.5 0.5B: q/k/v bias, no o_proj bias; window off unless use_sliding_window", () => {
    const c = parseLlamaConfig(qwen25);
    assert.equal(c.qkvBias, true);
    assert.equal(c.oProjBias, false);
    assert.equal(c.mlpBias, false);
    assert.equal(c.headDim, 64);
    assert.equal(c.numKeyValueHeads, 2);
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.slidingWindow, null);
    assert.equal(c.ropeTheta, 1e6);
    const w = parseLlamaConfig({ ...qwen25, use_sliding_window: true, max_window_layers: 20 });
    assert.equal(w.slidingWindow, 32768);
    assert.deepEqual(
      w.layerTypes,
      Array.from({ length: 24 }, (_, i) => (i >= 20 ? "sliding_attention" : "full_attention")),
    );
  });

  test("defaults per model type, as transformers", () => {
    const l = parseLlamaConfig(minimal("llama"));
    assert.equal(l.numKeyValueHeads, 8, "llama: kv heads = heads");
    assert.equal(l.headDim, 8, "head_dim = hidden / heads");
    assert.equal(l.ropeTheta, 10000);
    assert.equal(l.ropeScaling, null);
    assert.equal(l.rmsNormEps, 1e-6);
    assert.equal(l.tieWordEmbeddings, false);
    assert.equal(l.maxPositionEmbeddings, 2048);
    assert.equal(l.bosTokenId, 1);
    assert.equal(l.eosTokenId, 2);
    assert.equal(l.padTokenId, null);
    assert.equal(l.torchDtype, null);
    const m = parseLlamaConfig(minimal("mistral"));
    assert.equal(m.numKeyValueHeads, LLAMA_CONFIG_DEFAULTS.mistral.numKeyValueHeads);
    assert.equal(m.slidingWindow, 4096);
    const q = parseLlamaConfig(minimal("qwen2", { num_attention_heads: 32, hidden_size: 128 }));
    assert.equal(q.numKeyValueHeads, 32);
    assert.equal(q.tieWordEmbeddings, false);
    assert.equal(q.bosTokenId, null);
    assert.equal(q.slidingWindow, null);
    assert.equal(q.maxWindowLayers, 28);
    assert.equal(parseLlamaConfig(minimal("llama", { num_key_value_heads: null })).numKeyValueHeads, 8);
    assert.equal(parseLlamaConfig(minimal("llama", { head_dim: 16 })).headDim, 16);
    assert.equal(parseLlamaConfig(minimal("llama", { dtype: "float32" })).torchDtype, "float32");
    assert.ok(Object.isFrozen(LLAMA_CONFIG_DEFAULTS.llama));
  });

  test("rope_scaling: legacy `type`, linear, default, and transformers 5 rope_parameters", () => {
    assert.deepEqual(
      parseLlamaConfig(minimal("llama", { rope_scaling: { type: "linear", factor: 2.0 } })).ropeScaling,
      {
        type: "linear",
        factor: 2,
      },
    );
    assert.equal(
      parseLlamaConfig(minimal("llama", { rope_scaling: { rope_type: "default" } })).ropeScaling,
      null,
    );
    const v5 = parseLlamaConfig(
      minimal("llama", { rope_parameters: { rope_type: "linear", rope_theta: 500000.0, factor: 4.0 } }),
    );
    assert.equal(v5.ropeTheta, 500000);
    assert.deepEqual(v5.ropeScaling, { type: "linear", factor: 4 });
  });

  test("refusals name the field, the value and what is supported", () => {
    refuses(minimal("gpt2"), /model_type/, /"gpt2"/, /"llama", "mistral", "qwen2"/);
    refuses(minimal("llama", { hidden_act: "gelu" }), /hidden_act/, /"gelu"/, /"silu"/);
    refuses(
      minimal("llama", { rope_scaling: { rope_type: "yarn", factor: 4 } }),
      /"yarn"/,
      /"linear" and "llama3"/,
    );
    refuses(minimal("llama", { rope_scaling: { type: "dynamic", factor: 2 } }), /"dynamic"/);
    refuses(
      minimal("llama", {
        rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4 },
      }),
      /original_max_position_embeddings/,
    );
    refuses(
      minimal("llama", {
        rope_scaling: {
          rope_type: "llama3",
          factor: 8,
          low_freq_factor: 4,
          high_freq_factor: 1,
          original_max_position_embeddings: 8192,
        },
      }),
      /high_freq_factor/,
    );
    refuses(minimal("llama", { num_key_value_heads: 3 }), /num_key_value_heads/, /3/, /multiple/);
    refuses(minimal("llama", { hidden_size: undefined }), /hidden_size/, /required/);
    refuses(minimal("llama", { num_hidden_layers: 2.5 }), /num_hidden_layers/, /2\.5/);
    refuses(minimal("llama", { hidden_size: 60 }), /hidden_size/, /head_dim/);
    refuses(
      minimal("qwen2", { num_attention_heads: 8, num_key_value_heads: 8, attention_bias: true }),
      /attention_bias/,
      /qwen2/,
    );
    refuses(minimal("mistral", { mlp_bias: true }), /mlp_bias/);
    refuses(minimal("llama", { eos_token_id: [1, "x"] }), /eos_token_id/);
    refuses(minimal("llama", { rms_norm_eps: -1 }), /rms_norm_eps/);
    refuses([1], /object/);
  });

  test("llamaConfigToJson round-trips, keeping unknown keys", () => {
    for (const src of [
      llama32,
      mistral7b,
      qwen25,
      { ...qwen25, use_sliding_window: true },
      minimal("llama"),
    ]) {
      const c = parseLlamaConfig(src);
      const json = llamaConfigToJson(c);
      // only `architectures` may be added (kept in extra once written)
      const back = parseLlamaConfig(JSON.parse(JSON.stringify(json)));
      assert.deepEqual(back, { ...c, extra: { ...c.extra, architectures: json.architectures } });
      assert.deepEqual(parseLlamaConfig(llamaConfigToJson(back)), back);
    }
    const j = llamaConfigToJson(parseLlamaConfig(llama32));
    assert.equal(j.transformers_version, "4.45.0.dev0");
    assert.deepEqual(j.architectures, ["LlamaForCausalLM"]);
    assert.deepEqual(j.rope_scaling, llama32.rope_scaling);
    assert.equal(j.attention_bias, false);
    assert.deepEqual(
      llamaConfigToJson(
        parseLlamaConfig(minimal("qwen2", { num_attention_heads: 8, num_key_value_heads: 8 })),
      ).architectures,
      ["Qwen2ForCausalLM"],
    );
  });
});

// inv_freq of Llama 3.1/3.2 (theta 500000, head_dim 128, llama3 factor 8, low 1, high 4,
// original 8192), from the transformers formulas run in PyTorch 1.13 float32:
// see the script in the comment at the end of this file.
const TORCH_LLAMA3 = [
  1.0, 0.8146172165870667, 0.663601279258728, 0.5405809879302979, 0.44036662578582764, 0.3587302267551422,
  0.2922278344631195, 0.2380538135766983, 0.193922758102417, 0.1579728126525879, 0.12868738174438477,
  0.10483095049858093, 0.08539710193872452, 0.06956595182418823, 0.05666961893439293, 0.046164050698280334,
  0.03760603070259094, 0.030634520575404167, 0.02495540864765644, 0.020329104736447334, 0.016560440883040428,
  0.013490419834852219, 0.010989529080688953, 0.008952259086072445, 0.00729266507551074, 0.005940730683505535,
  0.00483942124992609, 0.003942275885492563, 0.0032114461064338684, 0.0021665706299245358,
  0.0013718936825171113, 0.0008567514596506953, 0.0005248460220173001, 0.0003126936499029398,
  0.0001785077911335975, 9.556212171446532e-5, 7.784655463183299e-5, 6.341514381347224e-5,
  5.165906986803748e-5, 4.208236714475788e-5, 3.428102354519069e-5, 2.7925909307668917e-5,
  2.2748929040972143e-5, 1.8531669411459006e-5, 1.5096217794052791e-5, 1.2297638932068367e-5,
  1.0017868589784484e-5, 8.160727702488657e-6, 6.647869668086059e-6, 5.415469331637723e-6,
  4.411534519022098e-6, 3.593711880967021e-6, 2.927499735960737e-6, 2.3847917418606812e-6,
  1.9426925064180978e-6, 1.5825507944100536e-6, 1.289173155782919e-6, 1.050182618200779e-6,
  8.554969213037111e-7, 6.969025321268418e-7, 5.677088097399974e-7, 4.6246537976912805e-7,
  3.76732259610435e-7, 3.068925877869333e-7,
];

// theta 10000, head_dim 64, linear factor 4, PyTorch float32.
const TORCH_LINEAR = [
  0.25, 0.18747355043888092, 0.14058533310890198, 0.10542412847280502, 0.07905694097280502,
  0.05928434059023857, 0.04445698484778404, 0.0333380363881588, 0.02500000037252903, 0.018747353926301003,
  0.014058532193303108, 0.010542412288486958, 0.007905694656074047, 0.0059284339658916, 0.004445698577910662,
  0.0033338037319481373, 0.0024999999441206455, 0.0018747355788946152, 0.0014058533124625683,
  0.0010542412055656314, 0.0007905694656074047, 0.0005928434547968209, 0.00044456985779106617,
  0.00033338036155328155, 0.0002500000118743628, 0.00018747354624792933, 0.00014058532542549074,
  0.00010542412201175466, 7.905694656074047e-5, 5.928434620727785e-5, 4.4456985051510856e-5,
  3.333803761051968e-5,
];

describe("computeRopeInvFreq", () => {
  const cfg = (more: Record<string, unknown>): LlamaConfig =>
    parseLlamaConfig(minimal("llama", { hidden_size: 4096, num_attention_heads: 32, ...more }));
  const llama31 = cfg({
    rope_theta: 500000.0,
    rope_scaling: {
      rope_type: "llama3",
      factor: 8.0,
      low_freq_factor: 1.0,
      high_freq_factor: 4.0,
      original_max_position_embeddings: 8192,
    },
  });

  test("unscaled: 1 / theta^(2i/d)", () => {
    const f = computeRopeInvFreq(cfg({}));
    assert.equal(f.length, 64);
    assert.equal(f[0], 1);
    assert.equal(f[1], 1 / 10000 ** (2 / 128));
    assert.equal(f[63], 1 / 10000 ** (126 / 128));
  });

  test("llama3 by hand: high frequencies kept, low divided by factor, ramp between", () => {
    const f = computeRopeInvFreq(llama31);
    const base = (i: number) => 1 / 500000 ** ((2 * i) / 128);
    // i=0: wavelen 2π < 8192/4 = 2048 → unchanged
    assert.equal(f[0], 1);
    // i=63: wavelen 2π·500000^(126/128) ≈ 1.3e6 > 8192 → divided by 8
    assert.equal(f[63], base(63) / 8);
    // find the band 2048 ≤ wavelen ≤ 8192 and check the smooth interpolation there
    let medium = 0;
    for (let i = 0; i < 64; i++) {
      const w = (2 * Math.PI) / base(i);
      if (w < 2048 || w > 8192) continue;
      medium++;
      const s = (8192 / w - 1) / (4 - 1);
      assert.ok(Math.abs(f[i] - ((1 - s) * base(i)) / 8 - s * base(i)) <= 1e-18, `i=${i}`);
      assert.ok(f[i] < base(i) && f[i] > base(i) / 8);
    }
    // wavelen = 2π·500000^(i/64) lies in [2048, 8192] for i = 29..34
    assert.equal(medium, 6);
  });

  test("llama3 matches PyTorch float32 bit for bit in float32 mode, to 1e-6 in float64", () => {
    const f32 = computeRopeInvFreq(llama31, { float32: true });
    const f64 = computeRopeInvFreq(llama31);
    let maxUlp = 0;
    for (let i = 0; i < 64; i++) {
      const ulp = Math.abs(f32[i] - TORCH_LLAMA3[i]) / (Math.abs(TORCH_LLAMA3[i]) * 2 ** -23);
      maxUlp = Math.max(maxUlp, ulp);
      assert.ok(Math.abs(f64[i] - TORCH_LLAMA3[i]) <= 1e-6 * TORCH_LLAMA3[i], `i=${i}`);
    }
    assert.equal(maxUlp, 0, `max difference ${maxUlp} ulp`);
  });

  test("linear scaling", () => {
    const c = parseLlamaConfig(
      minimal("llama", {
        hidden_size: 2048,
        num_attention_heads: 32,
        rope_scaling: { type: "linear", factor: 4.0 },
      }),
    );
    const f = computeRopeInvFreq(c);
    assert.equal(f.length, 32);
    for (let i = 0; i < 32; i++) {
      assert.equal(f[i], 1 / 10000 ** ((2 * i) / 64) / 4);
      assert.ok(Math.abs(f[i] - TORCH_LINEAR[i]) <= 1e-6 * TORCH_LINEAR[i]);
    }
  });
});

/* The reference numbers above come from this script (PyTorch 1.13, no transformers needed):

import math, torch
def default(base, dim):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
def llama3(base, dim, factor, low, high, old):
    inv_freq = default(base, dim)
    low_freq_wavelen, high_freq_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)
print(llama3(500000.0, 128, 8.0, 1.0, 4.0, 8192).tolist())
print((default(10000.0, 64) / 4.0).tolist())
*/
