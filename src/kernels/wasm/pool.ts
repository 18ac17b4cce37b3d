// The caller's side of the wasm threads: the threaded module instantiated on one shared
// memory by the caller (thread 0) and by threads − 1 workers, each with its own stack, and a
// job board (control.ts) through which each kernel call is cut into parts that every thread
// claims as it gets to them (PARTS_PER_THREAD per thread). Browser-safe:
// how a worker is started (Node worker_threads, a browser module Worker) is the `spawn`
// function's business.
//
// The caller blocks in Atomics.wait until the workers finish, so a call stays synchronous,
// as the Backend contract wants; Atomics.wait is allowed in Node (main thread included) and
// in browser Workers, not on a page's main thread (load.ts runs one thread there).

import { BackendError } from "../../core/errors.js";
import {
  ARGS_AT,
  BOARD_BYTES,
  claimPart,
  DONE,
  FAILED,
  GEN,
  KERNEL,
  MAX_ARGS,
  MAX_PARTS,
  NARGS,
  NTH,
  partDoneMarks,
  QUIT,
  readFailure,
  SPIN_MS,
  STOPPED,
  spinWhile,
  TICKET,
  ticketBase,
} from "./control.js";
import {
  instantiateThreadedKernels,
  THREADED_KERNELS,
  type ThreadedKernel,
  type WasmExports,
} from "./module.js";
import { OPS_WORK } from "./ops-exports.js";
import type { WorkerInit, WorkerReply } from "./worker-loop.js";

/** A started worker, whatever runs it. */
export interface WorkerHandle {
  post(init: WorkerInit): void;
  /** Replies the worker posts (worker-loop.ts). */
  onReply(listener: (reply: WorkerReply) => void): void;
  /** The worker died or exited (`why` says how); not called after terminate(). */
  onExit(listener: (why: string) => void): void;
  terminate(): void;
  /** Node: let the process exit while this worker waits for jobs. */
  unref?(): void;
}
export type SpawnWorker = (tid: number) => WorkerHandle;

/** Bytes of stack each worker gets (the kernels keep only a few small arrays there). */
const STACK_BYTES = 256 * 1024;
/** Calls smaller than this (about 2·flops) run on the caller alone: waking workers costs tens of µs. */
export const DEFAULT_SPLIT_ABOVE = 1 << 20;
/**
 * Parts per thread a split call is cut into. More than one, so that when the OS runs one
 * thread late (2 threads on a 2-core machine that also runs other work, or a browser
 * throttling a Worker) the others take its parts instead of waiting for it; few, since each
 * part repacks its own operand panels.
 */
export const PARTS_PER_THREAD = 4;
/**
 * Split calls over which the caller judges whether splitting paid: the time the workers'
 * parts saved it (their parts × the caller's own time per part) against the time it waited
 * for them at the end of each call. On a host whose other core is busy (a shared machine, a
 * browser's other tabs) a worker claims parts late or is descheduled while it holds one, and
 * the caller waits longer than the worker saved: two threads ran slower than one.
 */
const JUDGE_EVERY = 32;
/** Large calls run on the caller alone after a window in which splitting did not pay; then it tries again. */
const BACKOFF_CALLS = 256;
/**
 * Split calls the pool makes before it first judges: while they run, each worker's instance
 * is still compiling its hot functions up from the baseline tier (every Worker tiers up its
 * own code) and touching its stack and the arena for the first time, so the caller waits
 * for it whatever the host's load. Judged, that warm-up sent the first 256 calls of a
 * browser page's training (its first ~3 steps) to one thread on an idle host: round 1 of
 * bench/browser ran at 104 ms per step against 86 in later rounds (89 / 89 / 92 without it).
 */
export const WARMUP_SPLIT_CALLS = 64;

/** Memory pages (64 KiB) the shared memory may grow to, tried in order (a 32-bit browser may refuse 4 GiB). */
const MAX_PAGES = [65536, 32768, 16384];
/** How long a worker may take to start before the pool gives up on threads. */
const START_TIMEOUT_MS = 60_000;

