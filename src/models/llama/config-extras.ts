// The rest of a config.json: the checkpoint's dtype (transformers 5 `dtype`, else 4's
// `torch_dtype`), and every key lorakit does not interpret, kept so that
// llamaConfigToJson writes it back (architectures, quantization_config, ...).
import { fieldError } from "./config-error.js";
import type { ConfigFields } from "./config-fields.js";

/** The keys parseLlamaConfig reads; everything else goes to `extra`. */
const KNOWN = new Set([
  "model_type",
  "vocab_size",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "rms_norm_eps",
  "rope_theta",
  "rope_scaling",
  "rope_parameters",
  "max_position_embeddings",
  "tie_word_embeddings",
  "attention_bias",
  "mlp_bias",
  "hidden_act",
  "bos_token_id",
  "eos_token_id",
  "pad_token_id",
  "sliding_window",
  "use_sliding_window",
  "max_window_layers",
  "layer_types",
  "torch_dtype",
  "dtype",
]);

/** The checkpoint's dtype name ("bfloat16", ...), null when neither key is given. */
export function readTorchDtype(f: ConfigFields): string | null {
  for (const k of ["dtype", "torch_dtype"]) {
    if (f.given(k)) {
      const v = f.get(k);
      if (typeof v !== "string") throw fieldError(k, v, 'expected a dtype name such as "bfloat16"');
      return v;
    }
  }
  return null;
}

/** The keys lorakit does not interpret, with their values as given. */
export function extraKeys(f: ConfigFields): Record<string, unknown> {
  const extra: Record<string, unknown> = {};
  for (const k of Object.keys(f.json)) if (!KNOWN.has(k)) extra[k] = f.json[k];
  return extra;
}
