// The model call of the serving engine: one step of the continuous batch, for sequences that
// each have their own KV cache (B = 1) and adapter: some decode one token, some prefill a chunk
// of their prompt (vLLM's chunked prefill), all in one `LlamaForCausalLM.step`. The LoRA layers
// are set to a mixed batch, so every linear layer runs once for all the tokens with each
// token's adapter (LoraLinear's grouped kernel, the SGMV of Punica / S-LoRA), and a sequence
// gets the same numbers it gets alone.
import { noGrad } from "../core/engine.js";
import { tidy } from "../core/memory.js";
import type { KVCache } from "../models/llama/kv-cache.js";
import type { LlamaForCausalLM } from "../models/llama/model.js";
import type { LoraLinear } from "../peft/lora/layer.js";

export interface StepRow {
  /** The tokens this step feeds the sequence: its newest token, or a chunk of its prompt. */
  tokens: readonly number[];
  cache: KVCache;
  /** Internal adapter name in the shared model, or BASE_ROW. */
  adapter: string;
}

/** Runs fn with each LoRA layer's batch rows assigned to adapters (a mixed batch). */
export function withRowAdapters<R>(layers: readonly LoraLinear[], names: readonly string[], fn: () => R): R {
  for (const l of layers) l.rowAdapters = names;
  try {
    return fn();
  } finally {
    for (const l of layers) l.rowAdapters = null;
  }
}

/**
 * One step for every row: the logits of each row's last token (N × V, a copy), each cache
 * advanced by its row's token count. The copy goes into `into` when it is large enough (a
 * view of its first N × V floats), so a server's steps need no fresh array each.
 */
export function batchStep(
  model: LlamaForCausalLM,
  layers: readonly LoraLinear[],
  rows: readonly StepRow[],
  into?: Float32Array,
): Float32Array {
  if (rows.length === 0) return new Float32Array(0);
  // The model's batch rows are tokens: each carries its sequence's adapter.
  const names = rows.flatMap((r) => r.tokens.map(() => r.adapter));
  let out: Float32Array | null = null;
  noGrad(() =>
    tidy(() => {
      const logits = withRowAdapters(layers, names, () =>
        model.step(
          rows.map((r) => r.tokens),
          rows.map((r) => r.cache),
        ),
      );
      const data = logits.data as Float32Array;
      out =
        into && into.length >= data.length ? into.subarray(0, data.length) : new Float32Array(data.length);
      out.set(data);
    }),
  );
  return out!;
}
