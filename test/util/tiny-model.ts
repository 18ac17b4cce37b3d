// Small random LLaMA-family models for tests (built in memory, no files).
import { Rng } from "../../src/core/rng.js";
import { parseLlamaConfig } from "../../src/models/llama/config.js";
import { LlamaForCausalLM } from "../../src/models/llama/model.js";

export function tinyConfig(over: Record<string, unknown> = {}) {
  return parseLlamaConfig({
    model_type: "llama",
    vocab_size: 48,
    hidden_size: 32,
    intermediate_size: 40,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 128,
    rms_norm_eps: 1e-5,
    ...over,
  });
}

export function tinyModel(seed = 0, over: Record<string, unknown> = {}): LlamaForCausalLM {
  const m = new LlamaForCausalLM(tinyConfig(over), { rng: new Rng(seed) });
  for (const p of m.parameters()) p.requiresGrad = false;
  return m;
}
