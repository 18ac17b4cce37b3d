// GET /health (200, or 503 with the reason when the engine is dead or stalled) and
// GET /metrics (the HTTP layer's metrics followed by the engine's, Prometheus text 0.0.4).
import type { Hono } from "hono";
import type { EngineClient } from "./client.js";
import { healthProblem } from "./heartbeat.js";
import type { HttpMetrics } from "./http-metrics.js";
import type { ServeLimits } from "./protocol.js";

export function addMonitoringRoutes(
  app: Hono,
  d: { client: EngineClient; limits: ServeLimits; metrics: HttpMetrics },
): void {
  app.get("/health", (c) => {
    const problem = healthProblem(d.client, d.limits.stallSeconds);
    return problem === null ? c.body(null, 200) : c.text(problem, 503);
  });

  app.get("/metrics", async (c) => {
    const engine = await d.client.call({ op: "metrics" }).catch(() => "");
    return c.text(d.metrics.registry.render() + engine, 200, {
      "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
    });
  });
}
