// The two model calls of the serving engine, for sequences that each have their own KV cache
// (B = 1) and adapter: the prefill of one prompt, and one decode step for every running
// sequence at once (LlamaForCausalLM.decode). Both set the LoRA layers to a mixed batch, so
// every linear layer runs once for all rows with each row's own adapter (LoraLinear's grouped
// kernel, the SGMV of Punica / S-LoRA), and a row gets the same numbers it gets alone.
import { noGrad } from "../core/engine.js";
import { tidy } from "../core/memory.js";
import { tensor } from "../core/tensor.js";
import type { KVCache } from "../models/llama/kv-cache.js";
import type { LlamaForCausalLM } from "../models/llama/model.js";
import type { LoraLinear } from "../peft/lora/layer.js";

export interface DecodeRow {
  /** The row's newest token (input of this step). */
  token: number;
  cache: KVCache;
  /** Internal adapter name in the shared model, or BASE_ROW. */
  adapter: string;
}

/** Runs fn with each LoRA layer's rows assigned to adapters (a mixed batch). */
export function withRowAdapters<R>(layers: readonly LoraLinear[], names: readonly string[], fn: () => R): R {
  for (const l of layers) l.rowAdapters = names;
  try {
    return fn();
  } finally {
    for (const l of layers) l.rowAdapters = null;
  }
}

/** Runs fn without a graph and with tensors freed after; returns a copy of the f32 result. */
function inference(fn: () => { data: unknown }): Float32Array {
  let out: Float32Array | null = null;
  noGrad(() =>
    tidy(() => {
      out = Float32Array.from(fn().data as Float32Array);
    }),
  );
  return out!;
}

/**
 * Prefill of one sequence: its whole prompt (1, T) through the model with its adapter,
 * appending to its cache; returns the last position's logits (V).
 */
export function prefill(
  model: LlamaForCausalLM,
  layers: readonly LoraLinear[],
  ids: readonly number[],
  cache: KVCache,
  adapter: string,
): Float32Array {
  return inference(() =>
    withRowAdapters(layers, [adapter], () =>
      model.forward(tensor([...ids], [1, ids.length], "i32"), { cache, lastOnly: true }),
    ),
  );
}

/** One decode step for every row: tokens (N) → logits (N, V), each cache advanced by one. */
export function batchedDecode(
  model: LlamaForCausalLM,
  layers: readonly LoraLinear[],
  rows: readonly DecodeRow[],
): Float32Array {
  if (rows.length === 0) return new Float32Array(0);
  return inference(() =>
    withRowAdapters(
      layers,
      rows.map((r) => r.adapter),
      () =>
        model.decode(
          rows.map((r) => r.token),
          rows.map((r) => r.cache),
        ),
    ),
  );
}
