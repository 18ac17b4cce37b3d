// A kernel worker's life (the same in a browser Worker and a Node worker thread; worker.ts
// and node/worker.ts only connect it to their messaging): instantiate the threaded module
// on the shared memory with a stack of its own, say "ready", then block on the job board
// (control.ts) and run the parts of each job it claims until told to quit. Browser-safe.
import {
  ARGS_AT,
  claimPart,
  DONE,
  GEN,
  KERNEL,
  NARGS,
  NTH,
  partDoneMarks,
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
  const partDone = partDoneMarks(memory, ctl);
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
      // Read once per job: when the caller has moved on to the next job meanwhile (these reads
      // may then mix two jobs), claimPart finds the generation changed and nothing runs.
      const parts = Atomics.load(board, NTH);
      const fn = fns[Atomics.load(board, KERNEL)];
      // The arguments are read through a fresh view: the memory may have grown.
      const args = Array.from(new Float64Array(memory.buffer, ctl + ARGS_AT, Atomics.load(board, NARGS)));
      for (;;) {
        const part = claimPart(board, gen, parts);
        if (part < 0) break;
        inJob = true;
        try {
          fn?.(...args, part, parts);
        } catch (e) {
          reportFailure(memory, ctl, tid, message(e));
        }
        inJob = false;
        Atomics.store(partDone, part, gen);
        Atomics.add(board, DONE, 1);
        Atomics.notify(board, DONE);
      }
    }
  } catch (e) {
    // The loop itself failed: say so on the board so no caller waits for this worker again
    // (a part it had claimed counts as done, failed).
    reportFailure(memory, ctl, tid, message(e));
    Atomics.store(board, STOPPED, tid + 1);
    if (inJob) {
      Atomics.add(board, DONE, 1);
      Atomics.notify(board, DONE);
    }
  }
}
