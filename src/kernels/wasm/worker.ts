// A browser module Worker running its share of the wasm kernel calls (worker-loop.ts). The
// caller starts it with new Worker(new URL("./worker.js", import.meta.url), { type: "module" }).
import { runWorker, type WorkerInit } from "./worker-loop.js";

const scope = globalThis as unknown as {
  onmessage: ((e: { data: unknown }) => void) | null;
  postMessage(message: unknown): void;
};
scope.onmessage = (e) => {
  scope.onmessage = null;
  void runWorker(e.data as WorkerInit, (reply) => scope.postMessage(reply));
};