/** Rough work of a call, from its arguments (the C signatures in module.ts). */
const WORK: Record<ThreadedKernel, (a: readonly number[]) => number> = {
  wasm_gemm: (a) => 2 * a[2] * a[3] * Math.max(a[4], 1) * a[5],
  wasm_attention: (a) => 4 * a[3] * a[4] * a[5] * a[6] * a[8],
  wasm_attention_backward: (a) => 8 * a[3] * a[4] * a[5] * a[6] * a[8],
  wasm_silu_mul: (a) => 16 * a[3],
  wasm_silu_mul_backward: (a) => 24 * a[5],
  wasm_row_max_sumexp: (a) => 16 * a[1] * a[2],
  wasm_cross_entropy_backward: (a) => 16 * a[4] * a[5],
  wasm_rms_norm: (a) => 4 * a[2] * a[3],
  wasm_rms_norm_backward: (a) => 8 * a[4] * a[5],
  wasm_adamw: (a) => 16 * a[4],
  wasm_rope: (a) => 4 * a[3] * a[4] * a[5] * a[6],
  wasm_softmax: (a) => 16 * a[1] * a[2],
  wasm_row_sub: (a) => a[2] * a[3],
  wasm_softmax_backward: (a) => 16 * a[2] * a[3],
  wasm_binary: (a) => a[8] * a[9],
  wasm_axpy: (a) => 2 * a[3],
  wasm_dropout: (a) => 16 * a[2],
  wasm_unary: (a) => 2 * a[3],
  ...OPS_WORK,
};

function align(x: number, to: number): number {
  return Math.ceil(x / to) * to;
}

/** A shared memory with the largest maximum this engine grants. */
function sharedMemory(initialBytes: number): { memory: WebAssembly.Memory; maxBytes: number } {
  let last: unknown;
  for (const maximum of MAX_PAGES) {
    try {
      const initial = Math.ceil(initialBytes / 65536);
      return {
        memory: new WebAssembly.Memory({ initial, maximum, shared: true }),
        maxBytes: maximum * 65536,
      };
    } catch (e) {
      last = e;
    }
  }
  throw new BackendError(
    `lorakit: no shared WebAssembly memory here (${last instanceof Error ? last.message : String(last)})`,
    { cause: last },
  );
}

export class WasmThreadPool {
  /** The caller's instance (thread 0). */
  readonly ex: WasmExports;
  /** Bytes the memory may grow to. */
  readonly maxBytes: number;
  /** First byte the arena may use (after the board and the workers' stacks). */
  readonly arenaBase: number;
  private readonly board: Int32Array;
  /** The board's per-part done marks (control.ts). */
  private readonly partDone: Int32Array;
  private readonly ctl: number;
  private workers: WorkerHandle[];
  private broken: BackendError | null = null;
  private disposed = false;
  /**
   * Calls whose work estimate (WORK) is below this run on the caller alone. 0 splits every
   * call, always (tests): no backing off either.
   */
  splitAbove = DEFAULT_SPLIT_ABOVE;
  /** The current judging window (JUDGE_EVERY split calls): ms saved by the workers, ms waited for them. */
  private window = { calls: 0, savedMs: 0, waitedMs: 0 };
  /** Split calls still to make before the first judgement (WARMUP_SPLIT_CALLS). */
  private warmup = WARMUP_SPLIT_CALLS;
  /** Large calls still to run on the caller alone (BACKOFF_CALLS after a window that did not pay). */
  private backoff = 0;
  /** Large calls run on the caller alone because splitting did not pay (a statistic; tests, benches). */
  backedOffCalls = 0;

  private constructor(ex: WasmExports, maxBytes: number, ctl: number, arenaBase: number) {
    this.ex = ex;
    this.maxBytes = maxBytes;
    this.ctl = ctl;
    this.arenaBase = arenaBase;
    this.board = new Int32Array(ex.memory.buffer, ctl, 16);
    this.partDone = partDoneMarks(ex.memory, ctl);
    this.workers = [];
  }

  /** Threads a large call runs on now (the caller included); 1 after dispose(). */
  get threads(): number {
    return this.workers.length + 1;
  }

  /** Parts a large call is cut into now (the kernels' nth; per-part scratch is sized by it); 1 after dispose(). */
  get parts(): number {
    const n = this.threads;
    return n === 1 ? 1 : Math.min(n * PARTS_PER_THREAD, MAX_PARTS);
  }

