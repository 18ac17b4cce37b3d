// The HTTP thread's handle on the engine worker: submit a generation and receive its events,
// cancel it, and call the registry (list, load, unload, metrics). A worker that dies fails
// every open request with a 500 and leaves the server answering 503 on /health.
import { Worker } from "node:worker_threads";
import { ServeError } from "./errors.js";
import { Heartbeat } from "./heartbeat.js";
import type {
  EngineEvent,
  FromWorker,
  GenRequest,
  ModelEntry,
  RpcOp,
  ToWorker,
  WorkerInit,
} from "./protocol.js";

export interface StartedEngine {
  backend: string;
  /** Threads of the native kernels (null for another backend). */
  threads: number | null;
  models: ModelEntry[];
  notice: string | null;
  maxModelLen: number;
}

export class EngineClient {
  private nextId = 1;
  private readonly streams = new Map<number, (ev: EngineEvent) => void>();
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  /** Set when the worker died; every call fails with it. */
  dead: ServeError | null = null;

  private constructor(
    private readonly worker: Worker,
    private readonly heartbeat: Heartbeat,
  ) {}

  /** Starts the worker and waits until the model is loaded. */
  static start(init: WorkerInit): Promise<{ client: EngineClient; info: StartedEngine }> {
    const heartbeat = Heartbeat.create();
    const worker = new Worker(new URL("./worker.js", import.meta.url), {
      workerData: { ...init, heartbeat: heartbeat.buffer },
    });
    const client = new EngineClient(worker, heartbeat);
    return new Promise((resolve, reject) => {
      let ready = false;
      worker.on("message", (m: FromWorker) => {
        if (m.type === "ready") {
          ready = true;
          resolve({
            client,
            info: {
              backend: m.backend,
              threads: m.threads,
              models: m.models,
              notice: m.notice,
              maxModelLen: m.maxModelLen,
            },
          });
        } else if (m.type === "fatal") {
          reject(new ServeError(500, m.message, "engine_start_failed"));
          void worker.terminate();
        } else client.onMessage(m);
      });
      worker.on("error", (e) => {
        if (!ready) reject(e);
        client.die(`the engine worker failed: ${e.message}`);
      });
      worker.on("exit", (code) => {
        if (!ready)
          reject(new ServeError(500, `the engine worker exited (code ${code}) before it was ready`));
        client.die(`the engine worker exited (code ${code})`);
      });
    });
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    if (m.type === "events") {
      for (const { id, ev } of m.list) {
        const sink = this.streams.get(id);
        if (!sink) continue;
        if (ev.kind !== "token") this.streams.delete(id);
        sink(ev);
      }
    } else if (m.type === "rpc") {
      const c = this.calls.get(m.rid);
      if (!c) return;
      this.calls.delete(m.rid);
      if (m.ok) c.resolve(m.result);
      else c.reject(ServeError.fromJSON(m.error));
    }
  }

  private die(message: string): void {
    if (this.dead) return;
    this.dead = new ServeError(500, message, "engine_failed");
    for (const sink of this.streams.values()) sink({ kind: "error", error: this.dead.toJSON() });
    this.streams.clear();
    for (const c of this.calls.values()) c.reject(this.dead);
    this.calls.clear();
  }

  /** Submits a generation; `onEvent` gets its tokens, then one done or error. Returns a cancel function. */
  generate(req: GenRequest, onEvent: (ev: EngineEvent) => void): () => void {
    const id = this.nextId++;
    if (this.dead) {
      onEvent({ kind: "error", error: this.dead.toJSON() });
      return () => {};
    }
    this.streams.set(id, onEvent);
    this.send({ type: "submit", id, req });
    return () => {
      if (!this.streams.delete(id)) return;
      this.send({ type: "cancel", id });
    };
  }

  call(call: { op: "list" }): Promise<ModelEntry[]>;
  call(call: { op: "metrics" }): Promise<string>;
  call(call: RpcOp): Promise<unknown>;
  call(call: RpcOp): Promise<unknown> {
    if (this.dead) return Promise.reject(this.dead);
    const rid = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(rid, { resolve, reject });
      this.send({ type: "rpc", rid, call });
    });
  }

  /** Milliseconds the worker's current step or call has been running (0 when idle). */
  busyFor(): number {
    return this.heartbeat.busyFor();
  }

  get inFlight(): number {
    return this.streams.size;
  }

  async close(): Promise<void> {
    this.dead ??= new ServeError(503, "the server is shutting down", "shutting_down");
    await this.worker.terminate();
  }
}
