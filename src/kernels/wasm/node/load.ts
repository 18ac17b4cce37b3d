// Node-only: reads the kernel module built next to the compiled kernels/wasm modules
// (dist/src/kernels/wasm/lorakit_kernels.wasm, written by scripts/build-wasm.mjs) and wraps
// it as a Backend. Never throws: a missing or broken file comes back as an error that says
// which command builds it.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Backend } from "../../../core/backend.js";
import { BackendError } from "../../../core/errors.js";
import { createWasmBackend } from "../backend.js";
import { instantiateWasmKernels, WASM_FILE_NAME } from "../module.js";

/** Where the built module sits: beside this package's kernels/wasm/*.js. */
export function wasmModulePath(): string {
  return fileURLToPath(new URL(`../${WASM_FILE_NAME}`, import.meta.url));
}

export type WasmLoadResult = { backend: Backend } | { error: BackendError };

/** Loads the module from `path` (default: wasmModulePath()) and wraps it. */
export async function loadWasmBackend(path = wasmModulePath()): Promise<WasmLoadResult> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    return {
      error: new BackendError(
        `lorakit: the WebAssembly kernels are not built (${why}); build them with \`npm run build:wasm\` (needs clang and lld: apt-get install -y clang lld)`,
        { cause: e },
      ),
    };
  }
  try {
    return { backend: createWasmBackend(await instantiateWasmKernels(bytes)) };
  } catch (e) {
    return { error: e instanceof BackendError ? e : new BackendError(String(e), { cause: e }) };
  }
}