  /**
   * Instantiates `module` on the caller and starts `threads` − 1 workers with `spawn`;
   * resolves when every worker is ready, rejects (after stopping them) when one fails.
   */
  static async start(
    module: WebAssembly.Module,
    threads: number,
    spawn: SpawnWorker,
  ): Promise<WasmThreadPool> {
    if (!Number.isInteger(threads) || threads < 1 || threads > 256)
      throw new RangeError(`wasm threads must be an integer in [1, 256], got ${threads}`);
    const { memory, maxBytes } = sharedMemory(4 << 20);
    const ex = await instantiateThreadedKernels(module, memory);
    const ctl = align(ex.__heap_base.value as number, 64);
    const stacks = align(ctl + BOARD_BYTES, 16);
    const arenaBase = stacks + (threads - 1) * STACK_BYTES;
    if (memory.buffer.byteLength < arenaBase)
      memory.grow(Math.ceil((arenaBase - memory.buffer.byteLength) / 65536));
    const pool = new WasmThreadPool(ex, maxBytes, ctl, arenaBase);
    const started: Promise<void>[] = [];
    const timers: ReturnType<typeof setTimeout>[] = [];
    try {
      for (let tid = 1; tid < threads; tid++) {
        const stackTop = stacks + tid * STACK_BYTES;
        const w = spawn(tid);
        pool.workers.push(w);
        started.push(pool.ready(w, tid, timers));
        w.post({ module, memory, tid, ctl, stackTop });
      }
      await Promise.all(started);
    } catch (e) {
      pool.dispose();
      throw e;
    } finally {
      // Every pending start timer goes, also those of workers that never answered.
      for (const t of timers) clearTimeout(t);
    }
    for (const w of pool.workers) w.unref?.();
    return pool;
  }

