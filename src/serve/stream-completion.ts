// A generation as server-sent events in OpenAI's chunk format: (chat: a first chunk with the
// assistant role), a chunk per token with text, a final chunk with finish_reason, usage when
// asked (stream_options.include_usage), then [DONE]. An error after the headers are sent is
// written into the stream as OpenAI does; a client that went away (499) gets nothing more.
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { errorBody } from "./errors.js";
import type { ResponseHead } from "./openai-responses.js";
import { completionChunk, usageOf } from "./openai-responses.js";
import type { EngineEvent } from "./protocol.js";

export interface StreamOptions {
  /** Add each token's id to its chunk (vLLM's return_token_ids). */
  returnTokenIds: boolean;
  /** Send a usage chunk before [DONE]. */
  includeUsage: boolean;
}

/**
 * Streams `first` and then every event `next()` gives until done or error; `onEnd` runs
 * once when the stream ends for any reason (release the request's slot, cancel the engine).
 */
export function streamCompletion(
  c: Context,
  h: ResponseHead,
  o: StreamOptions,
  first: EngineEvent,
  next: () => Promise<EngineEvent>,
  onEnd: () => void,
): Response {
  return streamSSE(c, async (stream) => {
    try {
      const send = (obj: unknown) => stream.writeSSE({ data: JSON.stringify(obj) });
      if (h.kind === "chat") {
        const head = completionChunk(h, null, null);
        head.choices[0].delta = { role: "assistant", content: "" };
        await send(head);
      }
      let ev: EngineEvent = first;
      for (;;) {
        if (ev.kind === "error") {
          // Headers are gone; say it in the stream as OpenAI does.
          if (ev.error.status !== 499) await send(errorBody(ev.error));
          return;
        }
        if (ev.kind === "token") {
          if (ev.text)
            await send(completionChunk(h, ev.text, null, o.returnTokenIds ? { token_ids: [ev.token] } : {}));
        } else {
          await send(completionChunk(h, h.kind === "chat" ? null : "", ev.finishReason));
          if (o.includeUsage)
            await send({ ...completionChunk(h, null, null), choices: [], usage: usageOf(ev) });
          await stream.writeSSE({ data: "[DONE]" });
          return;
        }
        ev = await next();
      }
    } finally {
      onEnd();
    }
  });
}
