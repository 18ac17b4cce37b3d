// Placeholder: the reference backend lands here (every kernel of core/backend.ts in plain TypeScript).
import type { Backend } from "../../core/backend.js";

export const refBackend: Backend = new Proxy({} as Backend, {
  get(_t, prop) {
    if (prop === "name") return "ref";
    throw new Error(`reference kernel ${String(prop)} not written yet`);
  },
});
