// JSON records → token ids + loss mask. Browser-safe.
//
// Record formats (detected per record in this order, or forced with `format`):
//   chat        {"messages": [{"role": "...", "content": "..."}, ...]} rendered with the
//               tokenizer's chat template; trained on the assistant turns (their content and
//               the end-of-turn text the template writes after it).
//   alpaca      {"instruction", "input"?, "output"} rendered with the Stanford Alpaca prompt
//               (ALPACA_PROMPT / ALPACA_PROMPT_NO_INPUT); trained on the output + EOS.
//   completion  {"prompt", "completion"}: prompt and completion joined with nothing between
//               them (put the space or newline in the data, as TRL expects); trained on the
//               completion + EOS.
//   text        {"text"}: trained on every token (+ EOS).
// Non-chat records get BOS in front when the tokenizer has one (as HF's tokenizers do for
// Llama/Mistral; Qwen has none) and EOS after, unless `addBos` / `appendEos` say otherwise.
// Chat records get neither: the template writes its own BOS and end-of-turn tokens.
//
// Tokenisation: the whole rendered text is tokenised once, exactly as it will be seen in
// context. The prompt/answer boundaries are character offsets; each is turned into a token
// index by tokenising the text before it and taking the common prefix with the full
// tokenisation. A token that straddles a boundary (BPE merged across it) is counted as part of
// the trained span.

import type { ChatMessage } from "../tokenizer/tokenizer.js";
import { DataError, type DataTokenizer } from "./data-types.js";

export type RecordFormat = "text" | "completion" | "alpaca" | "chat";
export const RECORD_FORMATS: readonly RecordFormat[] = ["text", "completion", "alpaca", "chat"];

/** The Stanford Alpaca prompt (tatsu-lab/stanford_alpaca, train.py PROMPT_DICT["prompt_input"]). */
export const ALPACA_PROMPT =
  "Below is an instruction that describes a task, paired with an input that provides further context. " +
  "Write a response that appropriately completes the request.\n\n" +
  "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
/** The Stanford Alpaca prompt for records without (or with an empty) input (PROMPT_DICT["prompt_no_input"]). */
export const ALPACA_PROMPT_NO_INPUT =
  "Below is an instruction that describes a task. " +
  "Write a response that appropriately completes the request.\n\n" +
  "### Instruction:\n{instruction}\n\n### Response:\n";

export interface RecordOptions {
  /** Force one record format; "auto" (default) detects it per record. */
  format?: RecordFormat | "auto";
  /** Train on every token, prompts and user turns included. Default false. */
  trainOnPrompt?: boolean;
  /** Put BOS before non-chat records. Default: true when the tokenizer has a BOS token. */
  addBos?: boolean;
  /** Put EOS after non-chat records (and train on it). Default: true when the tokenizer has an EOS token. */
  appendEos?: boolean;
}

/** A record tokenised, before any truncation. */
export interface TokenizedRecord {
  format: RecordFormat;
  ids: number[];
  /** 1 = trained target (mask[0] is 0). */
  mask: number[];
}

/** Where a record came from, for error messages: "file.jsonl:12". */
export interface RecordLocation {
  source: string;
  /** 1-based line (JSONL) — or, for a JSON array, 1-based record index when `line` is absent. */
  line?: number;
  index?: number;
}

export function formatLocation(loc: RecordLocation): string {
  if (loc.line !== undefined) return `${loc.source}:${loc.line}`;
  if (loc.index !== undefined) return `${loc.source}: record ${loc.index}`;
  return loc.source;
}

function fail(loc: RecordLocation, message: string): never {
  throw new DataError(`${formatLocation(loc)}: ${message}`, { source: loc.source, line: loc.line });
}

type JsonObject = Record<string, unknown>;

