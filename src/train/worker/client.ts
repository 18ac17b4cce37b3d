// The main-thread side of the trainer protocol: a promise per request, progress events, and the
// worker's errors rethrown with their original message. Takes any Worker-like port, so a page
// passes a Worker and a Node test a wrapped worker_threads Worker.
import type { FileLike } from "../../io/folder-source.js";
import type { WorkerPortLike } from "./handler.js";
import { onPortMessage } from "./handler.js";
import type {
  WorkerAdapterFiles,
  WorkerEvaluateOptions,
  WorkerEvaluateResult,
  WorkerGenerateOptions,
  WorkerGenerateResult,
  WorkerLoadOptions,
  WorkerModelInfo,
  WorkerModelSource,
  WorkerProgress,
  WorkerRequest,
  WorkerTrainRequest,
  WorkerTrainResult,
} from "./protocol.js";
import {
  isProtocolMessage,
  PROTOCOL,
  parseResponseMessage,
  WorkerError,
  WorkerProtocolError,
} from "./protocol.js";

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** A model folder for load(): its URL, the files a user picked or dropped, or bytes by file name. */
export type WorkerTrainerSource =
  | { url: string | URL }
  | { files: ArrayLike<FileLike> | Iterable<FileLike> }
  | { bytes: Record<string, Uint8Array | string>; label?: string };

/**
 * Trains a LoRA adapter in a Worker, so the page stays responsive. Every method sends one
 * request; the promise settles with the worker's answer, or rejects with its error's message.
 *
 * @example
 * const trainer = new WorkerTrainer(new Worker(new URL("./trainer-worker.js", import.meta.url), { type: "module" }));
 * trainer.on("progress", (e) => { if (e.type === "step") chart.push(e.loss); });
 * await trainer.load({ url: "/models/demo-base/" });
 * const result = await trainer.train({ text, steps: 20, r: 16, targetModules: "all-linear" });
 * const files = await trainer.adapterFiles(); // adapter_config.json + adapter_model.safetensors
 */
export class WorkerTrainer {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(e: WorkerProgress) => void>();
  private disposed = false;

  constructor(private readonly port: WorkerPortLike & { terminate?(): unknown }) {
    onPortMessage(port, (data) => this.receive(data));
    // A Worker whose script fails to load or throws at top level reports it as an "error" event.
    // A message that cannot be deserialised arrives as "messageerror": the call it answered is
    // unknown, so every pending call fails.
    if (typeof port.addEventListener === "function") {
      const listen = port.addEventListener as (t: string, fn: (ev: unknown) => void) => void;
      listen.call(port, "error", (ev) => {
        const message = (ev as { message?: string })?.message ?? "the worker failed";
        this.rejectAll(new WorkerProtocolError(`trainer worker: ${message}`));
      });
      listen.call(port, "messageerror", () =>
        this.rejectAll(
          new WorkerProtocolError("trainer worker: a reply could not be deserialised (messageerror)"),
        ),
      );
    }
  }

  /** Subscribes to progress events (load bytes, training start, each step, eval); returns the unsubscribe. */
  on(event: "progress", fn: (e: WorkerProgress) => void): () => void {
    if (event !== "progress")
      throw new WorkerProtocolError(`WorkerTrainer.on: unknown event ${JSON.stringify(event)}`);
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Loads a model folder (config, weights, tokenizer) into the worker. */
  load(source: WorkerTrainerSource, options: WorkerLoadOptions = {}): Promise<WorkerModelInfo> {
    let src: WorkerModelSource;
    if ("url" in source) src = { url: absoluteUrl(source.url) };
    else if ("files" in source) src = { files: Array.from(source.files as Iterable<FileLike>) };
    else src = { bytes: source.bytes, label: source.label };
    return this.request({ kind: "load", source: src, options }) as Promise<WorkerModelInfo>;
  }

  /** Trains a fresh LoRA adapter; resolves when done or cancelled (`cancelled` says which). */
  train(request: WorkerTrainRequest): Promise<WorkerTrainResult> {
    return this.request({ kind: "train", request }) as Promise<WorkerTrainResult>;
  }

  /** Stops a running train() after its current step; the adapter trained so far stays. */
  cancel(): Promise<void> {
    return this.request({ kind: "cancel" }).then(() => undefined);
  }

  /** Continues `prompt` (greedy by default) with the adapter, or the base model with `adapter: false`. */
  generate(prompt: string, options: WorkerGenerateOptions = {}): Promise<WorkerGenerateResult> {
    return this.request({ kind: "generate", prompt, options }) as Promise<WorkerGenerateResult>;
  }

  /** Mean next-token loss of `text` (nats), as `lorakit eval` computes it. */
  evaluate(text: string, options: WorkerEvaluateOptions = {}): Promise<WorkerEvaluateResult> {
    return this.request({ kind: "evaluate", text, options }) as Promise<WorkerEvaluateResult>;
  }

  /** The trained adapter as PEFT's two files, byte for byte what savePretrained writes. */
  adapterFiles(): Promise<WorkerAdapterFiles> {
    return this.request({ kind: "adapterFiles" }) as Promise<WorkerAdapterFiles>;
  }

  /** Rejects every pending call and terminates the worker when the port can. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.rejectAll(new WorkerProtocolError("WorkerTrainer was disposed"));
    this.listeners.clear();
    this.port.terminate?.();
  }

  private request(request: WorkerRequest): Promise<unknown> {
    if (this.disposed) return Promise.reject(new WorkerProtocolError("WorkerTrainer was disposed"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      try {
        this.port.postMessage({ protocol: PROTOCOL, id, request });
      } catch (e) {
        this.pending.delete(id);
        reject(e as Error);
      }
    });
  }

  private rejectAll(error: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(error);
  }

  private receive(data: unknown): void {
    if (!isProtocolMessage(data)) return;
    let msg: ReturnType<typeof parseResponseMessage>;
    try {
      msg = parseResponseMessage(data);
    } catch (e) {
      // A reply we cannot read could have been any call's: fail them all, loudly.
      this.rejectAll(e as Error);
      return;
    }
    if (msg.type === "progress") {
      for (const fn of this.listeners) fn(msg.event);
      return;
    }
    if (msg.id === null) {
      if (msg.type === "error") this.rejectAll(new WorkerError(msg.error.name, msg.error.message));
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return; // an answer to a call already given up on (dispose)
    this.pending.delete(msg.id);
    if (msg.type === "result") p.resolve(msg.value);
    else p.reject(new WorkerError(msg.error.name, msg.error.message));
  }
}

/** A relative URL means the page's, not the worker script's: resolve it here, on the page. */
function absoluteUrl(url: string | URL): string {
  const where = (globalThis as { location?: { href?: string } }).location?.href;
  return where ? new URL(String(url), where).toString() : String(url);
}
