// lorakit for Node: everything in the browser-safe entry plus backend selection with the
// native kernels.
export * from "./index.js";
export { availableBackends, selectBackend } from "./kernels/select.js";
