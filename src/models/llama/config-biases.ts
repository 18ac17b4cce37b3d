// Which linear layers have a bias, per transformers' modeling files: llama reads
// attention_bias (q/k/v/o together) and mlp_bias; MistralAttention has no bias anywhere;
// Qwen2Attention has q/k/v biases and none on o_proj; neither has an MLP bias. A mistral or
// qwen2 config asking otherwise does not describe those models and is refused.
import type { LlamaModelType } from "./config.js";
import { fieldError } from "./config-error.js";
import type { ConfigFields } from "./config-fields.js";

export interface LlamaBiases {
  qkvBias: boolean;
  oProjBias: boolean;
  mlpBias: boolean;
}

export function readBiases(f: ConfigFields, mt: LlamaModelType): LlamaBiases {
  if (mt === "llama") {
    const attention = f.bool("attention_bias", false);
    return { qkvBias: attention, oProjBias: attention, mlpBias: f.bool("mlp_bias", false) };
  }
  for (const k of ["attention_bias", "mlp_bias"])
    if (f.has(k) && f.get(k) !== false && f.get(k) !== null)
      throw fieldError(
        k,
        f.get(k),
        `${mt} has no such option in transformers (${mt === "qwen2" ? "q/k/v always have a bias, o_proj and the MLP never" : "no layer has a bias"})`,
      );
  return { qkvBias: mt === "qwen2", oProjBias: false, mlpBias: false };
}
