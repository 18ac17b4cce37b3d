// Byte-level BPE training (GPT-2 / Llama-3 style) that writes a Hugging Face `tokenizer.json`
// and a matching `tokenizer_config.json`. Browser-safe: no node imports.
//
// Layout of the files written (the Llama-3 layout):
//   normalizer     null
//   pre_tokenizer  Sequence[ Split(Regex <pattern>, Isolated), ByteLevel(use_regex=false) ]
//   model          BPE: ids 0..255 are the 256 bytes (in byte order, as their GPT-2 unicode
//                  characters), then one id per learned merge; merges as "a b" strings
//   added_tokens   the special tokens, ids right after the BPE vocab
//   post_processor TemplateProcessing: `<|begin_of_text|> $A` — so add_special_tokens=true
//                  prepends BOS and add_special_tokens=false adds nothing
//   decoder        ByteLevel
//
// Training: pre-tokenize with the same regex, count distinct pieces, then repeatedly merge the
// most frequent adjacent pair. Pair counts are updated incrementally for just the words that
// contain the merged pair, and the best pair comes from a lazy max-heap (stale entries are
// skipped when popped), so a merge costs O(words touched), not O(corpus).
// Ties between equally frequent pairs go to the smaller (left id, right id), as in HF's
// BpeTrainer, so the same corpus always gives the same file.

import { TokenizerError } from "./errors.js";

export const BOS_TOKEN = "<|begin_of_text|>";
export const EOS_TOKEN = "<|end_of_text|>";
export const PAD_TOKEN = "<|pad|>";
export const START_HEADER_TOKEN = "<|start_header_id|>";
export const END_HEADER_TOKEN = "<|end_header_id|>";
export const EOT_TOKEN = "<|eot_id|>";

/** Special tokens every lorakit-trained tokenizer has, in id order after the BPE vocab. */
export const DEFAULT_SPECIAL_TOKENS: readonly string[] = [
  BOS_TOKEN,
  EOS_TOKEN,
  PAD_TOKEN,
  START_HEADER_TOKEN,
  END_HEADER_TOKEN,
  EOT_TOKEN,
];

/**
 * The split regexes as written into tokenizer.json (Oniguruma syntax, read by HF's Rust
 * tokenizers and translated by Tokenizers.js).
 */
export const SPLIT_REGEX = {
  llama3:
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  gpt2: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
} as const;
export type SplitPattern = keyof typeof SPLIT_REGEX;

// The same regexes in JavaScript. Oniguruma's `\s` is Unicode White_Space (JS `\s` differs on
// U+0085 and U+FEFF), and `(?i:...)` is spelled out; this is what Tokenizers.js compiles too.
const JS_SPLIT_REGEX: Record<SplitPattern, RegExp> = {
  llama3:
    /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\p{White_Space}\p{L}\p{N}]+[\r\n]*|\p{White_Space}*[\r\n]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu,
  gpt2: /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu,
};

/** GPT-2's byte → printable-unicode-character table (bytes_to_unicode in encoder.py). */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const isPrintable = new Set(printable);
  const table = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(isPrintable.has(b) ? b : 256 + n++);
  }
  return table;
}

const BYTE_CHARS = bytesToUnicode();
const utf8 = new TextEncoder();

/** Byte-level form of a piece of text: each UTF-8 byte as its GPT-2 unicode character. */
export function byteLevelEncode(text: string): string {
  let out = "";
  for (const b of utf8.encode(text)) out += BYTE_CHARS[b];
  return out;
}

/**
 * Split text as the Split pre-tokenizer with behavior "Isolated" does: every match is a piece
 * and so is every gap between matches (the regexes above leave none, but HF keeps them).
 */
export function splitPieces(text: string, pattern: SplitPattern = "llama3"): string[] {
  const re = JS_SPLIT_REGEX[pattern];
  const out: string[] = [];
  let prev = 0;
  for (const m of text.matchAll(re)) {
    const start = m.index ?? 0;
    if (start > prev) out.push(text.slice(prev, start));
    if (m[0].length > 0) out.push(m[0]);
    prev = start + m[0].length;
  }
  if (prev < text.length) out.push(text.slice(prev));
  return out;
}

