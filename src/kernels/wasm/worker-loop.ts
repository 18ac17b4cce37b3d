// A kernel worker's life (the same in a browser Worker and a Node worker thread; worker.ts
// and node/worker.ts only connect it to their messaging): instantiate the threaded module
// on the shared memory with a stack of its own, say "ready", then block on the job board
// (control.ts) and run this thread's share of each job until told to quit. Browser-safe.
import {
  ARGS_AT,
  DONE,
  GEN,
  KERNEL,
  NARGS,
  NTH,
  QUIT,
  reportFailure,
  SPIN_MS,
  STOPPED,
  spinWhile,
} from "./control.js";
import { instantiateThreadedKernels, THREADED_KERNELS } from "./module.js";

/** What the caller posts to a new worker. */
export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** This worker's thread number, 1 … threads − 1 (the caller is 0). */
  tid: number;
  /** Byte address of the job board. */
  ctl: number;
  /** The top (highest address) of this worker's stack region. */
  stackTop: number;
}

/** What a worker posts back: once "ready", or "failed" when it could not start. */
export type WorkerReply = { type: "ready" } | { type: "failed"; message: string };

function message(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Starts the worker; returns only when it quits (or could not start). */
export async function runWorker(init: WorkerInit, post: (reply: WorkerReply) => void): Promise<void> {
  let ex: Awaited<ReturnType<typeof instantiateThreadedKernels>>;
  try {
    ex = await instantiateThreadedKernels(init.module, init.memory);
    ex.__stack_pointer.value = init.stackTop;
  } catch (e) {
    post({ type: "failed", message: message(e) });
    return;
  }
  const { memory, ctl, tid } = init;
  const board = new Int32Array(memory.buffer, ctl, 16);
  let seen = Atomics.load(board, GEN);
  post({ type: "ready" });
  const fns = THREADED_KERNELS.map((name) => ex[name] as (...args: number[]) => void);
  let inJob = false;
  try {
    for (;;) {
      const gen = spinWhile(board, GEN, seen, SPIN_MS);
      if (gen === seen) {
        Atomics.wait(board, GEN, seen);
        continue;
      }
      seen = gen;
      if (Atomics.load(board, QUIT) !== 0) return;
      inJob = true;
      const nth = Atomics.load(board, NTH);
      if (tid < nth) {
        // The arguments are re-read through a fresh view: the memory may have grown.
        const args = Array.from(new Float64Array(memory.buffer, ctl + ARGS_AT, Atomics.load(board, NARGS)));
        try {
          fns[Atomics.load(board, KERNEL)](...args, tid, nth);
        } catch (e) {
          reportFailure(memory, ctl, tid, message(e));
        }
      }
      inJob = false;
      Atomics.add(board, DONE, 1);
      Atomics.notify(board, DONE);
    }
  } catch (e) {
    // The loop itself failed: say so on the board so no caller waits for this worker again.
    reportFailure(memory, ctl, tid, message(e));
    Atomics.store(board, STOPPED, tid + 1);
    if (inJob) {
      Atomics.add(board, DONE, 1);
      Atomics.notify(board, DONE);
    }
  }
}
