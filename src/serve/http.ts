// The OpenAI-compatible HTTP API (hono): /v1/models, /v1/completions, /v1/chat/completions
// (stream: true as server-sent events in OpenAI's chunk format), vLLM's
// /v1/load_lora_adapter and /v1/unload_lora_adapter, /health and /metrics. Every error is
// OpenAI's error JSON with a 4xx/5xx status; nothing a client sends can stop the server.
import type { Context } from "hono";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { streamSSE } from "hono/streaming";
import type { EngineClient } from "./client.js";
import { errorBody, ServeError } from "./errors.js";
import { healthProblem } from "./heartbeat.js";
import { LATENCY_BUCKETS, MetricsRegistry } from "./metrics.js";
import type { EngineEvent, FinishReason, ServeLimits } from "./protocol.js";
import type { ParsedRequest } from "./requests.js";
import { asObject, parseChat, parseCompletion } from "./requests.js";

export interface AppOptions {
  client: EngineClient;
  baseId: string;
  limits: ServeLimits;
  /** Seconds since the epoch when the server started (the models' `created`). */
  created?: number;
  /** The base model's folder as the operator named it (vLLM's `root` of the base). */
  baseRoot?: string;
  /** Longest prompt + completion (vLLM's `max_model_len` of the base). */
  maxModelLen?: number | null;
}

/** Events of one generation as an async queue; a disconnect ends it early. */
class EventQueue {
  private readonly items: EngineEvent[] = [];
  private wake: (() => void) | null = null;
  push = (ev: EngineEvent): void => {
    this.items.push(ev);
    this.wake?.();
  };
  async next(): Promise<EngineEvent> {
    while (this.items.length === 0) await new Promise<void>((r) => (this.wake = r));
    this.wake = null;
    return this.items.shift()!;
  }
}

