// Examples → padded batches, shuffled each epoch by a seeded generator, repeating forever.
// Browser-safe.
//
// Batch layout (B rows, T positions, row-major): inputs[b·T + t] = ids[t],
// targets[b·T + t] = mask[t+1] ? ids[t+1] : -100 (see data-types.ts). Rows are padded on the
// right up to the longest row of the batch (or to seqLen with padToSeqLen) with `padId` as
// input and -100 as target; with a causal model right padding never changes the real positions.

import { Rng } from "../core/rng.js";
import { DataError, type Example, IGNORE_INDEX } from "./data-types.js";

export interface Batch {
  /** (B, T) token ids. */
  inputs: Int32Array;
  /** (B, T) next-token targets, -100 where not trained (prompt, pack boundary, padding). */
  targets: Int32Array;
  /** B */
  batchSize: number;
  /** T */
  seqLen: number;
  /** Real (unpadded) positions of each row. */
  lengths: Int32Array;
  /** Targets that are not -100 (the tokens the loss averages over). */
  tokens: number;
  /** Epoch (0-based pass over the data) of the batch's first row. */
  epoch: number;
}

export interface BatcherOptions {
  batchSize: number;
  /** T at most: a row holds seqLen positions (an example of up to seqLen+1 tokens); longer ones are cut. */
  seqLen: number;
  /** Seed of the per-epoch shuffles. Default 0. */
  seed?: number;
  /** Shuffle each epoch. Default true (false: the examples in order, every epoch). */
  shuffle?: boolean;
  /** Padding input id (see padIdFor). Default 0; it is never a target. */
  padId?: number;
  /** Always T = seqLen (fixed shapes) instead of the longest row in the batch. Default false. */
  padToSeqLen?: boolean;
}

/** A Batcher's position: enough to replay exactly the batches that follow. JSON-serialisable. */
export interface BatcherState {
  /** Number of examples the state was taken with (checked on restore). */
  size: number;
  epoch: number;
  /** Next example within the epoch's order. */
  index: number;
  /** The generator's state just before this epoch's shuffle. */
  epochRng: { s: number[]; spare: number | null };
}

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1)
    throw new DataError(`Batcher: ${name} must be a positive integer, got ${v}`);
}

/** Fill one (B, T) batch from `rows` (each cut to seqLen+1 tokens). */
function makeBatch(
  rows: readonly Example[],
  opts: { seqLen: number; padId: number; padToSeqLen: boolean },
  epoch: number,
): Batch {
  const B = rows.length;
  const lengths = new Int32Array(B);
  let T = 1;
  for (let b = 0; b < B; b++) {
    lengths[b] = Math.max(0, Math.min(rows[b].ids.length, opts.seqLen + 1) - 1);
    if (lengths[b] > T) T = lengths[b];
  }
  if (opts.padToSeqLen) T = opts.seqLen;
  const inputs = new Int32Array(B * T).fill(opts.padId);
  const targets = new Int32Array(B * T).fill(IGNORE_INDEX);
  let tokens = 0;
  for (let b = 0; b < B; b++) {
    const { ids, mask } = rows[b];
    const o = b * T;
    for (let t = 0; t < lengths[b]; t++) {
      inputs[o + t] = ids[t];
      if (mask[t + 1]) {
        targets[o + t] = ids[t + 1];
        tokens++;
      }
    }
  }
  return { inputs, targets, batchSize: B, seqLen: T, lengths, tokens, epoch };
}

/**
 * Endless batches over a fixed list of examples. Each epoch visits every example once in an
 * order shuffled by the seeded generator; a batch that runs past the end of an epoch is filled
 * from the next one, so any number of steps works, even with fewer examples than batchSize.
 * getState()/setState() save and restore the position exactly (for resumable checkpoints).
 *
 * @example
 * const batcher = new Batcher(train, { batchSize: 8, seqLen: 256, seed: 42, padId: padIdFor(tok) });
 * const batch = batcher.next(); // batch.inputs, batch.targets: Int32Array (8 × T)
 * const saved = batcher.getState(); // JSON-safe; new Batcher(train, same options).setState(saved) resumes
 */
