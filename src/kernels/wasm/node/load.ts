// Node-only: reads the kernel modules built next to the compiled kernels/wasm modules
// (dist/src/kernels/wasm/lorakit_kernels{,_threads}.wasm, written by scripts/build-wasm.mjs)
// and opens the backend, with worker_threads for its threads. Never throws: a missing or
// broken file comes back as an error that says which command builds it.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { BackendError } from "../../../core/errors.js";
import { relaxedSimdSupported, type WasmSimd, wasmFileName } from "../module.js";
import { openWasmBackend, type WasmBackendHandle } from "../open.js";
import type { WorkerHandle } from "../pool.js";

/** Where the built single-threaded module (of the `simd` build) sits: beside this package's kernels/wasm/*.js. */
export function wasmModulePath(simd: WasmSimd = "simd128"): string {
  return fileURLToPath(new URL(`../${wasmFileName(false, simd)}`, import.meta.url));
}

/** Where the built threaded module (of the `simd` build) sits. */
export function wasmThreadsModulePath(simd: WasmSimd = "simd128"): string {
  return fileURLToPath(new URL(`../${wasmFileName(true, simd)}`, import.meta.url));
}

/**
 * The relaxed-SIMD build where this engine validates it (Node 20 only under
 * --experimental-wasm-relaxed-simd) and it was built (clang ≥ 16), else plain SIMD128.
 */
function defaultSimd(): WasmSimd {
  return relaxedSimdSupported() &&
    existsSync(wasmModulePath("relaxed")) &&
    existsSync(wasmThreadsModulePath("relaxed"))
    ? "relaxed"
    : "simd128";
}

/** The threads the native backend would use: LORAKIT_THREADS, else the cores Node reports. */
export function defaultWasmThreads(): number {
  const n = Number.parseInt(process.env.LORAKIT_THREADS ?? "", 10);
  return n > 0 ? Math.min(n, 256) : availableParallelism();
}

/** A Node worker thread as the pool drives it (exported for tests that start odd workers). */
export function nodeWorkerHandle(w: Worker): WorkerHandle {
  let terminated = false;
  return {
    post: (init) => w.postMessage(init),
    onReply: (listener) => w.on("message", listener),
    onExit: (listener) => {
      w.on("error", (e) => {
        if (!terminated) listener(e.message);
      });
      w.on("exit", (code) => {
        if (!terminated) listener(`the worker thread exited with code ${code}`);
      });
    },
    terminate: () => {
      terminated = true;
      void w.terminate();
    },
    unref: () => w.unref(),
  };
}

/**
 * A worker thread running node/worker.ts. It inherits this process's Node flags, except when
 * they hold --input-type (given for `node -e` code, it stops a worker started from a file):
 * then it gets none (V8 flags are process-wide anyway, and an explicit execArgv may not
 * carry them).
 */
export function spawnNodeWorker(): WorkerHandle {
  const url = new URL("./worker.js", import.meta.url);
  const inputType = process.execArgv.some((a) => a.startsWith("--input-type"));
  return nodeWorkerHandle(inputType ? new Worker(url, { execArgv: [] }) : new Worker(url));
}

export interface NodeWasmOptions {
  /** Threads, the caller included; default defaultWasmThreads(). */
  threads?: number;
  /**
   * The build: "relaxed" or "simd128"; default relaxed where the engine has relaxed SIMD and
   * the relaxed modules were built, else simd128. It also names the build of `path`/`threadsPath`.
   */
  simd?: WasmSimd;
  /** The single-threaded module's file; default wasmModulePath(simd). */
  path?: string;
  /** The threaded module's file; default wasmThreadsModulePath(simd). */
  threadsPath?: string;
  /** Calls with less work than this run on the caller alone (0: split every call, for tests). */
  splitAbove?: number;
}

export type WasmLoadResult = { handle: WasmBackendHandle } | { error: BackendError };

function notBuilt(e: unknown): BackendError {
  const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
  return new BackendError(
    `lorakit: the WebAssembly kernels are not built (${why}); build them with \`npm run build:wasm\` (needs clang and lld: apt-get install -y clang lld)`,
    { cause: e },
  );
}

/** Opens the wasm backend from its files; does not make it the engine's backend. */
export async function loadNodeWasmBackend(options: NodeWasmOptions = {}): Promise<WasmLoadResult> {
  const read = async (path: string) => {
    try {
      return await readFile(path);
    } catch (e) {
      throw notBuilt(e);
    }
  };
  try {
    // The single-threaded module is read first, whatever the threads: it is the fallback, and
    // an install without it is an unbuilt one.
    const simd = options.simd ?? defaultSimd();
    const single = await read(options.path ?? wasmModulePath(simd));
    const handle = await openWasmBackend({
      threads: options.threads ?? defaultWasmThreads(),
      threadsUnavailable: null,
      simd,
      singleBytes: async () => single,
      threadedBytes: () => read(options.threadsPath ?? wasmThreadsModulePath(simd)),
      spawn: spawnNodeWorker,
      splitAbove: options.splitAbove,
    });
    return { handle };
  } catch (e) {
    return { error: e instanceof BackendError ? e : new BackendError(String(e), { cause: e }) };
  }
}
