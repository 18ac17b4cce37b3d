// Backend selection (Node only): the native C++ kernels when the addon loads, else the
// TypeScript reference kernels with a notice that says why and what fixes it. The native modules are imported
// dynamically, so a browser build that never calls this never touches them.
import type { Backend } from "../core/backend.js";
import { setBackend } from "../core/engine.js";
import { BackendError } from "../core/errors.js";
import { refBackend } from "./ref/index.js";

export type BackendKind = "auto" | "ref" | "native";
export const BACKEND_KINDS: readonly BackendKind[] = ["auto", "ref", "native"];

/** `message`: for LORAKIT_BACKEND=native (an error); `notice`: for auto (a fallback). */
type NativeLoad = { backend: Backend } | { error: Error; message: string; notice: string };

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
      return { error, message, notice: `${message}; using the TypeScript reference kernels` };
    }
    const failed = (error: Error): NativeLoad => ({
      error,
      message: loader.nativeUnavailableMessage(error),
      notice: loader.nativeFallbackNotice(error),
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

function envKind(): string | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const v = env?.LORAKIT_BACKEND;
  return v === undefined || v === "" ? undefined : v;
}

/**
 * Chooses the kernel backend and makes it the engine's (core's `setBackend`).
 * `kind` defaults to LORAKIT_BACKEND, else "auto": native when the addon loads, otherwise
 * the reference kernels plus a `notice` for the caller to show (why native kernels are
 * missing and the command that fixes it, two lines). "native" throws
 * a BackendError with the possible fixes when the addon is missing.
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
  const r = await loadNative();
  if ("backend" in r) {
    setBackend(r.backend);
    return { backend: r.backend, notice: null };
  }
  if (k === "native") throw new BackendError(r.message, { cause: r.error });
  setBackend(refBackend);
  return { backend: refBackend, notice: r.notice };
}

/** Every backend that works here: the reference, plus native when the addon loads (tests, benchmarks). */
export async function availableBackends(): Promise<Backend[]> {
  const out: Backend[] = [refBackend];
  const r = await loadNative();
  if ("backend" in r) out.push(r.backend);
  return out;
}
