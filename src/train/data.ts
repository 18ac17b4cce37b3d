// The training data pipeline: text or JSON records → examples (token ids + loss mask) →
// train/valid split → optional packing → batches (data-batcher.ts). Browser-safe; reading
// files is in data-node.ts.
//
// Conventions (details in data-types.ts):
//   - An Example of L tokens gives L-1 positions: inputs = ids[:-1], targets = ids[1:], with
//     targets -100 where mask is 0. mask[0] is always 0.
//   - Plain text: tokenised as is (nothing prepended — the same tokens `lorakit eval` scores),
//     cut into windows of seqLen+1 tokens that overlap by one, so every token but the very
//     first is predicted exactly once per epoch. A text shorter than a window is one shorter
//     example; any text of ≥ 2 tokens trains, repeating as many epochs as the steps need.
//   - Records: see data-records.ts. Loss only on completions / outputs / assistant turns unless
//     trainOnPrompt. Records longer than seqLen+1 tokens are cut (right truncation; "text"
//     records are split into windows instead); both are counted in the stats.
//   - Packing: examples laid end to end into rows of up to seqLen+1 tokens; the first token of
//     each example is never a target, so no label crosses from one example into the next.
//     Attention still spans the examples of a pack (positions are not reset), as with HF's
//     simple packing (ConstantLengthDataset / group_texts); each record ends in EOS (or the
//     template's end of turn) so the model learns where an example stops.

import { Rng } from "../core/rng.js";
import { parseRecords, type RecordFormat, type RecordOptions, tokenizeRecord } from "./data-records.js";
import {
  countTargets,
  cutWindows,
  DataError,
  type DataTokenizer,
  type Example,
  makeExample,
} from "./data-types.js";

export { type Batch, Batcher, type BatcherOptions, type BatcherState, evalBatches } from "./data-batcher.js";
export {
  ALPACA_PROMPT,
  ALPACA_PROMPT_NO_INPUT,
  detectFormat,
  type ParsedRecord,
  parseRecords,
  RECORD_FORMATS,
  type RecordFormat,
  type RecordLocation,
  type RecordOptions,
  type TokenizedRecord,
  tokenizeRecord,
} from "./data-records.js";
export {
  countTargets,
  cutWindows,
  DataError,
  type DataTokenizer,
  type Example,
  IGNORE_INDEX,
  makeExample,
  padIdFor,
} from "./data-types.js";

export interface DatasetOptions extends RecordOptions {
  /** Positions per row (T); an example holds at most seqLen+1 tokens. */
  seqLen: number;
  /** Name used in error messages (the file path). Default "<data>". */
  source?: string;
  /** Plain text given as several documents: put EOS between them. Default true. */
  eosBetweenDocuments?: boolean;
}

export interface DataStats {
  /** JSON records read (0 for plain text). */
  records: number;
  /** Examples made (windows, records, record pieces). */
  examples: number;
  /** Tokens over all examples. */
  tokens: number;
  /** Trained targets over all examples. */
  targets: number;
  /** Records cut to seqLen+1 tokens (tokens past it dropped). */
  truncated: number;
  /** "text" records longer than seqLen+1 tokens, split into windows instead. */
  split: number;
  /** Records left with no trained token after truncation (prompt filled the window): dropped. */
  dropped: number;
  /** Records per format. */
  formats: Record<RecordFormat, number>;
}

export interface Dataset {
  /** "text" (plain text windows) or "records" (JSONL / JSON). */
  kind: "text" | "records";
  source: string;
  examples: Example[];
  stats: DataStats;
}

function checkSeqLen(seqLen: number): void {
  if (!Number.isInteger(seqLen) || seqLen < 1) {
    throw new DataError(`data: seqLen must be a positive integer, got ${seqLen}`);
  }
}

function emptyStats(): DataStats {
  return {
    records: 0,
    examples: 0,
    tokens: 0,
    targets: 0,
    truncated: 0,
    split: 0,
    dropped: 0,
    formats: { text: 0, completion: 0, alpaca: 0, chat: 0 },
  };
}

function finish(kind: Dataset["kind"], source: string, examples: Example[], stats: DataStats): Dataset {
  stats.examples = examples.length;
  for (const ex of examples) {
    stats.tokens += ex.ids.length;
    stats.targets += countTargets(ex);
  }
  return { kind, source, examples, stats };
}

/**
 * Plain text → windows of seqLen+1 tokens overlapping by one token (every token after the
 * first is a target exactly once). Several documents are joined with EOS between them.
 *
 * @example
 * const ds = textDataset(readFileSync("corpus.txt", "utf8"), tok, { seqLen: 128, source: "corpus.txt" });
 * // ds.examples[i].ids.length === 129 except possibly the last
 */
export function textDataset(
  text: string | readonly string[],
  tokenizer: DataTokenizer,
  options: DatasetOptions,
): Dataset {
  checkSeqLen(options.seqLen);
  const source = options.source ?? "<data>";
  const docs = typeof text === "string" ? [text] : text;
  const eos = (options.eosBetweenDocuments ?? true) ? tokenizer.eosTokenId : null;
  const ids: number[] = [];
  for (let d = 0; d < docs.length; d++) {
    if (d > 0 && eos !== null && ids.length > 0) ids.push(eos);
    const part = tokenizer.encode(docs[d]);
    for (const id of part) ids.push(id);
  }
  if (ids.length === 0) {
    throw new DataError(`${source}: the text is empty (0 tokens); give a file with some text to train on`, {
      source,
    });
  }
  if (ids.length < 2) {
    throw new DataError(
      `${source}: the text has only 1 token; training needs at least 2 (one to read, one to predict)`,
      { source },
    );
  }
  const whole = makeExample(ids, new Array<number>(ids.length).fill(1));
  return finish("text", source, cutWindows(whole, options.seqLen + 1), emptyStats());
}

