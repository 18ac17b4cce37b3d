// OpenAI request bodies → the engine's GenRequest, with a 400 that names the field for
// anything malformed. Accepted: OpenAI's fields plus vLLM's extensions top_k, ignore_eos
// and return_token_ids.
import { ServeError } from "./errors.js";
import type { GenRequest, PromptInput } from "./protocol.js";

type Json = Record<string, unknown>;

function bad(param: string, msg: string): never {
  throw new ServeError(400, `${param}: ${msg}`, "invalid_value", param);
}

function num(b: Json, k: string, def: number, lo: number, hi: number): number {
  const v = b[k];
  if (v === undefined || v === null) return def;
  if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi)
    bad(k, `must be a number in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  return v;
}

function int(b: Json, k: string): number | null {
  const v = b[k];
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !Number.isSafeInteger(v))
    bad(k, `must be an integer, got ${JSON.stringify(v)}`);
  return v;
}

function bool(b: Json, k: string): boolean {
  const v = b[k];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") bad(k, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

export interface ParsedRequest {
  gen: GenRequest;
  stream: boolean;
  includeUsage: boolean;
  returnTokenIds: boolean;
}

/** The body as an object, or a 400. */
export function asObject(body: unknown): Json {
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new ServeError(400, "the request body must be a JSON object", "invalid_body");
  return body as Json;
}

function common(
  b: Json,
  maxTokensKeys: readonly string[],
): Omit<ParsedRequest, "gen"> & { gen: Omit<GenRequest, "prompt"> } {
  if (typeof b.model !== "string" || b.model === "")
    bad("model", "required: the base model's id or an adapter's");
  const n = int(b, "n");
  if (n !== null && n !== 1) bad("n", "only n=1 is supported");
  if (b.echo === true) bad("echo", "echo is not supported");
  if (b.logprobs !== undefined && b.logprobs !== null && b.logprobs !== false && b.logprobs !== 0)
    bad("logprobs", "logprobs are not supported");
  let maxTokens: number | null = null;
  for (const k of maxTokensKeys) {
    const v = int(b, k);
    if (v !== null) {
      if (v < 1) bad(k, `must be at least 1, got ${v}`);
      maxTokens = v;
    }
  }
  let stop: string[] = [];
  if (typeof b.stop === "string") stop = [b.stop];
  else if (Array.isArray(b.stop)) {
    if (b.stop.length > 16 || !b.stop.every((s) => typeof s === "string" && s.length > 0))
      bad("stop", "must be a string or a list of at most 16 non-empty strings");
    stop = b.stop as string[];
  } else if (b.stop !== undefined && b.stop !== null) bad("stop", "must be a string or a list of strings");
  const topK = int(b, "top_k") ?? 0;
  if (topK < -1) bad("top_k", `must be -1, 0 (off) or positive, got ${topK}`);
  const so = b.stream_options;
  if (so !== undefined && so !== null && (typeof so !== "object" || Array.isArray(so)))
    bad("stream_options", "must be an object");
  return {
    gen: {
      model: b.model as string,
      maxTokens,
      temperature: num(b, "temperature", 1, 0, 2),
      topP: num(b, "top_p", 1, 0, 1) || 1,
      topK: Math.max(0, topK),
      seed: int(b, "seed"),
      stop,
      ignoreEos: bool(b, "ignore_eos"),
      tokenEvents: bool(b, "stream"),
    },
    stream: bool(b, "stream"),
    includeUsage: (so as { include_usage?: unknown } | undefined)?.include_usage === true,
    returnTokenIds: bool(b, "return_token_ids"),
  };
}

/** POST /v1/completions. */
export function parseCompletion(body: unknown): ParsedRequest {
  const b = asObject(body);
  const c = common(b, ["max_tokens"]);
  let p = b.prompt;
  // A list holding one prompt is accepted; batches of prompts are not.
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === "string" || Array.isArray(p[0]))) p = p[0];
  let prompt: PromptInput;
  if (typeof p === "string") prompt = { kind: "text", text: p };
  else if (Array.isArray(p) && p.length > 0 && p.every((t) => typeof t === "number"))
    prompt = { kind: "ids", ids: p as number[] };
  else bad("prompt", "must be a string or a list of token ids (one prompt per request)");
  return { ...c, gen: { ...c.gen, prompt, maxTokens: c.gen.maxTokens ?? 16 } };
}

/** POST /v1/chat/completions. */
export function parseChat(body: unknown): ParsedRequest {
  const b = asObject(body);
  const c = common(b, ["max_tokens", "max_completion_tokens"]);
  if (!Array.isArray(b.messages) || b.messages.length === 0) bad("messages", "must be a non-empty list");
  const messages = (b.messages as unknown[]).map((m, i) => {
    if (typeof m !== "object" || m === null) bad(`messages[${i}]`, "must be an object");
    const { role, content } = m as Json;
    if (typeof role !== "string") bad(`messages[${i}].role`, "must be a string");
    let text: string;
    if (typeof content === "string") text = content;
    else if (content === null || content === undefined) text = "";
    else if (Array.isArray(content)) {
      text = content
        .map((part, j) => {
          const pj = part as Json;
          if (typeof part !== "object" || part === null || pj.type !== "text" || typeof pj.text !== "string")
            bad(`messages[${i}].content[${j}]`, 'only {"type": "text", "text": ...} parts are supported');
          return pj.text as string;
        })
        .join("");
    } else bad(`messages[${i}].content`, "must be a string or a list of text parts");
    return { role, content: text };
  });
  return { ...c, gen: { ...c.gen, prompt: { kind: "chat", messages } } };
}
