// Node-only: the native (C++ addon) backend. Import through kernels/select.ts, which
// loads it lazily so browser builds never reach it.
export { createNativeBackend } from "./backend.js";
export type { OpsAddon, OpsIsa } from "./ops.js";
