// The HTTP layer's own Prometheus metrics: requests by route and status, refusals by reason,
// end-to-end latency of generations, and the generations in flight (which is also the count
// the --max-concurrent limit is checked against). The engine's metrics come from the worker.
import type { Counter, Histogram } from "./metrics.js";
import { LATENCY_BUCKETS, MetricsRegistry } from "./metrics.js";

export interface HttpMetrics {
  readonly registry: MetricsRegistry;
  /** lorakit_http_requests_total{route,status} */
  readonly httpRequests: Counter;
  /** lorakit_requests_rejected_total{reason} */
  readonly rejected: Counter;
  /** lorakit_request_duration_seconds */
  readonly latency: Histogram;
  /** Generation requests being served (read by the lorakit_requests_in_flight gauge). */
  active: number;
}

/** A fresh registry with the HTTP metrics registered (in the order /metrics renders them). */
export function createHttpMetrics(): HttpMetrics {
  const registry = new MetricsRegistry();
  const m: HttpMetrics = {
    registry,
    httpRequests: registry.counter(
      "lorakit_http_requests_total",
      "HTTP requests answered, by route and status.",
    ),
    rejected: registry.counter("lorakit_requests_rejected_total", "Generation requests refused, by reason."),
    latency: registry.histogram(
      "lorakit_request_duration_seconds",
      "End-to-end time of a generation request.",
      LATENCY_BUCKETS,
    ),
    active: 0,
  };
  registry.gauge("lorakit_requests_in_flight", "Generation requests being served.").bind(() => m.active);
  return m;
}
