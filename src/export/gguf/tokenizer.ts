// A Hugging Face byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json) as
// llama.cpp's "gpt2" vocabulary: what convert_hf_to_gguf.py writes through
// TextModel._set_vocab_gpt2 / get_vocab_base and gguf-py's SpecialVocab, with
// tokenizer.ggml.pre named from the pre-tokenizer itself rather than from a hash of the
// encoding of a test string (the converter's get_vocab_base_pre), so that a tokenizer trained
// by lorakit gets the llama.cpp pre-tokenizer that splits text as its own regex does.
import { ExportError } from "../errors.js";
import type { GgufKv } from "./format.js";
import { kv } from "./format.js";

type Json = Record<string, unknown>;
const isObj = (x: unknown): x is Json => typeof x === "object" && x !== null && !Array.isArray(x);

/** The split regexes llama.cpp has a pre-tokenizer for (src/llama-vocab.cpp), as tokenizer.json writes them. */
export const PRE_TOKENIZER_REGEX = {
  /** Llama 3 (and lorakit's BPE trainer, pattern "llama3"). */
  llama3:
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  /** Qwen2: Llama 3's with single digits. */
  qwen2:
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  /** GPT-2 (ByteLevel's own regex). */
  gpt2: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
} as const;

/**
 * tokenizer.ggml.pre for (split, ignore_merges). llama.cpp's "llama-bpe" also takes a whole
 * pre-token that is in the vocabulary as one token (ignore_merges, as Llama 3's
 * tokenizer.json says); "smaug-bpe" splits the same way and always applies the merges, as a
 * tokenizer.json with ignore_merges false does.
 */
const PRE_NAMES: Record<string, string> = {
  "llama3/true": "llama-bpe",
  "llama3/false": "smaug-bpe",
  "qwen2/false": "qwen2",
  "gpt2/false": "gpt-2",
  "smollm/false": "smollm",
};

/** gguf-py TokenType. */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

function refuse(why: string): ExportError {
  return new ExportError(`GGUF: llama.cpp cannot express this tokenizer: ${why}`);
}

/** Which llama.cpp split the pre_tokenizer of tokenizer.json is, or an error saying what it is. */
function splitOf(pre: unknown): keyof typeof PRE_TOKENIZER_REGEX | "smollm" {
  const byteLevel = (p: unknown, useRegex: boolean) =>
    isObj(p) &&
    p.type === "ByteLevel" &&
    p.add_prefix_space !== true &&
    (p.use_regex === undefined ? true : p.use_regex) === useRegex;
  if (byteLevel(pre, true)) return "gpt2";
  if (isObj(pre) && pre.type === "Sequence" && Array.isArray(pre.pretokenizers)) {
    const [first, second, ...rest] = pre.pretokenizers as unknown[];
    if (rest.length === 0 && isObj(first)) {
      if (first.type === "Digits" && first.individual_digits === true && byteLevel(second, true))
        return "smollm";
      const pattern = isObj(first.pattern) ? first.pattern.Regex : undefined;
      if (
        first.type === "Split" &&
        typeof pattern === "string" &&
        first.behavior === "Isolated" &&
        first.invert !== true &&
        byteLevel(second, false)
      ) {
        for (const [k, re] of Object.entries(PRE_TOKENIZER_REGEX))
          if (re === pattern) return k as keyof typeof PRE_TOKENIZER_REGEX;
        throw refuse(
          `its split regex ${JSON.stringify(pattern)} is none of the pre-tokenizers llama.cpp has that lorakit maps (Llama 3, Qwen2, GPT-2, SmolLM)`,
        );
      }
    }
  }
  if (
    isObj(pre) &&
    (pre.type === "Metaspace" || (pre.type === "Sequence" && JSON.stringify(pre).includes("Metaspace")))
  )
    throw refuse(
      "it is a SentencePiece-style BPE (Metaspace pre-tokenizer, as LLaMA 2 and Mistral v0.1); llama.cpp reads those as a 'llama' vocabulary converted from tokenizer.model, which lorakit does not write",
    );
  throw refuse(`pre_tokenizer ${JSON.stringify(pre)?.slice(0, 200)} is not a byte-level split llama.cpp has`);
}

