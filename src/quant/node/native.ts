// Node-only: hands the native addon's NF4 kernels to Linear4bit (used while the backend is "native").
import { loadNf4Addon } from "../../kernels/native/nf4.js";
import { registerNf4Kernels } from "../linear4bit.js";

/** Registers the addon's NF4 kernels when present; true when they are. */
export function enableNativeNf4(): boolean {
  const a = loadNf4Addon();
  registerNf4Kernels(a);
  return a !== null;
}
