// vLLM's dynamic LoRA endpoints: POST /v1/load_lora_adapter {lora_name, lora_path} and
// POST /v1/unload_lora_adapter {lora_name}, answered with vLLM's plain-text success lines.
// The engine validates names and paths (registry.ts) and its errors become 4xx JSON.
import type { Hono } from "hono";
import type { EngineClient } from "./client.js";
import { readJson } from "./http-json.js";
import { asObject } from "./requests.js";

export function addAdapterRoutes(app: Hono, client: EngineClient): void {
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
}
