// The WebAssembly backend, browser-safe: instantiate the module from its bytes, then wrap
// it. Node code loads the bytes with ./node/load.ts (or kernels/select.ts).
export { createWasmBackend, WASM_KERNELS } from "./backend.js";
export { instantiateWasmKernels, WASM_FILE_NAME, type WasmExports } from "./module.js";
