// The model's sizes from config.json: vocabulary, hidden and MLP widths, layers, attention
// and key/value heads, head dimension. Each is a positive integer within config-limits.ts's
// bound; the heads must divide for grouped-query attention and RoPE needs an even head
// dimension. Sizes have no default: a config without them is refused, not guessed.
import { fieldError } from "./config-error.js";
import type { ConfigFields } from "./config-fields.js";

export interface LlamaSizes {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
}

/** `defaultKvHeads`: the model type's default num_key_value_heads (null: as many as the heads). */
export function readSizes(f: ConfigFields, defaultKvHeads: number | null): LlamaSizes {
  const vocabSize = f.posInt("vocab_size");
  const hiddenSize = f.posInt("hidden_size");
  const intermediateSize = f.posInt("intermediate_size");
  const numHiddenLayers = f.posInt("num_hidden_layers");
  const numAttentionHeads = f.posInt("num_attention_heads");
  const numKeyValueHeads = f.posInt("num_key_value_heads", defaultKvHeads ?? numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0)
    throw fieldError(
      "num_key_value_heads",
      numKeyValueHeads,
      `num_attention_heads (${numAttentionHeads}) must be a multiple of it for grouped-query attention`,
    );
  if (!f.given("head_dim") && hiddenSize % numAttentionHeads !== 0)
    throw fieldError(
      "hidden_size",
      hiddenSize,
      `it is not a multiple of num_attention_heads (${numAttentionHeads}) and no head_dim is given`,
    );
  const headDim = f.posInt("head_dim", hiddenSize / numAttentionHeads);
  if (headDim % 2 !== 0) throw fieldError("head_dim", headDim, "RoPE needs an even head dimension");
  return {
    vocabSize,
    hiddenSize,
    intermediateSize,
    numHiddenLayers,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
  };
}
