// Opening the wasm backend on as many threads as asked and allowed, else on one, with a
// notice that says why. Shared by the browser entry (load.ts) and Node's (node/load.ts),
// which differ only in where the module bytes come from and how a worker is started.
import type { Backend } from "../../core/backend.js";
import { createWasmBackend } from "./backend.js";
import { compileThreadedKernels, instantiateWasmKernels, type WasmSimd } from "./module.js";
import { type SpawnWorker, WasmThreadPool } from "./pool.js";

/** The wasm backend as loaded: what it runs on and how to stop its workers. */
export interface WasmBackendHandle {
  /** The Backend (name "wasm"). */
  readonly backend: Backend;
  /** Threads its large kernel calls are split across (the caller included); 1 after dispose(). */
  readonly threads: number;
  /** Why it runs on fewer threads than asked (one line, "lorakit: …"), or null. */
  readonly notice: string | null;
  /** The build that runs: "relaxed" (fused multiply-add where the CPU has it) or plain "simd128". */
  readonly simd: WasmSimd;
  /** Stops the workers; the backend keeps working on the calling thread alone. Idempotent. */
  dispose(): void;
}

export interface OpenWasm {
  /** Threads wanted, the caller included (1: no workers). */
  threads: number;
  /** Why threads cannot be used here at all, or null. */
  threadsUnavailable: string | null;
  /** The build the bytes below are (reported as the handle's `simd`). */
  simd: WasmSimd;
  /** The single-threaded module's bytes. */
  singleBytes(): Promise<BufferSource>;
  /** The threaded module's bytes. */
  threadedBytes(): Promise<BufferSource>;
  spawn: SpawnWorker;
  /** Calls with less work than this (about 2·flops) run on the caller alone; default pool.ts's. 0 splits every call (tests). */
  splitAbove?: number;
}

function firstLine(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  return (s.split("\n", 1)[0] ?? "").replace(/^lorakit: /, "");
}

/** Never falls back silently: fewer threads than asked always comes with a notice. */
export async function openWasmBackend(o: OpenWasm): Promise<WasmBackendHandle> {
  if (!Number.isInteger(o.threads) || o.threads < 1 || o.threads > 256)
    throw new RangeError(`wasm threads must be an integer in [1, 256], got ${o.threads}`);
  let notice: string | null = null;
  if (o.threads > 1 && o.threadsUnavailable !== null) notice = o.threadsUnavailable;
  else if (o.threads > 1) {
    try {
      const pool = await WasmThreadPool.start(
        await compileThreadedKernels(await o.threadedBytes()),
        o.threads,
        o.spawn,
      );
      if (o.splitAbove !== undefined) pool.splitAbove = o.splitAbove;
      return {
        backend: createWasmBackend(pool),
        get threads() {
          return pool.threads;
        },
        notice: null,
        simd: o.simd,
        dispose: () => pool.dispose(),
      };
    } catch (e) {
      notice = firstLine(e);
    }
  }
  const backend = createWasmBackend(await instantiateWasmKernels(await o.singleBytes()));
  return {
    backend,
    threads: 1,
    notice:
      notice === null
        ? null
        : `lorakit: the WebAssembly kernels run on 1 thread, not ${o.threads}: ${notice}`,
    simd: o.simd,
    dispose: () => {},
  };
}
