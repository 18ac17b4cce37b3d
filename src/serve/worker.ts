// The model's thread: loads the base model, tokenizer and adapter registry, then runs the
// engine loop, one step per macrotask so that messages (new requests, cancellations,
// load/unload calls) are handled between steps. Native kernels run synchronously here, never
// on the HTTP thread (ARCHITECTURE.md, "servers call the model from a worker thread").
import { parentPort, workerData } from "node:worker_threads";
import { setPoolLimitBytes } from "../core/memory.js";
import { loadAddon } from "../kernels/native/loader.js";
import { selectBackend } from "../kernels/select.js";
import { loadModel } from "../models/node/load.js";
import { loadTokenizer } from "../tokenizer/node.js";
import { createEngineMetrics, Engine } from "./engine.js";
import { ServeError } from "./errors.js";
import { Heartbeat } from "./heartbeat.js";
import type { EngineEvent, FromWorker, RpcOp, ToWorker, WorkerInit } from "./protocol.js";
import { AdapterRegistry } from "./registry.js";

/** Idle temporaries the serving worker keeps for reuse. */
const SERVE_POOL_BYTES = 64 * 2 ** 20;

if (!parentPort) throw new Error("src/serve/worker.ts runs as a worker thread (see EngineClient)");
const port = parentPort;
const post = (m: FromWorker) => port.postMessage(m);
// Engine events wait here until the step (or message) that made them ends, then cross in one
// message: a decode step makes one event per running request, and a message each cost the
// model's thread more than the step's attention.
let pending: { id: number; ev: EngineEvent }[] = [];
const flush = () => {
  if (pending.length === 0) return;
  post({ type: "events", list: pending });
  pending = [];
};

async function main(init: WorkerInit): Promise<void> {
  if (init.threads !== null) process.env.LORAKIT_THREADS = String(init.threads);
  const { backend, notice } = await selectBackend(init.backend ?? undefined);
  const threads = nativeThreads(backend.name, init.threads);
  // Steps of the continuous batch hold a different number of tokens each time (decode rows
  // plus prompt chunks), so their temporaries come in many sizes: an idle pool as large as
  // training's would keep up to 1 GiB of them. Serving keeps a smaller one.
  setPoolLimitBytes(SERVE_POOL_BYTES);
  const { model } = loadModel(init.modelDir, { dtype: init.dtype });
  const tokenizer = loadTokenizer(init.modelDir);
  if (tokenizer.vocabSize > model.config.vocabSize)
    throw new ServeError(
      500,
      `${init.modelDir}: the tokenizer has ${tokenizer.vocabSize} ids but the model's vocab_size is ${model.config.vocabSize}`,
    );
  const metrics = createEngineMetrics();
  const registry = new AdapterRegistry(model, {
    baseId: init.baseId,
    root: init.adapterRoot,
    maxLoaded: init.limits.maxLoadedAdapters,
    maxBytes: init.limits.maxAdapterBytes,
    idleMs: init.limits.adapterIdleSeconds * 1000,
    onLoad: (_id, s) => {
      metrics.adapterLoads.inc();
      metrics.adapterLoadSeconds.observe(s);
    },
    onEvict: (_id, reason) => metrics.adapterEvictions.inc({ reason }),
  });
  for (const l of init.loras) registry.register(l.name, l.path, { trusted: true });
  registry.scan();
  const engine = new Engine({
    model,
    tokenizer,
    registry,
    baseId: init.baseId,
    limits: init.limits,
    kvDtype: init.kvDtype,
    metrics,
  });

  // Each step and call is stamped so that /health sees one that never ends.
  const beat = new Heartbeat(init.heartbeat ?? new SharedArrayBuffer(8));
  let looping = false;
  const loop = () => {
    try {
      beat.run(() => engine.step());
    } catch (e) {
      // The engine reports per-request errors itself; this is a bug, but keep serving.
      process.stderr.write(`lorakit: engine step failed: ${(e as Error).stack ?? e}\n`);
    }
    flush();
    if (engine.busy) setImmediate(loop);
    else looping = false;
  };
  const kick = () => {
    if (looping) return;
    looping = true;
    setImmediate(loop);
  };

  const rpc = (call: RpcOp): unknown => {
    switch (call.op) {
      case "list":
        return registry.list();
      case "load":
        registry.register(call.name, call.path);
        return null;
      case "unload":
        registry.unregister(call.name);
        return null;
      case "metrics":
        return metrics.registry.render();
      default:
        return call satisfies never;
    }
  };

  port.on("message", (m: ToWorker) => {
    switch (m.type) {
      case "submit":
        beat.run(() => engine.submit(m.id, m.req, (ev) => pending.push({ id: m.id, ev })));
        flush();
        kick();
        return;
      case "cancel":
        engine.cancel(m.id);
        flush();
        return;
      case "rpc":
        try {
          post({ type: "rpc", rid: m.rid, ok: true, result: beat.run(() => rpc(m.call)) });
        } catch (e) {
          post({ type: "rpc", rid: m.rid, ok: false, error: ServeError.from(e, 400).toJSON() });
        }
        return;
      default:
        return m satisfies never;
    }
  });
  const cfg = model.config;
  const window = cfg.layerTypes.includes("sliding_attention") ? cfg.slidingWindow : null;
  const maxModelLen = Math.min(cfg.maxPositionEmbeddings, window ?? Number.POSITIVE_INFINITY);
  post({ type: "ready", backend: backend.name, threads, models: registry.list(), notice, maxModelLen });
}

/**
 * Sizes the native kernels' thread pool to `want` (null: as it is) and returns its size; null
 * for other backends. The addon reads LORAKIT_THREADS from the process's environment, which a
 * worker's process.env (its own copy) never reaches, so the size is set by call.
 */
function nativeThreads(backendName: string, want: number | null): number | null {
  if (backendName !== "native") return null;
  const loaded = loadAddon();
  if (!("addon" in loaded)) return null;
  if (want !== null) loaded.addon.setThreads(want);
  return loaded.addon.getThreads();
}

main(workerData as WorkerInit).catch((e) => {
  post({ type: "fatal", message: e instanceof Error ? e.message : String(e) });
});
