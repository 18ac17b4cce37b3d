// The browser entry to the wasm backend: fetch the module(s), start workers when the page
// allows threads, make it the engine's backend. Exported from the package's "." entry.
// Browser-safe; in Node use selectBackend("wasm") from "lorakit/node" (node/load.ts), which
// reads the files and starts worker_threads instead.
import type { Backend } from "../../core/backend.js";
import { setBackend } from "../../core/engine.js";
import { BackendError } from "../../core/errors.js";
import { relaxedSimdSupported, type WasmSimd } from "./module.js";
import { openWasmBackend, type WasmBackendHandle } from "./open.js";
import type { WorkerHandle } from "./pool.js";

export type { WasmBackendHandle } from "./open.js";

export interface LoadWasmBackendOptions {
  /**
   * Which build to load: "relaxed" (lorakit_kernels{,_threads}_relaxed.wasm, the GEMM and
   * attention with f32x4.relaxed_madd, a fused multiply-add where the CPU has FMA) or plain
   * "simd128". Default: relaxed where this engine validates relaxed SIMD (Chromium ≥ 114),
   * else simd128. It also names the build of `bytes`/`url` when those are given.
   */
  simd?: WasmSimd;
  /** Bytes of the single-threaded module (lorakit_kernels.wasm); skips fetching it. */
  bytes?: BufferSource;
  /** Bytes of the threaded module (lorakit_kernels_threads.wasm); skips fetching it. */
  threadsBytes?: BufferSource;
  /** Where to fetch the single-threaded module; default: next to this module, of the `simd` build. */
  url?: string | URL;
  /** Where to fetch the threaded module; default: next to this module, of the `simd` build. */
  threadsUrl?: string | URL;
  /** Threads wanted, the caller included; default navigator.hardwareConcurrency, at most 8. 1: no workers. */
  threads?: number;
  /** Make it the engine's backend (core's setBackend); default true. */
  install?: boolean;
}

/** Threads by default in a page: the cores the browser reports, at most 8. */
function defaultThreads(): number {
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  return typeof n === "number" && n >= 1 ? Math.min(Math.floor(n), 8) : 1;
}

/** Whether this thread may block in Atomics.wait (a page's main thread may not). */
function canBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/** Why threads cannot run here, or null. */
function threadsUnavailable(): string | null {
  const g = globalThis as { crossOriginIsolated?: boolean; Worker?: unknown };
  if (typeof SharedArrayBuffer === "undefined" || g.crossOriginIsolated === false)
    return "SharedArrayBuffer is unavailable because the page is not cross-origin isolated (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)";
  if (typeof g.Worker !== "function") return "this context cannot start Web Workers";
  if (!canBlock())
    return "Atomics.wait is not allowed on a page's main thread; call loadWasmBackend inside a Worker to train on several threads";
  return null;
}

async function fetchBytes(url: string | URL): Promise<ArrayBuffer> {
  const u = new URL(url, (globalThis as { location?: { href: string } }).location?.href);
  if (u.protocol === "file:")
    throw new BackendError(
      `lorakit: cannot fetch ${u.href}; in Node use selectBackend("wasm") from "lorakit/node", or pass the module's bytes`,
    );
  let r: Response;
  try {
    r = await fetch(u);
  } catch (e) {
    throw new BackendError(`lorakit: fetching the WebAssembly kernels from ${u.href} failed: ${String(e)}`, {
      cause: e,
    });
  }
  if (!r.ok)
    throw new BackendError(
      `lorakit: fetching the WebAssembly kernels from ${u.href} failed: HTTP ${r.status}`,
    );
  return await r.arrayBuffer();
}

/** A module Worker running worker.ts; written so bundlers see and bundle the worker file. */
function spawnBrowserWorker(): WorkerHandle {
  const w = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  let terminated = false;
  return {
    post: (init) => w.postMessage(init),
    onReply: (listener) => w.addEventListener("message", (e) => listener(e.data)),
    onExit: (listener) => {
      w.addEventListener("error", (e) => {
        if (!terminated) listener(e.message || "the worker script failed to load or threw");
      });
      w.addEventListener("messageerror", () => {
        if (!terminated) listener("a message to the worker could not be read");
      });
    },
    terminate: () => {
      terminated = true;
      w.terminate();
    },
  };
}

/**
 * Loads the WebAssembly kernels in a browser (or any fetch-capable, Worker-capable host)
 * and, unless `install: false`, makes them the engine's backend. Threads run when the page
 * is cross-origin isolated and this is a Worker (Atomics.wait is not allowed on a page's
 * main thread); otherwise one thread, with `notice` saying why.
 */
export async function loadWasmBackend(options: LoadWasmBackendOptions = {}): Promise<WasmBackendHandle> {
  const threads = options.threads ?? defaultThreads();
  const simd = options.simd ?? (relaxedSimdSupported() ? "relaxed" : "simd128");
  const handle = await openWasmBackend({
    threads,
    threadsUnavailable: threads > 1 ? threadsUnavailable() : null,
    simd,
    // Each URL is written out whole, so bundlers see and copy every module file.
    singleBytes: async () =>
      options.bytes ??
      fetchBytes(
        options.url ??
          (simd === "relaxed"
            ? new URL("lorakit_kernels_relaxed.wasm", import.meta.url)
            : new URL("lorakit_kernels.wasm", import.meta.url)),
      ),
    threadedBytes: async () =>
      options.threadsBytes ??
      fetchBytes(
        options.threadsUrl ??
          (simd === "relaxed"
            ? new URL("lorakit_kernels_threads_relaxed.wasm", import.meta.url)
            : new URL("lorakit_kernels_threads.wasm", import.meta.url)),
      ),
    spawn: spawnBrowserWorker,
  });
  if (options.install ?? true) setBackend(handle.backend as Backend);
  return handle;
}
