// Starting and stopping the whole server: the engine worker (model, adapters, batching)
// and the HTTP front (hono on Node's http server) on the event loop of the calling thread.
import { lookup } from "node:dns/promises";
import { existsSync, statSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { availableParallelism } from "node:os";
import { basename, resolve } from "node:path";
import { serve } from "@hono/node-server";
import { type KVDType, kvDType } from "../models/llama/kv-cache.js";
import { EngineClient } from "./client.js";
import { ServeError } from "./errors.js";
import { createApp } from "./http.js";
import { isValidAdapterName } from "./paths.js";
import type { ModelEntry, ServeLimits } from "./protocol.js";
import { DEFAULT_LIMITS } from "./protocol.js";

export interface ServeOptions {
  /** The base model folder (config.json, safetensors, tokenizer.json). */
  modelDir: string;
  /** Folder whose subfolders are PEFT adapters; run-time loads are confined to it. */
  adapterRoot?: string | null;
  /** Extra adapters by name (the operator's own paths, not confined to the root). */
  loras?: { name: string; path: string }[];
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** The base model's id (default: the model folder's name). */
  baseId?: string;
  limits?: Partial<ServeLimits>;
  threads?: number | null;
  backend?: "auto" | "ref" | "native" | null;
  /** The dtype the base weights live in: auto (default; a bf16 checkpoint stays bf16), f32, bf16. */
  dtype?: "auto" | "f32" | "bf16";
  /** Storage of each request's KV cache: f32 (default) or bf16 (half the memory per request). */
  kvDtype?: KVDType;
}

export interface RunningServer {
  url: string;
  port: number;
  baseId: string;
  /** Adapters known at start. */
  adapters: ModelEntry[];
  backend: string;
  /** Threads the native kernels run on (null for another backend). */
  threads: number | null;
  notice: string | null;
  close(): Promise<void>;
}

function checkLimits(l: ServeLimits): void {
  for (const [k, v] of Object.entries(l))
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || (k !== "adapterIdleSeconds" && v < 1))
      throw new ServeError(400, `limit ${k} must be a positive number, got ${v}`);
}

/**
 * Node's http server waits 300 s for a request's body by default, so a client that sends a
 * byte at a time holds a connection (and its memory) for five minutes. A whole request must
 * arrive within `seconds` (408 beyond), its headers within 10 s of that, and the timeouts are
 * checked often enough to matter.
 */
function requestTimeouts(seconds: number) {
  const ms = Math.round(seconds * 1000);
  return {
    requestTimeout: ms,
    headersTimeout: Math.min(ms, 10_000),
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(ms / 4))),
  };
}

/**
 * Loads the model in a worker thread and serves the OpenAI-compatible API.
 *
 * @example
 * const s = await startServer({ modelDir: "./base", adapterRoot: "./adapters", port: 0 });
 * console.log(s.url); // http://127.0.0.1:PORT
 * await s.close();
 */
export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const modelDir = resolve(o.modelDir);
  if (!existsSync(modelDir)) throw new ServeError(400, `model folder ${o.modelDir} does not exist`);
  const adapterRoot = o.adapterRoot ? resolve(o.adapterRoot) : null;
  if (adapterRoot !== null && (!existsSync(adapterRoot) || !statSync(adapterRoot).isDirectory()))
    throw new ServeError(400, `adapter root ${o.adapterRoot} is not a folder`);
  const baseId = o.baseId ?? basename(modelDir);
  if (!isValidAdapterName(baseId))
    throw new ServeError(
      400,
      `the base model id ${JSON.stringify(baseId)} is not a valid model id; pass another name`,
    );
  const limits: ServeLimits = { ...DEFAULT_LIMITS, ...o.limits };
  checkLimits(limits);
  const kvDtype = kvDType(o.kvDtype ?? "f32", "kvDtype");
  const host = o.host ?? "127.0.0.1";
  // Before the model loads: a host that names no address fails in a second, not after a minute.
  await lookup(host).catch((e: NodeJS.ErrnoException) => {
    throw new ServeError(
      400,
      `--host ${host} is neither an IP address nor a name that resolves (${e.code ?? e.message}); use e.g. 127.0.0.1, 0.0.0.0 or ::1`,
      "invalid_host",
      null,
      { cause: e },
    );
  });
  const { client, info } = await EngineClient.start({
    modelDir,
    baseId,
    adapterRoot,
    loras: o.loras ?? [],
    limits,
    // More threads than cores only add switching (and deadlocked under a memory limit).
    threads: o.threads == null ? null : Math.max(1, Math.min(o.threads, availableParallelism())),
    backend: o.backend ?? null,
    dtype: o.dtype ?? "auto",
    kvDtype,
  });
  const app = createApp({ client, baseId, limits, baseRoot: o.modelDir, maxModelLen: info.maxModelLen });
  let server: ReturnType<typeof serve>;
  try {
    server = await new Promise<ReturnType<typeof serve>>((res, rej) => {
      const s = serve(
        {
          fetch: app.fetch,
          port: o.port ?? 8000,
          hostname: host,
          serverOptions: requestTimeouts(limits.requestTimeoutSeconds),
        },
        () => res(s),
      );
      s.once("error", rej);
    });
  } catch (e) {
    await client.close();
    const code = (e as NodeJS.ErrnoException).code;
    throw new ServeError(
      500,
      `cannot listen on ${host}:${o.port ?? 8000} (${code ?? (e as Error).message}${code === "EADDRINUSE" ? ": another process uses that port; pick another with --port" : code === "EADDRNOTAVAIL" ? ": not an address of this machine" : ""})`,
      "listen_failed",
      null,
      { cause: e },
    );
  }
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}`,
    port,
    baseId,
    adapters: info.models,
    backend: info.backend,
    threads: info.threads,
    notice: info.notice,
    close: async () => {
      await new Promise<void>((res) => {
        server.close(() => res());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await client.close();
    },
  };
}
