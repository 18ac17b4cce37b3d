// A Node worker thread running its share of the wasm kernel calls (worker-loop.ts); started
// by node/load.ts.
import { parentPort } from "node:worker_threads";
import { runWorker, type WorkerInit } from "../worker-loop.js";

const port = parentPort;
if (port === null) throw new Error("lorakit: kernels/wasm/node/worker.js runs only as a worker thread");
port.once("message", (init: WorkerInit) => {
  void runWorker(init, (reply) => port.postMessage(reply)).then(() => port.close());
});