function randomId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().replace(/-/g, "")}`;
}

function sendError(c: Context, e: unknown): Response {
  const err = ServeError.from(e);
  return c.json(errorBody(err), err.status as 400);
}

export function createApp(o: AppOptions): Hono {
  const { client, baseId, limits } = o;
  const created = o.created ?? Math.floor(Date.now() / 1000);
  const metrics = new MetricsRegistry();
  const httpRequests = metrics.counter(
    "lorakit_http_requests_total",
    "HTTP requests answered, by route and status.",
  );
  const rejected = metrics.counter(
    "lorakit_requests_rejected_total",
    "Generation requests refused, by reason.",
  );
  const latency = metrics.histogram(
    "lorakit_request_duration_seconds",
    "End-to-end time of a generation request.",
    LATENCY_BUCKETS,
  );
  let active = 0;
  metrics.gauge("lorakit_requests_in_flight", "Generation requests being served.").bind(() => active);

  const app = new Hono();
  app.use("*", async (c, next) => {
    await next();
    httpRequests.inc({ route: c.req.routePath, status: String(c.res.status) });
  });
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: limits.maxBodyBytes,
      onError: (c) => {
        rejected.inc({ reason: "body_too_large" });
        return c.json(
          errorBody(
            new ServeError(
              413,
              `the request body exceeds ${limits.maxBodyBytes} bytes (--max-body-bytes)`,
              "body_too_large",
            ),
          ),
          413,
        );
      },
    }),
  );
  app.onError((e, c) => sendError(c, e));
  app.notFound((c) =>
    c.json(errorBody(new ServeError(404, `no route ${c.req.method} ${c.req.path}`, "not_found")), 404),
  );

  const readJson = async (c: Context): Promise<unknown> => {
    try {
      return await c.req.json();
    } catch (e) {
      throw new ServeError(400, "the request body is not valid JSON", "invalid_json", null, { cause: e });
    }
  };

  app.get("/health", (c) => {
    const problem = healthProblem(client, limits.stallSeconds);
    return problem === null ? c.body(null, 200) : c.text(problem, 503);
  });

  app.get("/metrics", async (c) => {
    const engine = await client.call({ op: "metrics" }).catch(() => "");
    return c.text(metrics.render() + engine, 200, {
      "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
    });
  });

  app.get("/v1/models", async (c) => {
    const adapters = await client.call({ op: "list" });
    // vLLM's ModelCard: the base's root is its model path and it alone has max_model_len;
    // an adapter's root is its folder and its parent the base.
    const card = (id: string, root: string, parent: string | null, maxModelLen: number | null) => ({
      id,
      object: "model",
      created,
      owned_by: "lorakit",
      root,
      parent,
      max_model_len: maxModelLen,
    });
    return c.json({
      object: "list",
      data: [
        card(baseId, o.baseRoot ?? baseId, null, o.maxModelLen ?? null),
        ...adapters.map((a) => card(a.id, a.root, a.parent, null)),
      ],
    });
  });

  app.post("/v1/load_lora_adapter", async (c) => {
    const b = asObject(await readJson(c));
    await client.call({ op: "load", name: b.lora_name as string, path: b.lora_path as string });
    return c.text(`Success: LoRA adapter '${b.lora_name}' added successfully.`);
  });

  app.post("/v1/unload_lora_adapter", async (c) => {
    const b = asObject(await readJson(c));
    await client.call({ op: "unload", name: b.lora_name as string });
    return c.text(`Success: LoRA adapter '${b.lora_name}' removed successfully.`);
  });

  const generation = (kind: "completion" | "chat") => async (c: Context) => {
    const t0 = performance.now();
    const parsed: ParsedRequest =
      kind === "completion" ? parseCompletion(await readJson(c)) : parseChat(await readJson(c));
    if (active >= limits.maxConcurrent) {
      rejected.inc({ reason: "too_many_requests" });
      throw new ServeError(
        429,
        `the server is at its limit of ${limits.maxConcurrent} concurrent requests (--max-concurrent); retry shortly`,
        "too_many_requests",
      );
    }
    active++;
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
    const finish = () => {
      signal.removeEventListener("abort", onAbort);
      active--;
      latency.observe((performance.now() - t0) / 1000);
    };
    try {
      const first = await q.next();
      if (first.kind === "error") throw ServeError.fromJSON(first.error);
      const id = randomId(kind === "completion" ? "cmpl" : "chatcmpl");
      const now = Math.floor(Date.now() / 1000);
      const model = parsed.gen.model;
      const usage = (ev: Extract<EngineEvent, { kind: "done" }>) => ({
        prompt_tokens: ev.promptTokens,
        completion_tokens: ev.tokens.length,
        total_tokens: ev.promptTokens + ev.tokens.length,
      });
      if (!parsed.stream) {
        let ev: EngineEvent = first;
        while (ev.kind === "token") ev = await q.next();
        if (ev.kind === "error") throw ServeError.fromJSON(ev.error);
        const ids = parsed.returnTokenIds ? { token_ids: ev.tokens } : {};
        const choice =
          kind === "completion"
            ? { index: 0, text: ev.text, logprobs: null, finish_reason: ev.finishReason, ...ids }
            : {
                index: 0,
                message: { role: "assistant", content: ev.text },
                logprobs: null,
                finish_reason: ev.finishReason,
                ...ids,
              };
        return c.json({
          id,
          object: kind === "completion" ? "text_completion" : "chat.completion",
          created: now,
          model,
          choices: [choice],
          usage: usage(ev),
        });
      }
      const chunk = (
        text: string | null,
        finishReason: FinishReason | null,
        extra: Record<string, unknown> = {},
      ) =>
        kind === "completion"
          ? {
              id,
              object: "text_completion",
              created: now,
              model,
              choices: [
                { index: 0, text: text ?? "", logprobs: null, finish_reason: finishReason, ...extra },
              ],
            }
          : {
              id,
              object: "chat.completion.chunk",
              created: now,
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
      handedToStream = true;
      return streamSSE(c, async (stream) => {
        try {
          const send = (obj: unknown) => stream.writeSSE({ data: JSON.stringify(obj) });
          if (kind === "chat") {
            const head = chunk(null, null) as { choices: { delta: unknown }[] };
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
                await send(chunk(ev.text, null, parsed.returnTokenIds ? { token_ids: [ev.token] } : {}));
            } else {
              await send(chunk(kind === "chat" ? null : "", ev.finishReason));
              if (parsed.includeUsage) await send({ ...chunk(null, null), choices: [], usage: usage(ev) });
              await stream.writeSSE({ data: "[DONE]" });
              return;
            }
            ev = await q.next();
          }
        } finally {
          cancel();
          finish();
        }
      });
    } catch (e) {
      cancel();
      throw e;
    } finally {
      if (!handedToStream) finish();
    }
  };

  app.post("/v1/completions", generation("completion"));
  app.post("/v1/chat/completions", generation("chat"));
  return app;
}
