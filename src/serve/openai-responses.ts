// The bodies of OpenAI's completion and chat-completion responses, whole (stream: false) and
// as stream chunks (`text_completion` / `chat.completion.chunk`), from the engine's events.
import type { EngineEvent, FinishReason } from "./protocol.js";

export type GenerationKind = "completion" | "chat";
export type DoneEvent = Extract<EngineEvent, { kind: "done" }>;

/** What every body of one response repeats. */
export interface ResponseHead {
  kind: GenerationKind;
  id: string;
  /** Seconds since the epoch when the first event arrived. */
  created: number;
  model: string;
}

/** OpenAI's `usage` of a finished generation. */
export function usageOf(ev: DoneEvent): {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
} {
  return {
    prompt_tokens: ev.promptTokens,
    completion_tokens: ev.tokens.length,
    total_tokens: ev.promptTokens + ev.tokens.length,
  };
}

/** The whole response of a finished generation; `token_ids` (vLLM's return_token_ids) on request. */
export function completionBody(h: ResponseHead, ev: DoneEvent, returnTokenIds: boolean): object {
  const ids = returnTokenIds ? { token_ids: ev.tokens } : {};
  const choice =
    h.kind === "completion"
      ? { index: 0, text: ev.text, logprobs: null, finish_reason: ev.finishReason, ...ids }
      : {
          index: 0,
          message: { role: "assistant", content: ev.text },
          logprobs: null,
          finish_reason: ev.finishReason,
          ...ids,
        };
  return {
    id: h.id,
    object: h.kind === "completion" ? "text_completion" : "chat.completion",
    created: h.created,
    model: h.model,
    choices: [choice],
    usage: usageOf(ev),
  };
}

/**
 * One stream chunk with one choice: `text` null is a chat delta without content (a
 * completion chunk then carries ""); `extra` joins the choice (e.g. token_ids).
 */
export function completionChunk(
  h: ResponseHead,
  text: string | null,
  finishReason: FinishReason | null,
  extra: Record<string, unknown> = {},
): { choices: Record<string, unknown>[] } & Record<string, unknown> {
  const { id, created, model } = h;
  return h.kind === "completion"
    ? {
        id,
        object: "text_completion",
        created,
        model,
        choices: [{ index: 0, text: text ?? "", logprobs: null, finish_reason: finishReason, ...extra }],
      }
    : {
        id,
        object: "chat.completion.chunk",
        created,
        model,
        choices: [
          {
            index: 0,
            delta: text === null ? {} : { content: text },
            logprobs: null,
            finish_reason: finishReason,
            ...extra,
          },
        ],
      };
}

/**
 * The JSON of a stream's text chunks, `JSON.stringify(completionChunk(h, text, null, extra))`
 * byte for byte: everything but the text is formatted once per response, so a token costs
 * one string escape instead of building and serialising the whole chunk object.
 */
export function textChunkJson(
  h: ResponseHead,
  returnTokenIds: boolean,
): (text: string, token: number) => string {
  if (returnTokenIds)
    return (text, token) => JSON.stringify(completionChunk(h, text, null, { token_ids: [token] }));
  // A text no response can hold (lone NULs), located in the serialised template.
  const mark = JSON.stringify("\u0000lorakit\u0000");
  const template = JSON.stringify(completionChunk(h, JSON.parse(mark) as string, null));
  const at = template.indexOf(mark);
  const before = template.slice(0, at);
  const after = template.slice(at + mark.length);
  return (text) => before + JSON.stringify(text) + after;
}