function isObject(x: unknown): x is JsonObject {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function typeName(x: unknown): string {
  if (x === null) return "null";
  if (x === undefined) return "nothing (the field is missing)";
  if (Array.isArray(x)) return "an array";
  return typeof x === "object" ? "an object" : `${typeof x} ${JSON.stringify(x)?.slice(0, 40)}`;
}

function fieldList(rec: JsonObject): string {
  const keys = Object.keys(rec);
  return keys.length === 0 ? "none" : keys.map((k) => JSON.stringify(k)).join(", ");
}

const FORMAT_FIELDS: Record<RecordFormat, string> = {
  chat: '{"messages": [{"role", "content"}, ...]}',
  alpaca: '{"instruction", "input"?, "output"}',
  completion: '{"prompt", "completion"}',
  text: '{"text"}',
};

/** Which format a record is in (chat, alpaca, completion, text — first match wins), or null. */
export function detectFormat(rec: JsonObject): RecordFormat | null {
  if ("messages" in rec) return "chat";
  if ("instruction" in rec && "output" in rec) return "alpaca";
  if ("prompt" in rec && "completion" in rec) return "completion";
  if ("text" in rec) return "text";
  return null;
}

function needString(rec: JsonObject, key: string, loc: RecordLocation, allowEmpty: boolean): string {
  const v = rec[key];
  if (v === undefined) fail(loc, `missing field "${key}"; the record has fields: ${fieldList(rec)}`);
  if (typeof v !== "string") fail(loc, `field "${key}" must be a string, got ${typeName(v)}`);
  if (!allowEmpty && v.length === 0) {
    fail(loc, `field "${key}" is empty; there would be nothing to train on — drop the record or fill it in`);
  }
  return v;
}

/**
 * Tokenise `text` once and mark as trained the tokens of each [start, end) character span.
 * A token straddling a span edge counts as inside the span.
 */
function tokenizeWithSpans(
  tok: DataTokenizer,
  text: string,
  spans: readonly (readonly [number, number])[],
): { ids: number[]; mask: number[] } {
  const ids = tok.encode(text);
  const mask = new Array<number>(ids.length).fill(0);
  // Token index where character offset c falls: `exact` when a token starts right at c.
  const boundary = (c: number): { k: number; exact: boolean } => {
    if (c <= 0) return { k: 0, exact: true };
    if (c >= text.length) return { k: ids.length, exact: true };
    const pre = tok.encode(text.slice(0, c));
    let k = 0;
    while (k < pre.length && k < ids.length && pre[k] === ids[k]) k++;
    return { k, exact: k === pre.length };
  };
  for (const [a, b] of spans) {
    if (b <= a) continue;
    const from = boundary(a).k;
    const end = boundary(b);
    const to = end.exact ? end.k : Math.min(end.k + 1, ids.length);
    for (let i = from; i < to; i++) mask[i] = 1;
  }
  return { ids, mask };
}

function wrap(
  tok: DataTokenizer,
  format: RecordFormat,
  body: { ids: number[]; mask: number[] },
  opts: RecordOptions,
): TokenizedRecord {
  const ids = body.ids;
  const mask = body.mask;
  const addBos = opts.addBos ?? tok.bosTokenId !== null;
  const appendEos = opts.appendEos ?? tok.eosTokenId !== null;
  if (appendEos) {
    if (tok.eosTokenId === null) throw new DataError("appendEos: the tokenizer has no EOS token");
    ids.push(tok.eosTokenId);
    mask.push(1);
  }
  if (addBos) {
    if (tok.bosTokenId === null) throw new DataError("addBos: the tokenizer has no BOS token");
    ids.unshift(tok.bosTokenId);
    mask.unshift(0);
  }
  if (opts.trainOnPrompt) mask.fill(1);
  if (mask.length > 0) mask[0] = 0;
  return { format, ids, mask };
}

function promptCompletion(
  tok: DataTokenizer,
  format: RecordFormat,
  prompt: string,
  completion: string,
  opts: RecordOptions,
): TokenizedRecord {
  const text = prompt + completion;
  return wrap(tok, format, tokenizeWithSpans(tok, text, [[prompt.length, text.length]]), opts);
}

function parseMessages(rec: JsonObject, loc: RecordLocation): ChatMessage[] {
  const msgs = rec.messages;
  if (!Array.isArray(msgs))
    fail(loc, `field "messages" must be an array of {role, content}, got ${typeName(msgs)}`);
  if (msgs.length === 0) fail(loc, `field "messages" is empty`);
  return msgs.map((m, i) => {
    if (!isObject(m)) fail(loc, `messages[${i}] must be an object {role, content}, got ${typeName(m)}`);
    if (typeof m.role !== "string") {
      fail(loc, `messages[${i}].role must be a string, got ${typeName(m.role)}; fields: ${fieldList(m)}`);
    }
    if (typeof m.content !== "string") {
      fail(
        loc,
        `messages[${i}].content must be a string, got ${typeName(m.content)}; fields: ${fieldList(m)}`,
      );
    }
    return { ...m, role: m.role, content: m.content } as ChatMessage;
  });
}

/** Character spans of the assistant turns in `full` (the template's rendering of all messages). */
function assistantSpans(
  tok: DataTokenizer,
  msgs: readonly ChatMessage[],
  full: string,
  loc: RecordLocation,
): [number, number][] {
  const spans: [number, number][] = [];
  let searchFrom = 0;
  for (let i = 0; i < msgs.length; i++) {
    if (msgs[i].role !== "assistant") continue;
    // Preferred: the prompt up to this turn (with the generation prompt) and the conversation
    // through this turn are both prefixes of the full rendering; the turn is what lies between.
    let span: [number, number] | null = null;
    try {
      const before = tok.applyChatTemplate(msgs.slice(0, i), { addGenerationPrompt: true });
      const through = tok.applyChatTemplate(msgs.slice(0, i + 1));
      if (
        before.length >= searchFrom &&
        through.length > before.length &&
        through.startsWith(before) &&
        full.startsWith(through)
      ) {
        span = [before.length, through.length];
      }
    } catch {
      // A template that refuses a prefix (e.g. one that must end on an assistant turn): fall back.
    }
    // Fallback for templates whose rendering of a prefix is not a prefix of the whole (e.g. ones
    // that rewrite earlier turns): find the content itself after the previous turn.
    if (span === null) {
      const content = msgs[i].content;
      const at = content.length === 0 ? -1 : full.indexOf(content, searchFrom);
      if (at < 0) {
        fail(
          loc,
          `cannot find assistant message ${i} in the chat template's output; the template rewrites ` +
            "or drops it (use trainOnPrompt, or a template that renders each turn verbatim)",
        );
      }
      span = [at, at + content.length];
    }
    spans.push(span);
    searchFrom = span[1];
  }
  return spans;
}

function chatRecord(
  tok: DataTokenizer,
  rec: JsonObject,
  loc: RecordLocation,
  opts: RecordOptions,
): TokenizedRecord {
  const msgs = parseMessages(rec, loc);
  if (!opts.trainOnPrompt && !msgs.some((m) => m.role === "assistant")) {
    fail(
      loc,
      `no assistant message to train on (roles: ${msgs.map((m) => m.role).join(", ")}); ` +
        "add one, or set trainOnPrompt to train on the whole conversation",
    );
  }
  for (let i = 0; i < msgs.length; i++) {
    if (msgs[i].role === "assistant" && msgs[i].content.length === 0 && !opts.trainOnPrompt) {
      fail(loc, `messages[${i}] (assistant) has empty content; there is nothing to train on`);
    }
  }
  let full: string;
  try {
    full = tok.applyChatTemplate(msgs);
  } catch (e) {
    fail(loc, (e as Error).message);
  }
  const spans = opts.trainOnPrompt ? [] : assistantSpans(tok, msgs, full, loc);
  const body = tokenizeWithSpans(tok, full, spans);
  if (opts.trainOnPrompt) body.mask.fill(1);
  if (body.mask.length > 0) body.mask[0] = 0;
  return { format: "chat", ...body };
}

/**
 * Tokenise one parsed JSON record with its loss mask (see the file comment for the formats).
 *
 * @example
 * const r = tokenizeRecord({ prompt: "Q: 2+2?\nA:", completion: " 4" }, tok, { source: "x.jsonl", line: 1 });
 * // r.ids = [BOS, ...prompt tokens, ...completion tokens, EOS]; r.mask = 1 on the completion and EOS
 */
export function tokenizeRecord(
  record: unknown,
  tok: DataTokenizer,
  loc: RecordLocation,
  opts: RecordOptions = {},
): TokenizedRecord {
  if (!isObject(record)) fail(loc, `a record must be a JSON object, got ${typeName(record)}`);
  const want = opts.format ?? "auto";
  const format = want === "auto" ? detectFormat(record) : want;
  if (format === null) {
    fail(
      loc,
      `the record has none of the known field sets; it has fields: ${fieldList(record)}. Expected one of ` +
        `${RECORD_FORMATS.map((f) => FORMAT_FIELDS[f]).join(", ")}`,
    );
  }
  if (!RECORD_FORMATS.includes(format)) {
    throw new DataError(
      `unknown record format ${JSON.stringify(format)}; use "auto" or one of ${RECORD_FORMATS.join(", ")}`,
    );
  }
  switch (format) {
    case "text": {
      const text = needString(record, "text", loc, false);
      const body = { ids: tok.encode(text), mask: [] as number[] };
      body.mask = new Array<number>(body.ids.length).fill(1);
      return wrap(tok, "text", body, opts);
    }
    case "completion": {
      const prompt = needString(record, "prompt", loc, true);
      const completion = needString(record, "completion", loc, !!opts.trainOnPrompt);
      return promptCompletion(tok, "completion", prompt, completion, opts);
    }
    case "alpaca": {
      const instruction = needString(record, "instruction", loc, false);
      const input = record.input;
      if (input !== undefined && input !== null && typeof input !== "string") {
        fail(loc, `field "input" must be a string (or absent), got ${typeName(input)}`);
      }
      const output = needString(record, "output", loc, !!opts.trainOnPrompt);
      const prompt = input
        ? ALPACA_PROMPT.replace("{instruction}", () => instruction).replace("{input}", () => input)
        : ALPACA_PROMPT_NO_INPUT.replace("{instruction}", () => instruction);
      return promptCompletion(tok, "alpaca", prompt, output, opts);
    }
    case "chat":
      return chatRecord(tok, record, loc, opts);
    default:
      return format satisfies never;
  }
}

/** A parsed record with where it came from. */
export interface ParsedRecord {
  record: unknown;
  loc: RecordLocation;
}

/**
 * Parse JSONL text (one JSON value per line; blank lines skipped) — or, when the text starts
 * with "[", a JSON array of records. Errors name `source` and the line.
 */
export function parseRecords(text: string, source: string): ParsedRecord[] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const trimmed = text.trimStart();
  if (trimmed.startsWith("[")) {
    let arr: unknown;
    try {
      arr = JSON.parse(text);
    } catch (e) {
      throw new DataError(
        `${source}: starts with "[" but is not a valid JSON array (${(e as Error).message}); ` +
          "write one JSON object per line (JSONL) or a valid JSON array",
        { cause: e, source },
      );
    }
    return (arr as unknown[]).map((record, i) => ({ record, loc: { source, index: i + 1 } }));
  }
  const out: ParsedRecord[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line.length === 0) continue;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (e) {
      const preview = line.length > 60 ? `${line.slice(0, 60)}…` : line;
      throw new DataError(
        `${source}:${i + 1}: not valid JSON (${(e as Error).message}): ${preview}; ` +
          "each line of a .jsonl file must be one complete JSON object",
        { cause: e, source, line: i + 1 },
      );
    }
    out.push({ record, loc: { source, line: i + 1 } });
  }
  return out;
}