export class Batcher {
  readonly batchSize: number;
  readonly seqLen: number;
  private readonly examples: readonly Example[];
  private readonly shuffle: boolean;
  private readonly padId: number;
  private readonly padToSeqLen: boolean;
  private readonly rng: Rng;
  private order: number[] = [];
  private epochRng: { s: number[]; spare: number | null };
  private epochIndex = 0;
  private index = 0;

  constructor(examples: readonly Example[], options: BatcherOptions) {
    if (examples.length === 0) throw new DataError("Batcher: no examples to make batches from");
    checkPositiveInt("batchSize", options.batchSize);
    checkPositiveInt("seqLen", options.seqLen);
    this.examples = examples;
    this.batchSize = options.batchSize;
    this.seqLen = options.seqLen;
    this.shuffle = options.shuffle ?? true;
    this.padId = options.padId ?? 0;
    this.padToSeqLen = options.padToSeqLen ?? false;
    this.rng = new Rng(options.seed ?? 0);
    this.epochRng = this.rng.getState();
    this.startEpoch();
  }

  /** Full passes completed so far (the epoch the next example belongs to). */
  get epoch(): number {
    return this.epochIndex;
  }

  /** Batches in one pass over the data (the last one completed from the next epoch). */
  get batchesPerEpoch(): number {
    return Math.ceil(this.examples.length / this.batchSize);
  }

  private startEpoch(): void {
    this.epochRng = this.rng.getState();
    this.order = Array.from({ length: this.examples.length }, (_, i) => i);
    if (this.shuffle) this.rng.shuffle(this.order);
    this.index = 0;
  }

  next(): Batch {
    const epoch = this.epochIndex;
    const rows: Example[] = [];
    for (let b = 0; b < this.batchSize; b++) {
      if (this.index >= this.order.length) {
        this.epochIndex++;
        this.startEpoch();
      }
      rows.push(this.examples[this.order[this.index++]]);
    }
    return makeBatch(rows, { seqLen: this.seqLen, padId: this.padId, padToSeqLen: this.padToSeqLen }, epoch);
  }

  getState(): BatcherState {
    return {
      size: this.examples.length,
      epoch: this.epochIndex,
      index: this.index,
      epochRng: { s: [...this.epochRng.s], spare: this.epochRng.spare },
    };
  }

  setState(state: BatcherState): void {
    if (state.size !== this.examples.length) {
      throw new DataError(
        `Batcher.setState: the state was saved with ${state.size} examples but this data has ` +
          `${this.examples.length}; resume with the same data, seq-len and packing options`,
      );
    }
    if (!Number.isInteger(state.index) || state.index < 0 || state.index > state.size) {
      throw new DataError(`Batcher.setState: index ${state.index} is outside [0, ${state.size}]`);
    }
    this.rng.setState(state.epochRng);
    this.startEpoch();
    this.epochIndex = state.epoch;
    this.index = state.index;
  }
}

/**
 * Every example exactly once, in order, in batches of batchSize (the last one smaller): for
 * evaluation. Same layout as Batcher's batches.
 */
export function evalBatches(
  examples: readonly Example[],
  options: { batchSize: number; seqLen: number; padId?: number; padToSeqLen?: boolean },
): Batch[] {
  checkPositiveInt("batchSize", options.batchSize);
  checkPositiveInt("seqLen", options.seqLen);
  const out: Batch[] = [];
  const opts = {
    seqLen: options.seqLen,
    padId: options.padId ?? 0,
    padToSeqLen: options.padToSeqLen ?? false,
  };
  for (let i = 0; i < examples.length; i += options.batchSize) {
    out.push(makeBatch(examples.slice(i, i + options.batchSize), opts, 0));
  }
  return out;
}
