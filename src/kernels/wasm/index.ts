// The WebAssembly backend, browser-safe: loadWasmBackend fetches the module(s) and starts
// workers in a page; createWasmBackend wraps an instantiated module. Node code loads the
// files with ./node/load.ts (or kernels/select.ts).
export { createWasmBackend, WASM_KERNELS } from "./backend.js";
export { type LoadWasmBackendOptions, loadWasmBackend, type WasmBackendHandle } from "./load.js";
export {
  instantiateWasmKernels,
  relaxedSimdSupported,
  WASM_FILE_NAME,
  WASM_RELAXED_FILE_NAME,
  WASM_THREADS_FILE_NAME,
  WASM_THREADS_RELAXED_FILE_NAME,
  type WasmExports,
  type WasmSimd,
} from "./module.js";
