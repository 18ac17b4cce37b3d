// A generation as server-sent events in OpenAI's chunk format: (chat: a first chunk with the
// assistant role), a chunk per token with text, a final chunk with finish_reason, usage when
// asked (stream_options.include_usage), then [DONE]. An error after the headers are sent is
// written into the stream as OpenAI does; a client that went away (499) gets nothing more.
import type { Context } from "hono";
import { errorBody } from "./errors.js";
import type { ResponseHead } from "./openai-responses.js";
import { completionChunk, textChunkJson, usageOf } from "./openai-responses.js";
import type { EngineEvent } from "./protocol.js";
import { SSE_HEADERS, SseBody } from "./sse-body.js";

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
  const body = new SseBody();
  void pump(body, h, o, first, next).finally(() => {
    body.end();
    onEnd();
  });
  return c.body(body.stream, 200, SSE_HEADERS);
}

async function pump(
  body: SseBody,
  h: ResponseHead,
  o: StreamOptions,
  first: EngineEvent,
  next: () => Promise<EngineEvent>,
): Promise<void> {
  try {
    const send = (obj: unknown) => body.write(JSON.stringify(obj));
    const textChunk = textChunkJson(h, o.returnTokenIds);
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
        if (ev.text) await body.write(textChunk(ev.text, ev.token));
      } else {
        await send(completionChunk(h, h.kind === "chat" ? null : "", ev.finishReason));
        if (o.includeUsage)
          await send({ ...completionChunk(h, null, null), choices: [], usage: usageOf(ev) });
        await body.write("[DONE]");
        return;
      }
      ev = await next();
    }
  } catch (e) {
    // As hono's streamSSE did: a failure inside the stream is logged, the stream closed.
    console.error(e);
  }
}