// ---- tokenizer.json / tokenizer_config.json shapes (the parts lorakit writes) ----

export interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export interface BpeModelJson {
  type: "BPE";
  dropout: null;
  unk_token: null;
  continuing_subword_prefix: null;
  end_of_word_suffix: null;
  fuse_unk: boolean;
  byte_fallback: boolean;
  ignore_merges: boolean;
  vocab: Record<string, number>;
  merges: string[];
}

export interface TokenizerJson {
  version: "1.0";
  truncation: null;
  padding: null;
  added_tokens: AddedTokenJson[];
  normalizer: null;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  model: BpeModelJson;
}

export interface TokenizerConfigJson {
  added_tokens_decoder: Record<string, Omit<AddedTokenJson, "id">>;
  bos_token: string;
  eos_token: string;
  pad_token: string;
  chat_template: string;
  clean_up_tokenization_spaces: boolean;
  model_input_names: string[];
  model_max_length: number;
  tokenizer_class: "PreTrainedTokenizerFast";
}

/**
 * Llama-3-style chat template: `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`
 * per message after one BOS; content is not trimmed, so rendering is exact.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{{- bos_token }}" +
  "{%- for message in messages %}" +
  "{%- if message['role'] not in ['system', 'user', 'assistant'] %}" +
  "{{- raise_exception('Unknown chat role: ' + message['role'] + ' (expected system, user or assistant)') }}" +
  "{%- endif %}" +
  `{{- '${START_HEADER_TOKEN}' + message['role'] + '${END_HEADER_TOKEN}\\n\\n' + message['content'] + '${EOT_TOKEN}' }}` +
  "{%- endfor %}" +
  `{%- if add_generation_prompt %}{{- '${START_HEADER_TOKEN}assistant${END_HEADER_TOKEN}\\n\\n' }}{%- endif %}`;

export interface TrainBpeOptions {
  /** Total vocabulary size: 256 bytes + merges + special tokens. */
  vocabSize: number;
  /** Split regex used before BPE. Default "llama3". */
  pattern?: SplitPattern;
  /** Extra special tokens, appended after DEFAULT_SPECIAL_TOKENS. */
  extraSpecialTokens?: readonly string[];
  /** Pairs seen fewer times than this are never merged. Default 1. */
  minFrequency?: number;
  /** Written to tokenizer_config.json. Default 2048. */
  modelMaxLength?: number;
  /** Jinja chat template for tokenizer_config.json. Default DEFAULT_CHAT_TEMPLATE. */
  chatTemplate?: string;
}

export interface TrainedBpe {
  tokenizerJson: TokenizerJson;
  tokenizerConfig: TokenizerConfigJson;
  stats: { pieces: number; distinctPieces: number; merges: number; seconds: number };
}

const PAIR_SHIFT = 2 ** 20; // pair key = left * 2^20 + right; ids stay below 2^20
const MAX_VOCAB = PAIR_SHIFT;

interface HeapEntry {
  key: number;
  count: number;
}

