// GET /v1/models: the base model and every loaded adapter as vLLM's ModelCard list.
import type { Hono } from "hono";
import type { EngineClient } from "./client.js";

export interface ModelsRouteOptions {
  client: EngineClient;
  baseId: string;
  /** Seconds since the epoch when the server started (every card's `created`). */
  created: number;
  /** The base's `root` (its folder as the operator named it); the base id when absent. */
  baseRoot?: string;
  /** The base's `max_model_len`; null when absent. */
  maxModelLen?: number | null;
}

export function addModelsRoute(app: Hono, o: ModelsRouteOptions): void {
  app.get("/v1/models", async (c) => {
    const adapters = await o.client.call({ op: "list" });
    // vLLM's ModelCard: the base's root is its model path and it alone has max_model_len;
    // an adapter's root is its folder and its parent the base.
    const card = (id: string, root: string, parent: string | null, maxModelLen: number | null) => ({
      id,
      object: "model",
      created: o.created,
      owned_by: "lorakit",
      root,
      parent,
      max_model_len: maxModelLen,
    });
    return c.json({
      object: "list",
      data: [
        card(o.baseId, o.baseRoot ?? o.baseId, null, o.maxModelLen ?? null),
        ...adapters.map((a) => card(a.id, a.root, a.parent, null)),
      ],
    });
  });
}
