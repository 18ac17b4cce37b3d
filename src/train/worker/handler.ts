// The worker side of the trainer protocol: answers a WorkerTrainer's requests from inside a
// Worker (or a Node worker_threads port wrapped to look like one). A worker entry module is two
// lines:
//
//   import { runTrainerWorker } from "lorakit";
//   runTrainerWorker(self);
import { TrainingError } from "../trainer.js";
import type { RequestMessage, ResponseMessage, WorkerAdapterFiles, WorkerProgress } from "./protocol.js";
import {
  errorPayload,
  isProtocolMessage,
  PROTOCOL,
  parseRequestMessage,
  WorkerProtocolError,
} from "./protocol.js";
import { TrainerSession } from "./session.js";

/** A message event as both ends read it: only `data` is used. */
export interface MessageLike {
  data: unknown;
}

/**
 * What both ends of the channel need of a port: a Worker, a worker's `self`, a MessagePort, or
 * a small adapter over Node's worker_threads. Listeners are declared as methods so that the
 * DOM's (which take a full MessageEvent) fit.
 */
export interface WorkerPortLike {
  /** The options form every port shares (Worker, a worker's self, MessagePort, even Window's types). */
  postMessage(message: unknown, options?: { transfer?: Transferable[] }): void;
  addEventListener?(type: "message", listener: (ev: MessageLike) => void): void;
  onmessage?: { handler(ev: MessageLike): void }["handler"] | null;
}

export interface TrainerWorkerOptions {
  /**
   * Picks the kernel backend before the first request is served, e.g.
   * `() => loadWasmBackend()`; its failure is the first request's error. Default: the engine's
   * current backend (the TypeScript reference kernels unless something set another).
   */
  backend?: () => unknown | Promise<unknown>;
}

/** Subscribes to a port's messages whichever way it offers them. */
export function onPortMessage(port: WorkerPortLike, fn: (data: unknown) => void): void {
  if (typeof port.addEventListener === "function") port.addEventListener("message", (ev) => fn(ev.data));
  else if ("onmessage" in port) port.onmessage = (ev) => fn(ev.data);
  else throw new WorkerProtocolError("the port has neither addEventListener nor onmessage");
}

/**
 * Serves the trainer protocol on `scope` until the worker ends. Requests run one at a time,
 * except cancel, which is answered at once and stops a running train() after its current step.
 *
 * @example
 * // trainer-worker.js, started with new Worker(new URL("./trainer-worker.js", import.meta.url), { type: "module" })
 * import { loadWasmBackend, runTrainerWorker } from "lorakit";
 * runTrainerWorker(self, { backend: () => loadWasmBackend() });
 */
export function runTrainerWorker(scope: WorkerPortLike, opts: TrainerWorkerOptions = {}): void {
  const session = new TrainerSession();
  let ready: Promise<unknown> | null = null;
  let queue: Promise<unknown> = Promise.resolve();
  /** Train requests received and not yet answered: while any is, only cancel is served. */
  let trainsPending = 0;
  const post = (msg: ResponseMessage, transfer?: Transferable[]) =>
    transfer ? scope.postMessage(msg, { transfer }) : scope.postMessage(msg);
  const fail = (id: number | null, e: unknown) =>
    post({ protocol: PROTOCOL, id, type: "error", error: errorPayload(e) });

  const serve = async (msg: RequestMessage): Promise<void> => {
    const { id, request: req } = msg;
    const progress = (event: WorkerProgress) => post({ protocol: PROTOCOL, id, type: "progress", event });
    try {
      ready ??= Promise.resolve(opts.backend?.());
      const backendInfo = await ready;
      let value: unknown;
      switch (req.kind) {
        case "load":
          value = await session.load(req.source, req.options, progress, backendInfo);
          break;
        case "train":
          value = await session.train(req.request, progress);
          break;
        case "generate":
          value = session.generate(req.prompt, req.options);
          break;
        case "evaluate":
          value = session.evaluate(req.text, req.options);
          break;
        case "adapterFiles":
          value = session.adapterFiles();
          break;
        case "cancel": {
          const pending = trainsPending > 0;
          if (pending) session.cancel();
          value = { cancelling: pending };
          break;
        }
        default:
          req satisfies never;
      }
      // The adapter's bytes are a fresh buffer: hand it over instead of copying it.
      const transfer =
        req.kind === "adapterFiles"
          ? [(value as WorkerAdapterFiles)["adapter_model.safetensors"].buffer]
          : undefined;
      post({ protocol: PROTOCOL, id, type: "result", value }, transfer as Transferable[] | undefined);
    } catch (e) {
      fail(id, e);
    } finally {
      if (req.kind === "train") trainsPending--;
    }
  };

  onPortMessage(scope, (data) => {
    if (!isProtocolMessage(data)) return;
    let msg: RequestMessage;
    try {
      msg = parseRequestMessage(data);
    } catch (e) {
      fail(typeof data.id === "number" ? data.id : null, e);
      return;
    }
    if (msg.request.kind === "cancel") {
      void serve(msg);
      return;
    }
    if (trainsPending > 0) {
      fail(
        msg.id,
        new TrainingError(
          `the worker is training; ${msg.request.kind} has to wait until train() resolves (or call cancel())`,
        ),
      );
      return;
    }
    if (msg.request.kind === "train") trainsPending++;
    queue = queue.then(() => serve(msg));
  });
}
