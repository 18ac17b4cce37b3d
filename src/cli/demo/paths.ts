// Where the shipped demo base model lives: <package root>/models/demo-base.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export function packageRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, "package.json"))) {
    const up = dirname(d);
    if (up === d) throw new Error("lorakit: cannot find its package root");
    d = up;
  }
  return d;
}

export function demoBaseDir(): string {
  return join(packageRoot(), "models", "demo-base");
}
