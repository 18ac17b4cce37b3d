// The OpenAI-compatible HTTP API (hono): /v1/models, /v1/completions, /v1/chat/completions
// (stream: true as server-sent events in OpenAI's chunk format), vLLM's
// /v1/load_lora_adapter and /v1/unload_lora_adapter, /health and /metrics. Every error is
// OpenAI's error JSON with a 4xx/5xx status; nothing a client sends can stop the server.
// This file assembles the app: the middleware every route shares, then each route family
// from its own routes-*.ts.
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { EngineClient } from "./client.js";
import { errorBody, ServeError } from "./errors.js";
import { sendError } from "./http-json.js";
import { createHttpMetrics } from "./http-metrics.js";
import type { ServeLimits } from "./protocol.js";
import { addAdapterRoutes } from "./routes-adapters.js";
import { addGenerationRoutes } from "./routes-generation.js";
import { addModelsRoute } from "./routes-models.js";
import { addMonitoringRoutes } from "./routes-monitoring.js";

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

export function createApp(o: AppOptions): Hono {
  const { client, limits } = o;
  const metrics = createHttpMetrics();

  const app = new Hono();
  // Counted after the handler, so the status is the one sent and the route the matched one.
  app.use("*", async (c, next) => {
    await next();
    metrics.httpRequests.inc({ route: c.req.routePath, status: String(c.res.status) });
  });
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: limits.maxBodyBytes,
      onError: (c) => {
        metrics.rejected.inc({ reason: "body_too_large" });
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

  addMonitoringRoutes(app, { client, limits, metrics });
  addModelsRoute(app, {
    client,
    baseId: o.baseId,
    created: o.created ?? Math.floor(Date.now() / 1000),
    baseRoot: o.baseRoot,
    maxModelLen: o.maxModelLen,
  });
  addAdapterRoutes(app, client);
  addGenerationRoutes(app, { client, limits, metrics });
  return app;
}