// Max-heap on count; on equal counts the smaller key (left id, then right id) first.
class PairHeap {
  private items: HeapEntry[] = [];
  get size(): number {
    return this.items.length;
  }
  private before(x: HeapEntry, y: HeapEntry): boolean {
    return x.count > y.count || (x.count === y.count && x.key < y.key);
  }
  push(e: HeapEntry): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): HeapEntry | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.before(a[l], a[m])) m = l;
        if (r < a.length && this.before(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Train a byte-level BPE tokenizer on `corpus` (one string or many documents). */
export function trainBpeTokenizer(corpus: string | Iterable<string>, options: TrainBpeOptions): TrainedBpe {
  const t0 = typeof performance !== "undefined" ? performance.now() : Date.now();
  const pattern = options.pattern ?? "llama3";
  if (!(pattern in SPLIT_REGEX)) {
    throw new TokenizerError(
      `trainBpeTokenizer: unknown pattern ${JSON.stringify(pattern)}; use "llama3" or "gpt2"`,
    );
  }
  const specials = [...DEFAULT_SPECIAL_TOKENS, ...(options.extraSpecialTokens ?? [])];
  if (new Set(specials).size !== specials.length) {
    throw new TokenizerError(`trainBpeTokenizer: special tokens repeat: ${JSON.stringify(specials)}`);
  }
  const vocabSize = options.vocabSize;
  const minVocab = 256 + specials.length;
  if (!Number.isInteger(vocabSize) || vocabSize < minVocab || vocabSize > MAX_VOCAB) {
    throw new TokenizerError(
      `trainBpeTokenizer: vocabSize must be an integer in [${minVocab}, ${MAX_VOCAB}] ` +
        `(256 bytes + ${specials.length} special tokens + merges), got ${vocabSize}`,
    );
  }
  const minFrequency = Math.max(1, options.minFrequency ?? 1);
  const bpeSize = vocabSize - specials.length;

  // 1. Pre-tokenize and count distinct pieces. Special tokens in the text are cut out first,
  //    as the tokenizer does when encoding.
  const specialRe = new RegExp(
    [...specials]
      .sort((a, b) => b.length - a.length)
      .map(escapeRegExp)
      .join("|"),
    "g",
  );
  const pieceCounts = new Map<string, number>();
  let pieces = 0;
  const docs = typeof corpus === "string" ? [corpus] : corpus;
  for (const doc of docs) {
    for (const section of doc.split(specialRe)) {
      if (section.length === 0) continue;
      for (const p of splitPieces(section, pattern)) {
        pieceCounts.set(p, (pieceCounts.get(p) ?? 0) + 1);
        pieces++;
      }
    }
  }

  // 2. Words as symbol-id arrays (initially their UTF-8 bytes).
  const words: Int32Array[] = [];
  const freq: number[] = [];
  for (const [p, c] of pieceCounts) {
    const bytes = utf8.encode(p);
    if (bytes.length === 0) continue;
    words.push(Int32Array.from(bytes));
    freq.push(c);
  }

  const tokenStr: string[] = BYTE_CHARS.slice();
  const tokenId = new Map<string, number>(tokenStr.map((s, i) => [s, i]));

  // 3. Initial pair counts and where each pair occurs.
  const pairCount = new Map<number, number>();
  const pairWhere = new Map<number, Set<number>>();
  for (let w = 0; w < words.length; w++) {
    const sym = words[w];
    const f = freq[w];
    for (let j = 0; j + 1 < sym.length; j++) {
      const k = sym[j] * PAIR_SHIFT + sym[j + 1];
      pairCount.set(k, (pairCount.get(k) ?? 0) + f);
      let s = pairWhere.get(k);
      if (s === undefined) pairWhere.set(k, (s = new Set()));
      s.add(w);
    }
  }
  const heap = new PairHeap();
  for (const [key, count] of pairCount) heap.push({ key, count });

  // 4. Merge loop.
  const merges: [number, number][] = [];
  const delta = new Map<number, number>();
  while (tokenStr.length < bpeSize) {
    let best: HeapEntry | undefined;
    while (heap.size > 0) {
      const e = heap.pop()!;
      if (pairCount.get(e.key) === e.count) {
        best = e;
        break;
      }
    }
    if (best === undefined || best.count < minFrequency) {
      throw new TokenizerError(
        `trainBpeTokenizer: the corpus ran out of pairs to merge at ${tokenStr.length + specials.length} ` +
          `tokens (asked for vocabSize ${vocabSize}, minFrequency ${minFrequency}, ${pieces} pieces, ` +
          `${words.length} distinct). Use more text or a smaller vocabSize.`,
      );
    }
    const a = Math.floor(best.key / PAIR_SHIFT);
    const b = best.key - a * PAIR_SHIFT;
    const merged = tokenStr[a] + tokenStr[b];
    let id = tokenId.get(merged);
    if (id === undefined) {
      id = tokenStr.length;
      tokenStr.push(merged);
      tokenId.set(merged, id);
    }
    merges.push([a, b]);

    delta.clear();
    for (const w of pairWhere.get(best.key) ?? []) {
      const sym = words[w];
      let hit = false;
      for (let j = 0; j + 1 < sym.length; j++) {
        if (sym[j] === a && sym[j + 1] === b) {
          hit = true;
          break;
        }
      }
      if (!hit) continue; // stale entry: an earlier merge already consumed this pair here
      const next: number[] = [];
      for (let j = 0; j < sym.length; ) {
        if (j + 1 < sym.length && sym[j] === a && sym[j + 1] === b) {
          next.push(id);
          j += 2;
        } else {
          next.push(sym[j]);
          j++;
        }
      }
      const f = freq[w];
      for (let j = 0; j + 1 < sym.length; j++) {
        const k = sym[j] * PAIR_SHIFT + sym[j + 1];
        delta.set(k, (delta.get(k) ?? 0) - f);
      }
      for (let j = 0; j + 1 < next.length; j++) {
        const k = next[j] * PAIR_SHIFT + next[j + 1];
        delta.set(k, (delta.get(k) ?? 0) + f);
        let s = pairWhere.get(k);
        if (s === undefined) pairWhere.set(k, (s = new Set()));
        s.add(w);
      }
      words[w] = Int32Array.from(next);
    }
    pairWhere.delete(best.key);
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const c = (pairCount.get(k) ?? 0) + d;
      if (c > 0) {
        pairCount.set(k, c);
        heap.push({ key: k, count: c });
      } else {
        pairCount.delete(k);
      }
    }
    pairCount.delete(best.key);
  }

  // 5. Files.
  // fromEntries defines own properties, so even a token spelled "__proto__" is kept.
  const vocab: Record<string, number> = Object.fromEntries(tokenStr.map((s, i) => [s, i]));
  const addedTokens: AddedTokenJson[] = specials.map((content, i) => ({
    id: tokenStr.length + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const bosId = addedTokens[0].id;
  const tokenizerJson: TokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: SPLIT_REGEX[pattern] }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: BOS_TOKEN, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: BOS_TOKEN, type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: BOS_TOKEN, type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { [BOS_TOKEN]: { id: BOS_TOKEN, ids: [bosId], tokens: [BOS_TOKEN] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([x, y]) => `${tokenStr[x]} ${tokenStr[y]}`),
    },
  };
  const addedTokensDecoder: TokenizerConfigJson["added_tokens_decoder"] = {};
  for (const { id, ...rest } of addedTokens) addedTokensDecoder[String(id)] = rest;
  const tokenizerConfig: TokenizerConfigJson = {
    added_tokens_decoder: addedTokensDecoder,
    bos_token: BOS_TOKEN,
    eos_token: EOS_TOKEN,
    pad_token: PAD_TOKEN,
    chat_template: options.chatTemplate ?? DEFAULT_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    model_input_names: ["input_ids", "attention_mask"],
    model_max_length: options.modelMaxLength ?? 2048,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
  const t1 = typeof performance !== "undefined" ? performance.now() : Date.now();
  return {
    tokenizerJson,
    tokenizerConfig,
    stats: { pieces, distinctPieces: words.length, merges: merges.length, seconds: (t1 - t0) / 1000 },
  };
}

/**
 * Plain reference encoder for a byte-level BPE tokenizer.json written by trainBpeTokenizer:
 * split, map to bytes, then repeatedly apply the lowest-ranked merge (leftmost on ties).
 * Slow and simple; tests check the fast library against it. Special-token text is not split out.
 */
export function referenceBpeEncode(json: TokenizerJson, text: string, pattern: SplitPattern): number[] {
  const rank = new Map<string, number>();
  json.model.merges.forEach((m, i) => {
    if (!rank.has(m)) rank.set(m, i);
  });
  const out: number[] = [];
  for (const piece of splitPieces(text, pattern)) {
    const sym = Array.from(byteLevelEncode(piece));
    for (;;) {
      let bestRank = Number.POSITIVE_INFINITY;
      let bestAt = -1;
      for (let j = 0; j + 1 < sym.length; j++) {
        const r = rank.get(`${sym[j]} ${sym[j + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          bestAt = j;
        }
      }
      if (bestAt < 0) break;
      sym.splice(bestAt, 2, sym[bestAt] + sym[bestAt + 1]);
    }
    for (const s of sym) {
      const id = json.model.vocab[s];
      if (id === undefined)
        throw new TokenizerError(`referenceBpeEncode: token ${JSON.stringify(s)} not in vocab`);
      out.push(id);
    }
  }
  return out;
}
