// Where the shipped demo base model lives: <package root>/models/demo-base.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { findPackageRoot } from "../../kernels/native/loader.js";

export function packageRoot(): string {
  const root = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
  if (root === null)
    throw new Error("cannot find the lorakit package root (no package.json named lorakit above)");
  return root;
}

export function demoBaseDir(): string {
  return join(packageRoot(), "models", "demo-base");
}

/** Where `build-demo-base` writes when not told: the current folder, never the shipped model. */
export const DEMO_BASE_DEFAULT_OUT = "demo-base";
