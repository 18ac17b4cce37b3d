// The tokenizer the rest of lorakit uses: a thin wrapper over Tokenizers.js
// (@huggingface/tokenizers) for tokenizer.json, and @huggingface/jinja for the chat template in
// tokenizer_config.json. Browser-safe.
//
// Contract: encode() adds nothing unless asked (addSpecialTokens defaults to false, unlike HF);
// decode() is exact for byte-level tokenizers (no clean-up of spaces unless the config asks).

import { Template } from "@huggingface/jinja";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { TokenizerError } from "./errors.js";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface EncodeOptions {
  /** Let the post-processor add its special tokens (e.g. BOS). Default false. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, PAD, ...) from the output. Default false. */
  skipSpecialTokens?: boolean;
  /** HF's clean_up_tokenization_spaces (" ." → "." ...). Default: the config's value, else false. */
  cleanUpTokenizationSpaces?: boolean;
}

export interface ChatTemplateOptions {
  /** Append the prompt that starts the assistant's turn. Default false. */
  addGenerationPrompt?: boolean;
  /** Name of the template when tokenizer_config.json holds several (e.g. "tool_use"). */
  templateName?: string;
  /** Extra variables for the template (tools, documents, ...). */
  variables?: Record<string, unknown>;
}

const SUPPORTED_MODELS = ["BPE", "WordPiece", "Unigram"];

type JsonObject = Record<string, unknown>;