/** convert_hf_to_gguf.py does_token_look_special. */
function looksSpecial(t: string): boolean {
  return (
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t) ||
    (t.startsWith("<|") && t.endsWith("|>")) ||
    (t.startsWith("<｜") && t.endsWith("｜>")) ||
    (t.startsWith("<unused") && t.endsWith(">"))
  );
}

function tokenContent(x: unknown): string | null {
  if (typeof x === "string") return x;
  if (isObj(x) && typeof x.content === "string") return x.content;
  return null;
}

export interface TokenizerGgufInput {
  tokenizerJson: unknown;
  tokenizerConfig?: unknown;
  /** config.json's vocab_size: the GGUF lists exactly this many tokens (the embedding's rows). */
  vocabSize: number;
  /** config.json's token ids, used where tokenizer_config.json names none (as SpecialVocab does). */
  configTokenIds?: {
    bos?: unknown;
    eos?: unknown;
    unk?: unknown;
    sep?: unknown;
    pad?: unknown;
    mask?: unknown;
  };
  /**
   * The folder's template files, as gguf-py's SpecialVocab reads them: chat_template.jinja (a
   * string, or [{name: "default", template}, …] with additional_chat_templates/*.jinja), else
   * chat_template.json's chat_template. Used only when tokenizer_config.json has no
   * chat_template key, and not at all without a (non-empty) tokenizer_config.json, as there.
   */
  chatTemplateFile?: string | { name: string; template: string }[] | null;
  /** Write tokenizer.ggml.add_space_prefix from tokenizer_config's add_prefix_space (LlamaModel.set_vocab does, for `llama`). */
  writeAddSpacePrefix?: boolean;
}

export interface TokenizerGguf {
  metadata: GgufKv[];
  /** tokenizer.ggml.pre written. */
  pre: string;
  /** The chat template written as tokenizer.chat_template, if any. */
  chatTemplate: string | null;
  bosTokenId: number | null;
  eosTokenId: number | null;
  addBos: boolean | null;
}

/**
 * The tokenizer.* metadata of a GGUF model for a byte-level BPE tokenizer.json: model "gpt2",
 * the pre-tokenizer name, every token (ids without a token become "[PAD<id>]", UNUSED, up to
 * the model's vocab_size), token types (added special tokens CONTROL, other added tokens
 * USER_DEFINED), merges, BOS/EOS/UNK/SEP/PAD/MASK ids, add_bos/add_eos, and the chat template.
 * Throws ExportError for a tokenizer llama.cpp has no equivalent for.
 */