/**
 * JSON records (JSONL text, a JSON array text, or already-parsed records) → one example per
 * record (see data-records.ts for formats and masks).
 *
 * @example
 * const ds = recordsDataset(jsonlText, tok, { seqLen: 512, source: "train.jsonl" });
 */
export function recordsDataset(
  input: string | readonly unknown[],
  tokenizer: DataTokenizer,
  options: DatasetOptions,
): Dataset {
  checkSeqLen(options.seqLen);
  const source = options.source ?? "<data>";
  const parsed =
    typeof input === "string"
      ? parseRecords(input, source)
      : input.map((record, i) => ({ record, loc: { source, index: i + 1 } }));
  if (parsed.length === 0) {
    throw new DataError(
      `${source}: no records (the data is empty or only blank lines); write one JSON object per line`,
      { source },
    );
  }
  const size = options.seqLen + 1;
  const stats = emptyStats();
  const examples: Example[] = [];
  for (const { record, loc } of parsed) {
    const r = tokenizeRecord(record, tokenizer, loc, options);
    stats.records++;
    stats.formats[r.format]++;
    const ex = makeExample(r.ids, r.mask);
    if (ex.ids.length <= size) {
      if (countTargets(ex) > 0) examples.push(ex);
      else stats.dropped++;
    } else if (r.format === "text") {
      stats.split++;
      examples.push(...cutWindows(ex, size));
    } else {
      stats.truncated++;
      const cut = { ids: ex.ids.slice(0, size), mask: ex.mask.slice(0, size) };
      if (countTargets(cut) > 0) examples.push(cut);
      else stats.dropped++;
    }
  }
  if (examples.length === 0) {
    throw new DataError(
      `${source}: all ${stats.records} records lost their trained tokens to truncation at seqLen ${options.seqLen}; ` +
        "raise --seq-len or shorten the prompts",
      { source },
    );
  }
  return finish("records", source, examples, stats);
}

/**
 * Lay examples end to end into rows of at most seqLen+1 tokens, in order (greedy: a new row
 * starts when the next example does not fit). The first token of every example is not a target,
 * so no label crosses an example boundary. Examples longer than a row are cut.
 */
export function packExamples(examples: readonly Example[], seqLen: number): Example[] {
  checkSeqLen(seqLen);
  const cap = seqLen + 1;
  const out: Example[] = [];
  let ids = new Int32Array(cap);
  let mask = new Uint8Array(cap);
  let used = 0;
  const flush = () => {
    if (used > 0) out.push({ ids: ids.slice(0, used), mask: mask.slice(0, used) });
    ids = new Int32Array(cap);
    mask = new Uint8Array(cap);
    used = 0;
  };
  for (const ex of examples) {
    const n = Math.min(ex.ids.length, cap);
    if (n === 0) continue;
    if (used + n > cap) flush();
    ids.set(ex.ids.subarray(0, n), used);
    mask.set(ex.mask.subarray(0, n), used);
    mask[used] = 0;
    used += n;
  }
  flush();
  return out;
}

/**
 * Hold out round(n·validFraction) examples, chosen by a seeded shuffle (at least one when the
 * fraction is > 0, and at least one left for training). Both parts keep the original order.
 */
export function splitExamples(
  examples: readonly Example[],
  validFraction: number,
  seed = 0,
): { train: Example[]; valid: Example[] } {
  if (!(validFraction >= 0 && validFraction < 1)) {
    throw new DataError(`splitExamples: validFraction must be in [0, 1), got ${validFraction}`);
  }
  const n = examples.length;
  if (validFraction === 0 || n === 0) return { train: [...examples], valid: [] };
  if (n < 2) {
    throw new DataError(
      `splitExamples: cannot hold out a validation set from ${n} example; ` +
        "use more data, a separate validation file, or validFraction 0",
    );
  }
  const k = Math.min(n - 1, Math.max(1, Math.round(n * validFraction)));
  const order = new Rng(seed).shuffle(Array.from({ length: n }, (_, i) => i));
  const held = new Set(order.slice(0, k));
  const train: Example[] = [];
  const valid: Example[] = [];
  for (let i = 0; i < n; i++) (held.has(i) ? valid : train).push(examples[i]);
  return { train, valid };
}

export interface SplitOptions {
  seqLen: number;
  /** A separate validation set; when given, validFraction is ignored. */
  valid?: Dataset;
  /** Fraction of the training examples held out when there is no separate set. Default 0. */
  validFraction?: number;
  /** Seed of the split. Default 0. */
  seed?: number;
  /** Pack short examples into seqLen rows (after the split, each part on its own). Default false. */
  pack?: boolean;
}

/**
 * The examples the trainer and evaluation use: split (or the separate validation set), then
 * packed if asked.
 *
 * @example
 * const { train, valid } = prepareSplits(ds, { seqLen: 256, validFraction: 0.05, seed: 1, pack: true });
 */
export function prepareSplits(data: Dataset, options: SplitOptions): { train: Example[]; valid: Example[] } {
  const parts =
    options.valid !== undefined
      ? { train: [...data.examples], valid: [...options.valid.examples] }
      : splitExamples(data.examples, options.validFraction ?? 0, options.seed ?? 0);
  if (!options.pack) return parts;
  return {
    train: packExamples(parts.train, options.seqLen),
    valid: packExamples(parts.valid, options.seqLen),
  };
}
