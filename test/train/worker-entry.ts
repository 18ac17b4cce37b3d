// The worker entry the trainer-worker tests start with worker_threads: the parent port wrapped
// as the Worker-like port runTrainerWorker takes (a page's entry passes `self`).
import { parentPort } from "node:worker_threads";
import { runTrainerWorker } from "../../src/train/worker/handler.js";

const port = parentPort;
if (!port) throw new Error("worker-entry.js runs inside a worker thread");
runTrainerWorker({
  postMessage: (msg, opts) => port.postMessage(msg, opts?.transfer as ArrayBuffer[] | undefined),
  addEventListener: (_type, listener) => port.on("message", (data) => listener({ data })),
});
