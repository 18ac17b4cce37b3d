// The shared vocabulary of the data pipeline: one training example, its loss mask, and the
// error every bad input raises. Browser-safe.
//
// Convention (used by every data-*.ts file and by the trainer):
//   An Example is a token sequence `ids` (length L) and a per-token `mask` (length L).
//   mask[i] = 1 means "token i is a training target": the model is trained to predict ids[i]
//   from ids[0..i-1]. mask[0] is always 0 (nothing predicts the first token of an example).
//   A batch row made from it has L-1 positions: inputs[t] = ids[t] and
//   targets[t] = mask[t+1] ? ids[t+1] : -100 (HF's ignore_index), i.e. inputs = ids[:-1],
//   targets = ids[1:] with the untrained ones set to -100. The loss is a plain cross-entropy
//   over positions with target ≠ -100; no further shifting happens anywhere.

import { LorakitError } from "../core/errors.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";

/** One training example. See the convention above: `mask[i]` = 1 ⇔ `ids[i]` is a target. */
export interface Example {
  readonly ids: Int32Array;
  readonly mask: Uint8Array;
}

/** Target value of a position that is not trained (PyTorch / HF ignore_index). */
export const IGNORE_INDEX = -100;

/** What the data pipeline needs of a tokenizer (a lorakit `Tokenizer` has all of it). */
export type DataTokenizer = Pick<
  Tokenizer,
  "encode" | "applyChatTemplate" | "bosTokenId" | "eosTokenId" | "padTokenId"
>;

/**
 * Bad training data: not JSON, missing or mistyped fields, empty completions, an empty file.
 * `source` is the file (or the name given for in-memory data); `line` is 1-based when known.
 */
export class DataError extends LorakitError {
  readonly source: string | undefined;
  readonly line: number | undefined;
  constructor(message: string, options?: { cause?: unknown; source?: string; line?: number }) {
    super(message, options);
    this.source = options?.source;
    this.line = options?.line;
  }
}

/** The pad id a batch uses for a tokenizer: its pad token, else EOS, else 0 (never trained on). */
export function padIdFor(tokenizer: Pick<Tokenizer, "padTokenId" | "eosTokenId">): number {
  return tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0;
}

/** Number of trained targets of an example (its mask's ones, mask[0] excluded). */
export function countTargets(ex: Example): number {
  let n = 0;
  for (let i = 1; i < ex.mask.length; i++) n += ex.mask[i];
  return n;
}

/** An example from plain arrays; mask[0] is forced to 0. */
export function makeExample(ids: ArrayLike<number>, mask: ArrayLike<number>): Example {
  if (ids.length !== mask.length) {
    throw new DataError(`makeExample: ids has ${ids.length} tokens but mask has ${mask.length} entries`);
  }
  const ex = { ids: Int32Array.from(ids), mask: Uint8Array.from(mask, (m) => (m ? 1 : 0)) };
  if (ex.mask.length > 0) ex.mask[0] = 0;
  return ex;
}

/**
 * Cut a sequence into windows of `size` tokens that overlap by one token, so every token after
 * the first is a target of exactly one window (the first token of a window was the last target
 * of the previous one). A sequence of ≤ size tokens stays whole; windows with < 2 tokens are
 * never made.
 */
export function cutWindows(ex: Example, size: number): Example[] {
  const n = ex.ids.length;
  if (n <= size) return [ex];
  const out: Example[] = [];
  for (let start = 0; start < n - 1; start += size - 1) {
    const end = Math.min(start + size, n);
    const mask = ex.mask.slice(start, end);
    mask[0] = 0;
    out.push({ ids: ex.ids.slice(start, end), mask });
  }
  return out;
}
