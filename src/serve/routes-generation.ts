// POST /v1/completions and POST /v1/chat/completions: parse the request (a 400 naming the
// field), admit it under --max-concurrent (a 429 beyond), hand it to the engine, and answer
// with the whole response or a stream. A client that disconnects cancels its generation.
import type { Context, Hono } from "hono";
import type { EngineClient } from "./client.js";
import { ServeError } from "./errors.js";
import { EventQueue } from "./event-queue.js";
import { readJson } from "./http-json.js";
import type { HttpMetrics } from "./http-metrics.js";
import type { GenerationKind, ResponseHead } from "./openai-responses.js";
import { completionBody } from "./openai-responses.js";
import type { EngineEvent, ServeLimits } from "./protocol.js";
import type { ParsedRequest } from "./requests.js";
import { parseChat, parseCompletion } from "./requests.js";
import { streamCompletion } from "./stream-completion.js";

interface GenerationDeps {
  client: EngineClient;
  limits: ServeLimits;
  metrics: HttpMetrics;
}

export function addGenerationRoutes(app: Hono, d: GenerationDeps): void {
  app.post("/v1/completions", generationHandler("completion", d));
  app.post("/v1/chat/completions", generationHandler("chat", d));
}

function randomId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().replace(/-/g, "")}`;
}

function generationHandler(kind: GenerationKind, { client, limits, metrics }: GenerationDeps) {
  return async (c: Context): Promise<Response> => {
    const t0 = performance.now();
    const parsed: ParsedRequest =
      kind === "completion" ? parseCompletion(await readJson(c)) : parseChat(await readJson(c));
    if (metrics.active >= limits.maxConcurrent) {
      metrics.rejected.inc({ reason: "too_many_requests" });
      throw new ServeError(
        429,
        `the server is at its limit of ${limits.maxConcurrent} concurrent requests (--max-concurrent); retry shortly`,
        "too_many_requests",
      );
    }
    metrics.active++;
    let handedToStream = false;
    const q = new EventQueue();
    const cancel = client.generate(parsed.gen, q.push);
    const onAbort = () => {
      cancel();
      q.push({
        kind: "error",
        error: new ServeError(499, "client closed the request", "cancelled").toJSON(),
      });
    };
    const signal = c.req.raw.signal;
    signal.addEventListener("abort", onAbort, { once: true });
    // Runs once per request: when the whole response is built or fails, or when the stream ends.
    const finish = () => {
      signal.removeEventListener("abort", onAbort);
      metrics.active--;
      metrics.latency.observe((performance.now() - t0) / 1000);
    };
    try {
      const first = await q.next();
      if (first.kind === "error") throw ServeError.fromJSON(first.error);
      const head: ResponseHead = {
        kind,
        id: randomId(kind === "completion" ? "cmpl" : "chatcmpl"),
        created: Math.floor(Date.now() / 1000),
        model: parsed.gen.model,
      };
      if (!parsed.stream) {
        let ev: EngineEvent = first;
        while (ev.kind === "token") ev = await q.next();
        if (ev.kind === "error") throw ServeError.fromJSON(ev.error);
        return c.json(completionBody(head, ev, parsed.returnTokenIds));
      }
      handedToStream = true;
      return streamCompletion(
        c,
        head,
        { returnTokenIds: parsed.returnTokenIds, includeUsage: parsed.includeUsage },
        first,
        () => q.next(),
        () => {
          cancel();
          finish();
        },
      );
    } catch (e) {
      cancel();
      throw e;
    } finally {
      if (!handedToStream) finish();
    }
  };
}
