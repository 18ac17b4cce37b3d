// Autoregressive generation with a KV cache: greedy at temperature 0, otherwise
// temperature / top-k / top-p sampling from a seeded generator; tokens stream out
// through a callback as they come.
import { noGrad } from "../core/engine.js";
import { ShapeError } from "../core/errors.js";
import { tidy } from "../core/memory.js";
import { Rng } from "../core/rng.js";
import type { Tensor } from "../core/tensor.js";
import { tensor } from "../core/tensor.js";
import type { Module } from "../nn/module.js";
import { KVCache, type KVDType } from "./llama/kv-cache.js";
import type { LlamaForCausalLM } from "./llama/model.js";
import { assertFiniteOutput } from "./non-finite.js";
import { sampleToken } from "./sampling.js";

export { sampleToken };

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 = greedy (the default). */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = off). */
  topP?: number;
  seed?: number;
  /** Stop after an EOS token (it is included in the output). Off by default. */
  stopAtEos?: boolean;
  eosTokenIds?: readonly number[];
  /** Called with each new token id as soon as it is chosen. */
  onToken?: (id: number) => void;
  /** Return true to stop early (e.g. the client went away). */
  shouldStop?: () => boolean;
  /** Filled in as generation runs: how long the prompt and the new tokens took. */
  stats?: GenerationStats;
  /** Storage of the KV cache: f32 (default) or bf16 (half the memory; attention reads it widened). */
  kvDtype?: KVDType;
}

/**
 * Where generation's time went. The prefill is the prompt's forward pass, which also gives
 * the first new token; every later token is one decode step.
 */
export interface GenerationStats {
  promptTokens: number;
  prefillSeconds: number;
  /** Decode steps run (new tokens after the first). */
  decodeSteps: number;
  decodeSeconds: number;
}

/** Prompt tokens per second of the prefill and new tokens per second of decoding (NaN when none ran). */
export function generationRates(s: GenerationStats): { prefill: number; decode: number } {
  return {
    prefill: s.prefillSeconds > 0 ? s.promptTokens / s.prefillSeconds : Number.NaN,
    decode: s.decodeSeconds > 0 ? s.decodeSteps / s.decodeSeconds : Number.NaN,
  };
}

/**
 * Greedy decoding's pick: the index of the largest logit (the first of equal ones), or −1 when
 * any logit is NaN or ±Inf. The finiteness check rides along in the same pass, so a
 * 151,936-wide vocabulary is read once per token instead of twice.
 */
export function greedyToken(logits: Float32Array): number {
  let best = 0;
  let top = logits[0];
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    // NaN − NaN and ±Inf − ±Inf are NaN: not 0.
    if (v - v !== 0) return -1;
    if (v > top) {
      top = v;
      best = i;
    }
  }
  return best;
}

/**
 * The next token from one row of logits, after checking that they are finite (a
 * NonFiniteError naming the bad weight otherwise, see assertFiniteOutput): `sampleToken`,
 * with greedy decoding's check and pick in one pass.
 */
export function nextToken(
  model: Module,
  what: string,
  logits: Float32Array,
  opts: GenerateOptions,
  rng: Rng,
): number {
  if ((opts.temperature ?? 0) <= 0) {
    const t = greedyToken(logits);
    if (t >= 0) return t;
  }
  assertFiniteOutput(model, what, logits);
  return sampleToken(logits, opts, rng);
}

/**
 * Generates up to `maxNewTokens` token ids after `promptIds`.
 *
 * @example
 * const ids = generate(model, tok.encode("Call me"), { maxNewTokens: 20 }); // greedy
 */
export function generate(
  model: LlamaForCausalLM,
  promptIds: readonly number[],
  opts: GenerateOptions,
): number[] {
  if (promptIds.length === 0) throw new ShapeError("generate: the prompt must hold at least one token");
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0)
    throw new ShapeError(`generate: maxNewTokens must be a non-negative integer, got ${opts.maxNewTokens}`);
  const cfg = model.config;
  const rng = new Rng(opts.seed ?? 0);
  const cfgEos =
    cfg.eosTokenId === null ? [] : typeof cfg.eosTokenId === "number" ? [cfg.eosTokenId] : cfg.eosTokenId;
  const eos = new Set(opts.eosTokenIds ?? cfgEos);
  const cache = new KVCache(
    cfg.numHiddenLayers,
    1,
    promptIds.length + opts.maxNewTokens,
    cfg.numKeyValueHeads,
    cfg.headDim,
    { dtype: opts.kvDtype ?? "f32" },
  );
  const stats = opts.stats;
  if (stats)
    Object.assign(stats, {
      promptTokens: promptIds.length,
      prefillSeconds: 0,
      decodeSteps: 0,
      decodeSeconds: 0,
    });
  // Inference: dropout off whatever mode the model was left in. The cache goes back to the
  // buffer pool at the end, whatever happens.
  try {
    return generateWith(model, cache, promptIds, opts, rng, eos);
  } finally {
    cache.dispose();
  }
}

function generateWith(
  model: LlamaForCausalLM,
  cache: KVCache,
  promptIds: readonly number[],
  opts: GenerateOptions,
  rng: Rng,
  eos: ReadonlySet<number>,
): number[] {
  const out: number[] = [];
  const stats = opts.stats;
  return model.withEval(() =>
    noGrad(() => {
      let input: number[] = [...promptIds];
      for (let step = 0; step < opts.maxNewTokens; step++) {
        if (opts.shouldStop?.()) break;
        const t0 = performance.now();
        const next = tidy(() => {
          const ids: Tensor = tensor(input, [1, input.length], "i32");
          const logits = model.forward(ids, { cache, lastOnly: true });
          return nextToken(
            model,
            `generate: the logits of new token ${step}`,
            logits.data as Float32Array,
            opts,
            rng,
          );
        });
        if (stats) {
          const dt = (performance.now() - t0) / 1000;
          if (step === 0) stats.prefillSeconds = dt;
          else {
            stats.decodeSeconds += dt;
            stats.decodeSteps++;
          }
        }
        out.push(next);
        opts.onToken?.(next);
        if (opts.stopAtEos && eos.has(next)) break;
        input = [next];
      }
      return out;
    }),
  );
}
