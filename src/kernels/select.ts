// Backend selection (Node only): the native C++ kernels when the addon loads, else the
// WebAssembly kernels (kernels/wasm) when their module is built, else the TypeScript
// reference kernels, with a notice that says which, why and what fixes it. The native and
// wasm loaders are imported dynamically, so a browser build that never calls this never
// touches them.
import type { Backend } from "../core/backend.js";
import { setBackend } from "../core/engine.js";
import { BackendError } from "../core/errors.js";
import { refBackend } from "./ref/index.js";

export type BackendKind = "auto" | "ref" | "native" | "wasm";
export const BACKEND_KINDS: readonly BackendKind[] = ["auto", "ref", "native", "wasm"];

/**
 * `message`: for LORAKIT_BACKEND=native (an error); `notice`: for auto falling back to the
 * reference kernels; `reason` and `fix`: for the notice when auto falls back to wasm.
 */
type NativeLoad =
  | { backend: Backend }
  | { error: Error; message: string; notice: string; reason: string; fix: string };
/** `notice`: why the wasm kernels run on fewer threads than LORAKIT_THREADS / the cores (or null). */
type WasmLoad = { backend: Backend; notice: string | null } | { error: Error };

let nativeLoad: Promise<NativeLoad> | undefined;

function firstLine(s: string): string {
  const line = s.split("\n", 1)[0] ?? "";
  return line.trim();
}

/** Loads the addon once per process and wraps it as a Backend; never throws. */
function loadNative(): Promise<NativeLoad> {
  nativeLoad ??= (async (): Promise<NativeLoad> => {
    let loader: typeof import("./native/loader.js");
    try {
      loader = await import("./native/loader.js");
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      const message = `lorakit: the native kernel loader failed to import: ${firstLine(error.message)}`;
      return {
        error,
        message,
        notice: `${message}; using the TypeScript reference kernels`,
        reason: `the native kernel loader failed to import: ${firstLine(error.message)}`,
        fix: "npm rebuild lorakit",
      };
    }
    const failed = (error: Error): NativeLoad => ({
      error,
      message: loader.nativeUnavailableMessage(error),
      notice: loader.nativeFallbackNotice(error),
      reason: firstLine(error.message),
      fix: error instanceof loader.NativeUnavailableError ? error.fix : "npm rebuild lorakit",
    });
    const r = loader.loadAddon();
    if ("error" in r) return failed(r.error);
    try {
      const { createNativeBackend } = await import("./native/backend.js");
      return { backend: createNativeBackend(r.addon) };
    } catch (e) {
      return failed(e instanceof Error ? e : new Error(String(e)));
    }
  })();
  return nativeLoad;
}

let wasmLoad: Promise<WasmLoad> | undefined;

/**
 * Loads the WebAssembly kernels once per process, on the threads native would use
 * (LORAKIT_THREADS, else every core; worker threads that never keep the process alive);
 * never throws.
 */
function loadWasm(): Promise<WasmLoad> {
  wasmLoad ??= (async (): Promise<WasmLoad> => {
    try {
      const { loadNodeWasmBackend } = await import("./wasm/node/load.js");
      const r = await loadNodeWasmBackend();
      return "error" in r ? r : { backend: r.handle.backend, notice: r.handle.notice };
    } catch (e) {
      return { error: e instanceof Error ? e : new Error(String(e)) };
    }
  })();
  return wasmLoad;
}

/** The notice (two lines) when auto runs on the WebAssembly kernels because native ones are missing. */
function wasmFallbackNotice(native: { reason: string; fix: string }): string {
  return [
    `lorakit: native kernels unavailable: ${native.reason}`,
    `lorakit: running on the WebAssembly kernels (faster than the TypeScript ones, slower than native). Fix: ${native.fix}`,
  ].join("\n");
}

function envKind(): string | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const v = env?.LORAKIT_BACKEND;
  return v === undefined || v === "" ? undefined : v;
}

/**
 * Chooses the kernel backend and makes it the engine's (core's `setBackend`).
 * `kind` defaults to LORAKIT_BACKEND, else "auto": native when the addon loads, otherwise
 * the WebAssembly kernels when their module is built, otherwise the reference kernels;
 * falling back adds a `notice` for the caller to show (why native kernels are missing, what
 * runs instead and the command that fixes it). "native" and "wasm" throw a BackendError
 * with the possible fixes when their kernels are missing.
 */
export async function selectBackend(
  kind?: BackendKind,
): Promise<{ backend: Backend; notice: string | null }> {
  const fromEnv = kind === undefined ? envKind() : undefined;
  const k = (kind ?? fromEnv ?? "auto") as string;
  if (!(BACKEND_KINDS as readonly string[]).includes(k)) {
    const where = fromEnv !== undefined ? " (from LORAKIT_BACKEND)" : "";
    throw new BackendError(`unknown backend "${k}"${where}; accepted: ${BACKEND_KINDS.join(", ")}`);
  }
  if (k === "ref") {
    setBackend(refBackend);
    return { backend: refBackend, notice: null };
  }
  if (k === "wasm") {
    const w = await loadWasm();
    if ("error" in w)
      throw new BackendError(
        `LORAKIT_BACKEND=wasm was requested but the WebAssembly kernels could not be loaded:\n  ${firstLine(w.error.message)}`,
        { cause: w.error },
      );
    setBackend(w.backend);
    return { backend: w.backend, notice: w.notice };
  }
  const r = await loadNative();
  if ("backend" in r) {
    setBackend(r.backend);
    return { backend: r.backend, notice: null };
  }
  if (k === "native") throw new BackendError(r.message, { cause: r.error });
  const w = await loadWasm();
  if ("backend" in w) {
    setBackend(w.backend);
    const threads = w.notice === null ? "" : `\n${w.notice}`;
    return { backend: w.backend, notice: `${wasmFallbackNotice(r)}${threads}` };
  }
  setBackend(refBackend);
  const wasmLine = `lorakit: the WebAssembly kernels are unavailable too: ${firstLine(w.error.message).replace(/^lorakit: /, "")}`;
  return { backend: refBackend, notice: `${r.notice}\n${wasmLine}` };
}

/** Every backend that works here: the reference, plus native and wasm when they load (tests, benchmarks). */
export async function availableBackends(): Promise<Backend[]> {
  const out: Backend[] = [refBackend];
  const r = await loadNative();
  if ("backend" in r) out.push(r.backend);
  const w = await loadWasm();
  if ("backend" in w) out.push(w.backend);
  return out;
}
