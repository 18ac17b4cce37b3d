// Upper bounds on the sizes a config.json may declare. A config is read before any weight,
// and several things are sized from it at once (per-layer arrays, RoPE tables, the memory
// plan), so `num_hidden_layers: 1e9` used to run the process out of memory (a V8 abort) even
// in `lorakit info`. Each bound is far above every published model (largest today: ~126
// layers, hidden 16,384-25,600, vocabularies of ~262k, contexts of 10M).
export const CONFIG_SIZE_LIMITS: Readonly<Record<string, number>> = Object.freeze({
  vocab_size: 1 << 22,
  hidden_size: 1 << 16,
  intermediate_size: 1 << 19,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 4096,
  max_position_embeddings: 1 << 24,
});

/** Why `value` is too large for `field`, or null. */
export function sizeLimitProblem(field: string, value: number): string | null {
  const max = CONFIG_SIZE_LIMITS[field];
  if (max === undefined || value <= max) return null;
  return `lorakit accepts at most ${max.toLocaleString("en-US")} (real models stay far below); is the config corrupt?`;
}