function isObject(x: unknown): x is JsonObject {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

// tokenizer_config.json writes special tokens either as "<s>" or as {"content": "<s>", ...}.
function tokenContent(x: unknown): string | null {
  if (typeof x === "string") return x;
  if (isObject(x) && typeof x.content === "string") return x.content;
  return null;
}

function maxId(json: JsonObject): number {
  let max = -1;
  const model = json.model as JsonObject;
  const vocab = model.vocab;
  if (Array.isArray(vocab)) max = vocab.length - 1;
  else if (isObject(vocab))
    for (const id of Object.values(vocab)) if (typeof id === "number" && id > max) max = id;
  for (const t of (json.added_tokens as JsonObject[] | undefined) ?? []) {
    if (typeof t.id === "number" && t.id > max) max = t.id;
  }
  return max;
}

export class Tokenizer {
  /** The parsed files, kept so the tokenizer can be saved next to a model unchanged. */
  readonly tokenizerJson: Readonly<JsonObject>;
  readonly tokenizerConfig: Readonly<JsonObject>;
  /** Ids 0..vocabSize-1, added/special tokens included (HF `len(tokenizer)`). */
  readonly vocabSize: number;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly unkToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  /** Ids of every added token marked special. */
  readonly specialTokenIds: ReadonlySet<number>;

  private readonly hf: HfTokenizer;
  private readonly cleanUp: boolean;
  private readonly templates = new Map<string, Template>();

  private constructor(tokenizerJson: JsonObject, tokenizerConfig: JsonObject, hf: HfTokenizer) {
    this.tokenizerJson = tokenizerJson;
    this.tokenizerConfig = tokenizerConfig;
    this.hf = hf;
    this.vocabSize = maxId(tokenizerJson) + 1;
    this.bosToken = tokenContent(tokenizerConfig.bos_token);
    this.eosToken = tokenContent(tokenizerConfig.eos_token);
    this.padToken = tokenContent(tokenizerConfig.pad_token);
    this.unkToken = tokenContent(tokenizerConfig.unk_token);
    this.bosTokenId = this.bosToken === null ? null : (this.tokenToId(this.bosToken) ?? null);
    this.eosTokenId = this.eosToken === null ? null : (this.tokenToId(this.eosToken) ?? null);
    this.padTokenId = this.padToken === null ? null : (this.tokenToId(this.padToken) ?? null);
    const special = new Set<number>();
    for (const t of (tokenizerJson.added_tokens as JsonObject[] | undefined) ?? []) {
      if (t.special === true && typeof t.id === "number") special.add(t.id);
    }
    this.specialTokenIds = special;
    this.cleanUp = tokenizerConfig.clean_up_tokenization_spaces === true;
  }

  /**
   * Build from the parsed contents of tokenizer.json and (optionally) tokenizer_config.json.
   * Accepts JSON text too.
   */
  static fromJSON(tokenizerJson: unknown, tokenizerConfig?: unknown): Tokenizer {
    const json =
      typeof tokenizerJson === "string" ? parseJson(tokenizerJson, "tokenizer.json") : tokenizerJson;
    const config =
      typeof tokenizerConfig === "string"
        ? parseJson(tokenizerConfig, "tokenizer_config.json")
        : (tokenizerConfig ?? {});
    if (!isObject(json)) {
      throw new TokenizerError(
        `Tokenizer.fromJSON: tokenizer.json must be a JSON object, got ${typeof json}`,
      );
    }
    if (!isObject(config)) {
      throw new TokenizerError(
        `Tokenizer.fromJSON: tokenizer_config.json must be a JSON object, got ${typeof config}`,
      );
    }
    if (!isObject(json.model)) {
      throw new TokenizerError(
        'Tokenizer.fromJSON: tokenizer.json has no "model" object; is this a Hugging Face fast-tokenizer ' +
          "file (tokenizer.json), not vocab.json or tokenizer_config.json?",
      );
    }
    const type = json.model.type;
    if (type !== undefined && !SUPPORTED_MODELS.includes(String(type))) {
      throw new TokenizerError(
        `Tokenizer.fromJSON: tokenizer model type ${JSON.stringify(type)} is not supported; ` +
          `supported: ${SUPPORTED_MODELS.join(", ")}`,
      );
    }
    // Tokenizers.js wants every top-level part present; older files may omit the null ones.
    const full: JsonObject = {
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      added_tokens: [],
      ...json,
    };
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer(full, config);
    } catch (e) {
      throw new TokenizerError(
        `Tokenizer.fromJSON: @huggingface/tokenizers could not build this tokenizer ` +
          `(model ${JSON.stringify(type)}): ${(e as Error).message}`,
        { cause: e },
      );
    }
    return new Tokenizer(full, config, hf);
  }

  /** text → ids. Nothing is prepended or appended unless addSpecialTokens is true. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (text.length === 0 && !options.addSpecialTokens) return [];
    return this.hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids;
  }

  /**
   * ids → text. An id past the tokenizer's vocabulary decodes to nothing, as Hugging Face's
   * tokenizers do: models pad their embedding matrix past the tokenizer (Qwen2's 151,936 rows
   * for 151,665 tokens), and a sampled padding id must not lose the rest of a generation.
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    if (ids.length === 0) return "";
    const list: number[] = [];
    for (const id of Array.from(ids)) {
      if (!Number.isInteger(id) || id < 0)
        throw new TokenizerError(`Tokenizer.decode: token id ${id} is not a non-negative integer`);
      if (id < this.vocabSize) list.push(id);
    }
    if (list.length === 0) return "";
    return this.hf.decode(list, {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: options.cleanUpTokenizationSpaces ?? this.cleanUp,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** The chat template's source, or null when tokenizer_config.json has none. */
  chatTemplate(templateName?: string): string | null {
    const t = this.tokenizerConfig.chat_template;
    if (typeof t === "string") return t;
    if (Array.isArray(t)) {
      const name = templateName ?? "default";
      const hit = (t as JsonObject[]).find((x) => x.name === name);
      return typeof hit?.template === "string" ? hit.template : null;
    }
    return null;
  }

  /** Render messages with the chat template from tokenizer_config.json (as HF apply_chat_template, tokenize=False). */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    const source = this.chatTemplate(options.templateName);
    if (source === null) {
      const names = Array.isArray(this.tokenizerConfig.chat_template)
        ? ` (it has: ${(this.tokenizerConfig.chat_template as JsonObject[]).map((x) => x.name).join(", ")})`
        : "";
      throw new TokenizerError(
        `Tokenizer.applyChatTemplate: tokenizer_config.json has no chat_template` +
          `${options.templateName ? ` named ${JSON.stringify(options.templateName)}` : ""}${names}; ` +
          "use an instruct/chat model's tokenizer or set chat_template in tokenizer_config.json",
      );
    }
    let template = this.templates.get(source);
    if (template === undefined) {
      try {
        template = new Template(source);
      } catch (e) {
        throw new TokenizerError(
          `Tokenizer.applyChatTemplate: chat_template does not parse: ${(e as Error).message}`,
          {
            cause: e,
          },
        );
      }
      this.templates.set(source, template);
    }
    const special: Record<string, unknown> = {};
    for (const k of [
      "bos_token",
      "eos_token",
      "pad_token",
      "unk_token",
      "sep_token",
      "cls_token",
      "mask_token",
      "additional_special_tokens",
    ]) {
      const v = this.tokenizerConfig[k];
      if (v === undefined || v === null) continue;
      special[k] = Array.isArray(v) ? v.map(tokenContent) : tokenContent(v);
    }
    try {
      return template.render({
        ...special,
        ...options.variables,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (e) {
      throw new TokenizerError(`Tokenizer.applyChatTemplate: ${(e as Error).message}`, { cause: e });
    }
  }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`Tokenizer.fromJSON: ${what} is not valid JSON: ${(e as Error).message}`, {
      cause: e,
    });
  }
}
