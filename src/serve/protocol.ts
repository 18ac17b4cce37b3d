// What crosses the worker boundary: the engine's request and events, RPC calls, and the
// server's limits. Plain JSON-able objects only (structured clone).
import type { KVDType } from "../models/llama/kv-cache.js";
import type { ServeErrorJson } from "./errors.js";

/** Limits that protect the server; a request beyond one is answered with a 4xx. */
export interface ServeLimits {
  /** Largest max_tokens a request may ask for (and the default when it asks none). */
  maxTokens: number;
  /** Longest prompt in tokens. */
  maxPromptTokens: number;
  /** Largest request body in bytes (413 beyond). */
  maxBodyBytes: number;
  /** Generation requests in flight at once (429 beyond). */
  maxConcurrent: number;
  /** Sequences decoded together in one forward pass; the rest wait their turn. */
  maxBatch: number;
  /** Adapters held in memory at once (least recently used idle ones are evicted). */
  maxLoadedAdapters: number;
  /** Bytes of adapter weights held in memory at once. */
  maxAdapterBytes: number;
  /** An adapter unused this long is unloaded (0 = never by time, only by the LRU bounds). */
  adapterIdleSeconds: number;
  /** A client must send a whole request (headers and body) within this many seconds (408 beyond). */
  requestTimeoutSeconds: number;
  /** /health answers 503 when one engine step or call has run longer than this. */
  stallSeconds: number;
}

export const DEFAULT_LIMITS: Readonly<ServeLimits> = Object.freeze({
  maxTokens: 256,
  maxPromptTokens: 2048,
  maxBodyBytes: 1 << 20,
  maxConcurrent: 128,
  maxBatch: 64,
  maxLoadedAdapters: 64,
  maxAdapterBytes: 1 << 30,
  adapterIdleSeconds: 0,
  requestTimeoutSeconds: 30,
  // Generous: one prefill step of a 7B model on a CPU can take minutes.
  stallSeconds: 600,
});

export type PromptInput =
  | { kind: "text"; text: string }
  | { kind: "ids"; ids: number[] }
  | { kind: "chat"; messages: { role: string; content: string }[] };

/** One generation as the engine sees it (the HTTP layer has validated the types). */
export interface GenRequest {
  /** The model id: the base model's id or an adapter's. */
  model: string;
  prompt: PromptInput;
  /** null: as many as the limit and the context allow. */
  maxTokens: number | null;
  temperature: number;
  topP: number;
  topK: number;
  seed: number | null;
  stop: string[];
  /** Keep generating after an EOS token (vLLM's ignore_eos). */
  ignoreEos: boolean;
  /**
   * Send a token event per generated token (a streamed response; the default). false: only
   * the final done event, whose text is decoded once, so a whole-response request costs the
   * model's thread no per-token detokenisation and the HTTP thread no per-token message.
   */
  tokenEvents?: boolean;
}

export type FinishReason = "stop" | "length";

export type EngineEvent =
  | { kind: "token"; token: number; text: string }
  | {
      kind: "done";
      finishReason: FinishReason;
      text: string;
      tokens: number[];
      promptTokens: number;
    }
  | { kind: "error"; error: ServeErrorJson };

export interface ModelEntry {
  id: string;
  /** null for the base model; the base model's id for an adapter. */
  parent: string | null;
  /** The adapter's folder (vLLM's `root`: the LoRA's local path). */
  root: string;
  loaded: boolean;
}

export interface WorkerInit {
  modelDir: string;
  baseId: string;
  adapterRoot: string | null;
  /** Adapters named on the command line (trusted paths, not confined to the root). */
  loras: { name: string; path: string }[];
  limits: ServeLimits;
  threads: number | null;
  backend: "auto" | "ref" | "native" | null;
  /** The dtype the base weights live in (loadModel's `dtype`). */
  dtype: "auto" | "f32" | "bf16";
  /** Storage of each sequence's KV cache (Engine's `kvDtype`). */
  kvDtype: KVDType;
  /** The shared slot of the engine's Heartbeat (set by EngineClient.start). */
  heartbeat?: SharedArrayBuffer;
}

export type RpcOp =
  | { op: "list" }
  | { op: "load"; name: string; path: string }
  | { op: "unload"; name: string }
  | { op: "metrics" };

export type ToWorker =
  | { type: "submit"; id: number; req: GenRequest }
  | { type: "cancel"; id: number }
  | { type: "rpc"; rid: number; call: RpcOp };

export type FromWorker =
  | {
      type: "ready";
      backend: string;
      /** Threads of the native kernels' pool (null for another backend). */
      threads: number | null;
      models: ModelEntry[];
      notice: string | null;
      /** Longest prompt + completion the model takes (vLLM's max_model_len). */
      maxModelLen: number;
    }
  | { type: "fatal"; message: string }
  /** The engine events of one step (or one submit), in the order they happened. */
  | { type: "events"; list: { id: number; ev: EngineEvent }[] }
  | { type: "rpc"; rid: number; ok: true; result: unknown }
  | { type: "rpc"; rid: number; ok: false; error: ServeErrorJson };