  /** Resolves when worker `tid` says ready; afterwards its death marks the pool broken. */
  private ready(w: WorkerHandle, tid: number, timers: ReturnType<typeof setTimeout>[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let up = false;
      const timer = setTimeout(
        () =>
          reject(
            new BackendError(`lorakit: wasm worker ${tid} did not start within ${START_TIMEOUT_MS / 1000} s`),
          ),
        START_TIMEOUT_MS,
      );
      timers.push(timer);
      const settle = (err: BackendError | null) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      w.onReply((r) => {
        if (r.type === "ready") {
          up = true;
          settle(null);
        } else settle(new BackendError(`lorakit: wasm worker ${tid} could not start: ${r.message}`));
      });
      w.onExit((why) => {
        if (!up) settle(new BackendError(`lorakit: wasm worker ${tid} could not start: ${why}`));
        else if (!this.disposed)
          this.broken ??= new BackendError(
            `lorakit: wasm worker ${tid} stopped (${why}); load the backend again`,
          );
      });
    });
  }

  /**
   * Runs kernel `name` with `args` (its C arguments without tid and nth) cut into `parts`
   * parts that the caller and the workers claim, or on the caller alone when the call is
   * small; returns when every part is done. A part that throws (on a worker or here) is a
   * BackendError naming the thread and the kernel; which thread ran it is the OS's choice.
   *
   * `onPart(part, parts)`, when given, is called on the calling thread once for every part
   * (part 0 of 1 when the call was not split), as soon as that part's output is written:
   * right after the caller ran it, or when the caller sees a worker's part finished while it
   * waits for the rest. The host copies that part's output out there, while the workers still
   * compute theirs, instead of after the whole call. Not called for any part once a part
   * has failed (the call then throws).
   */
  run(name: ThreadedKernel, args: readonly number[], onPart?: (part: number, parts: number) => void): void {
    const fn = this.ex[name] as (...a: number[]) => void;
    const parts = this.parts;
    let alone = parts === 1 || WORK[name](args) < this.splitAbove;
    if (!alone && this.backoff > 0 && this.splitAbove > 0) {
      this.backoff--;
      this.backedOffCalls++;
      alone = true;
    }
    if (alone) {
      fn(...args, 0, 1);
      onPart?.(0, 1);
      return;
    }
    if (this.broken) throw this.broken;
    const board = this.board;
    const stopped = Atomics.load(board, STOPPED);
    if (stopped !== 0)
      throw (this.broken = new BackendError(
        `lorakit: wasm worker ${stopped - 1} stopped (${readFailure(this.ex.memory, this.ctl)}); load the backend again`,
      ));
    if (args.length > MAX_ARGS)
      throw new RangeError(`${name}: ${args.length} arguments, the job board holds ${MAX_ARGS}`);
    new Float64Array(this.ex.memory.buffer, this.ctl + ARGS_AT, args.length).set(args);
    Atomics.store(board, KERNEL, THREADED_KERNELS.indexOf(name));
    Atomics.store(board, NARGS, args.length);
    Atomics.store(board, NTH, parts);
    Atomics.store(board, DONE, 0);
    Atomics.store(board, FAILED, 0);
    const gen = (Atomics.load(board, GEN) + 1) | 0;
    Atomics.store(board, TICKET, ticketBase(gen));
    Atomics.store(board, GEN, gen);
    Atomics.notify(board, GEN);
    // The caller claims parts like any worker; after a failure it goes on claiming, so the
    // job always ends with every part done.
    let own: unknown = null;
    // Parts whose output onPart has had (only tracked when there is an onPart).
    const reported = onPart ? new Uint8Array(parts) : null;
    const usable = () => own === null && Atomics.load(board, FAILED) === 0;
    let ownParts = 0;
    const started = performance.now();
    for (;;) {
      const part = claimPart(board, gen, parts);
      if (part < 0) break;
      try {
        fn(...args, part, parts);
      } catch (e) {
        own ??= e;
      }
      ownParts++;
      Atomics.add(board, DONE, 1);
      if (reported && usable()) {
        reported[part] = 1;
        try {
          onPart?.(part, parts);
        } catch (e) {
          own ??= e;
        }
      }
    }
    // Then it waits for the parts workers still run: they are writing memory that the next
    // call's arena will reuse. Meanwhile it hands each one that finishes to onPart.
    const partDone = this.partDone;
    // Time spent in onPart while waiting: work the caller does whoever computed the part.
    let handingMs = 0;
    const reportFinished = () => {
      if (!reported || !usable()) return;
      for (let p = 0; p < parts; p++)
        if (reported[p] === 0 && Atomics.load(partDone, p) === gen) {
          reported[p] = 1;
          const t = performance.now();
          try {
            onPart?.(p, parts);
          } catch (e) {
            own ??= e;
          }
          handingMs += performance.now() - t;
        }
    };
    const waitFrom = performance.now();
    for (;;) {
      reportFinished();
      let done = Atomics.load(board, DONE);
      if (done >= parts) break;
      done = spinWhile(board, DONE, done, SPIN_MS);
      if (done >= parts) break;
      if (Atomics.load(board, DONE) === done) Atomics.wait(board, DONE, done);
    }
    reportFinished();
    this.judge(parts, ownParts, waitFrom - started, performance.now() - waitFrom - handingMs);
    if (own !== null) {
      const why = own instanceof Error ? `${own.name}: ${own.message}` : String(own);
      throw new BackendError(`lorakit: the calling thread failed in ${name}: ${why}`, { cause: own });
    }
    const failed = Atomics.load(board, FAILED);
    if (failed !== 0)
      throw new BackendError(
        `lorakit: wasm worker ${failed - 1} failed in ${name}: ${readFailure(this.ex.memory, this.ctl)}`,
      );
  }

  /**
   * Adds one split call to the judging window: the caller ran `ownParts` of `parts` in
   * `ownMs` (so the workers' parts saved it about their count × its time per part) and then
   * waited `waitedMs` for the workers (not counted during the warm-up). After JUDGE_EVERY
   * calls, a window whose waits outweigh
   * the savings sends the next BACKOFF_CALLS large calls to the caller alone. Which thread
   * computes a part never changes its bits, so neither does this.
   */
  private judge(parts: number, ownParts: number, ownMs: number, waitedMs: number): void {
    if (this.splitAbove <= 0) return;
    if (this.warmup > 0) {
      this.warmup--;
      return;
    }
    const w = this.window;
    w.calls++;
    w.savedMs += ownParts > 0 ? ((parts - ownParts) * ownMs) / ownParts : 0;
    w.waitedMs += waitedMs;
    if (w.calls < JUDGE_EVERY) return;
    if (w.savedMs <= w.waitedMs) this.backoff = BACKOFF_CALLS;
    this.window = { calls: 0, savedMs: 0, waitedMs: 0 };
  }

  /** Stops the workers; later calls run on the caller alone. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    Atomics.store(this.board, QUIT, 1);
    Atomics.add(this.board, GEN, 1);
    Atomics.notify(this.board, GEN);
    for (const w of this.workers) w.terminate();
    this.workers = [];
  }
}