export function tokenizerGguf(input: TokenizerGgufInput): TokenizerGguf {
  const tj = input.tokenizerJson;
  const tc: Json = isObj(input.tokenizerConfig) ? { ...input.tokenizerConfig } : {};
  if (!isObj(tj) || !isObj(tj.model)) throw refuse("tokenizer.json has no model object");
  const model = tj.model;
  if (model.type !== "BPE")
    throw refuse(
      `its model is ${JSON.stringify(model.type)}; lorakit exports byte-level BPE tokenizers (llama.cpp's "gpt2" vocabulary) only`,
    );
  if (model.byte_fallback === true) throw refuse("it is a byte-fallback (SentencePiece-style) BPE");
  const norm = tj.normalizer;
  // Qwen2's NFC normaliser is dropped by llama.cpp's own converter too: NFC text is unchanged by it.
  if (norm !== null && norm !== undefined && !(isObj(norm) && norm.type === "NFC"))
    throw refuse(
      `its normalizer ${JSON.stringify(norm).slice(0, 120)} has no llama.cpp equivalent for a "gpt2" vocabulary`,
    );
  const split = splitOf(tj.pre_tokenizer);
  const ignoreMerges = model.ignore_merges === true;
  const pre = PRE_NAMES[`${split}/${ignoreMerges}`];
  if (!pre)
    throw refuse(`llama.cpp has no pre-tokenizer that splits as ${split} with ignore_merges ${ignoreMerges}`);

  // Tokens by id: the model vocabulary, then the added tokens over it.
  const n = input.vocabSize;
  const tokens: (string | undefined)[] = new Array(n);
  const types = new Array<number>(n).fill(TOKEN_TYPE.NORMAL);
  const place = (tok: string, id: unknown, what: string) => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0)
      throw refuse(`${what} ${JSON.stringify(tok)} has id ${JSON.stringify(id)}`);
    if (id >= n)
      throw new ExportError(
        `GGUF: token ${JSON.stringify(tok)} has id ${id} but the model's vocab_size is ${n}: the embedding has no row for it (a GGUF lists exactly vocab_size tokens)`,
      );
    tokens[id] = tok;
  };
  if (!isObj(model.vocab)) throw refuse("tokenizer.json's model.vocab is not an object");
  for (const [tok, id] of Object.entries(model.vocab)) place(tok, id, "token");
  const added = Array.isArray(tj.added_tokens) ? (tj.added_tokens as Json[]) : [];
  for (const t of added) {
    const content = t.content;
    if (typeof content !== "string") throw refuse(`an added token has no content: ${JSON.stringify(t)}`);
    place(content, t.id, "added token");
    const id = t.id as number;
    if (t.special === true || looksSpecial(content)) types[id] = TOKEN_TYPE.CONTROL;
    else {
      types[id] = TOKEN_TYPE.USER_DEFINED;
      tokens[id] = content.replaceAll("\u2581", " "); // get_vocab_base: pre-normalise user-defined spaces
    }
  }
  const list: string[] = [];
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    let t = tokens[i];
    if (t === undefined) {
      t = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.UNUSED;
    }
    const prev = seen.get(t);
    if (prev !== undefined)
      throw refuse(
        `ids ${prev} and ${i} are both ${JSON.stringify(t)}; llama.cpp maps each token text to one id`,
      );
    seen.set(t, i);
    list.push(t);
  }

  // Merges: "a b" strings; the pair form of transformers ≥ 4.45 joined, spaces inside a part
  // written as U+0120 + ... (chr(ord(" ") + 256)) as SpecialVocab does.
  const rawMerges = Array.isArray(model.merges) ? (model.merges as unknown[]) : [];
  if (rawMerges.length === 0) throw refuse("tokenizer.json has no merges (llama.cpp's BPE needs them)");
  const merges = rawMerges.map((m, i) => {
    if (typeof m === "string") return m;
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string")
      return m.map((part: string) => part.replaceAll(" ", "\u0120")).join(" ");
    throw refuse(`merge ${i} is ${JSON.stringify(m)}, neither "a b" nor ["a", "b"]`);
  });

  // Special tokens (SpecialVocab._try_load_from_tokenizer_json / _try_load_from_config_json).
  const addSpecial: { bos?: boolean; eos?: boolean } = {};
  const haveConfig = Object.keys(tc).length > 0;
  let bosText = tokenContent(tc.bos_token);
  let eosText = tokenContent(tc.eos_token);
  const post = tj.post_processor;
  const processors = isObj(post)
    ? Array.isArray(post.processors)
      ? (post.processors as unknown[])
      : [post]
    : [];
  for (const p of processors) {
    if (!isObj(p)) continue;
    if (p.type === "RobertaProcessing")
      throw refuse("its post-processor is RobertaProcessing (a BERT-style tokenizer)");
    if (p.type !== "TemplateProcessing" || !Array.isArray(p.single) || p.single.length < 2) continue;
    const single = p.single as Json[];
    const first = isObj(single[0].SpecialToken) ? tokenContent({ content: single[0].SpecialToken.id }) : null;
    if (first !== null) {
      if (!haveConfig) bosText = first;
      else if (bosText === null) bosText = first;
      addSpecial.bos = first === bosText;
    }
    const lastEntry = single[single.length - 1];
    const last = isObj(lastEntry.SpecialToken) ? tokenContent({ content: lastEntry.SpecialToken.id }) : null;
    if (last !== null) {
      if (!haveConfig || eosText === null) eosText = last;
      addSpecial.eos = last === eosText;
    }
  }
  for (const typ of ["bos", "eos"] as const) {
    const v = tc[`add_${typ}_token`];
    if (typeof v === "boolean") addSpecial[typ] = v;
  }
  const idOfAdded = (text: string | null): number | undefined =>
    text === null ? undefined : (added.find((t) => t.content === text)?.id as number | undefined);
  const texts: Record<string, string | null> = {
    bos: bosText,
    eos: eosText,
    unk: tokenContent(tc.unk_token),
    sep: tokenContent(tc.sep_token),
    pad: tokenContent(tc.pad_token),
    mask: tokenContent(tc.mask_token),
  };
  const ids: Record<string, number> = {};
  for (const typ of ["bos", "eos", "unk", "sep", "pad", "mask"] as const) {
    let id: unknown = idOfAdded(texts[typ]);
    if (id === undefined) id = input.configTokenIds?.[typ];
    if (Array.isArray(id)) id = id[0]; // config.json's eos_token_id may list several
    if (typeof id !== "number" || !Number.isInteger(id)) continue;
    if (id < 0 || id >= n)
      throw new ExportError(`GGUF: the ${typ} token id ${id} is outside the vocabulary (vocab_size ${n})`);
    ids[typ] = id;
  }

  const metadata: GgufKv[] = [
    kv.str("tokenizer.ggml.model", "gpt2"),
    kv.str("tokenizer.ggml.pre", pre),
    kv.strs("tokenizer.ggml.tokens", list),
    kv.i32s("tokenizer.ggml.token_type", types),
    kv.strs("tokenizer.ggml.merges", merges),
  ];
  const ID_KEYS: Record<string, string> = {
    bos: "bos_token_id",
    eos: "eos_token_id",
    unk: "unknown_token_id",
    sep: "seperator_token_id", // sic: llama.cpp's key
    pad: "padding_token_id",
    mask: "mask_token_id",
  };
  for (const [typ, id] of Object.entries(ids)) metadata.push(kv.u32(`tokenizer.ggml.${ID_KEYS[typ]}`, id));
  if (addSpecial.bos !== undefined) metadata.push(kv.bool("tokenizer.ggml.add_bos_token", addSpecial.bos));
  if (addSpecial.eos !== undefined) metadata.push(kv.bool("tokenizer.ggml.add_eos_token", addSpecial.eos));
  if (input.writeAddSpacePrefix && typeof tc.add_prefix_space === "boolean")
    metadata.push(kv.bool("tokenizer.ggml.add_space_prefix", tc.add_prefix_space));

  // Chat template(s): a string, or [{name, template}] with "default" as the main one.
  let chatTemplate: string | null = null;
  // SpecialVocab: `tokenizer_config.get('chat_template', chat_template_alt)`, after returning
  // early (no template at all) when tokenizer_config.json is missing or empty.
  const ct =
    Object.keys(tc).length === 0
      ? null
      : "chat_template" in tc
        ? tc.chat_template
        : (input.chatTemplateFile ?? null);
  if (typeof ct === "string") chatTemplate = ct;
  else if (Array.isArray(ct)) {
    const named: string[] = [];
    for (const c of ct as Json[]) {
      const name = String(c.name ?? "").replace(/[^A-Za-z0-9]/g, "_");
      if (!name || typeof c.template !== "string") continue;
      if (name === "default") chatTemplate = c.template;
      else {
        named.push(name);
        metadata.push(kv.str(`tokenizer.chat_template.${name}`, c.template));
      }
    }
    if (named.length) metadata.push(kv.strs("tokenizer.chat_templates", named));
  }
  if (chatTemplate) metadata.push(kv.str("tokenizer.chat_template", chatTemplate));
  return {
    metadata,
    pre,
    chatTemplate,
    bosTokenId: ids.bos ?? null,
    eosTokenId: ids.eos ?? null,
    addBos: addSpecial.bos ?? null,
  };
}
