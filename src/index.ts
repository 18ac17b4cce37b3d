// lorakit: browser-safe entry point. Node-only parts (native kernels, files, CLI, server)
// live behind "lorakit/node".
export * from "./core/index.js";
