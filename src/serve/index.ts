// Serving (node only): the OpenAI-compatible server with many adapters on one base model.
export type { ServeLimits } from "./protocol.js";
export { DEFAULT_LIMITS } from "./protocol.js";
export type { RunningServer, ServeOptions } from "./server.js";
export { startServer } from "./server.js";
