// Loads the native addon (build/Release/lorakit_native.node in the lorakit package) once.
// It never throws: a missing or broken addon comes back as { error } and the caller falls
// back to the reference kernels (or fails loudly when LORAKIT_BACKEND=native).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { GemmAddon } from "./gemm.js";
import type { OpsAddon } from "./ops.js";

export type NativeAddon = GemmAddon &
  OpsAddon & {
    getThreads(): number;
    setThreads(n: number): void;
  };

export type AddonLoadResult = { addon: NativeAddon } | { error: Error };

export const ADDON_RELATIVE_PATH = "build/Release/lorakit_native.node";

/** The nearest directory at or above `start` holding a package.json named lorakit. */
export function findPackageRoot(start: string): string | null {
  let dir = start;
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: unknown };
      if (pkg.name === "lorakit") return dir;
    } catch {
      // no (readable) package.json here: keep walking up
    }
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** Where the addon should be: <package root>/build/Release/lorakit_native.node. */
export function defaultAddonPath(): string | null {
  const root = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
  return root === null ? null : join(root, ADDON_RELATIVE_PATH);
}

/** Loads an addon file without caching; never throws. */
export function loadAddonFrom(path: string | null): AddonLoadResult {
  if (path === null) {
    return {
      error: new Error("could not find the lorakit package root (no package.json named lorakit above)"),
    };
  }
  try {
    const require = createRequire(import.meta.url);
    const addon = require(path) as Partial<NativeAddon>;
    for (const fn of ["gemm", "fmaPeak", "cpuFeatures", "getThreads", "setThreads"] as const) {
      if (typeof addon[fn] !== "function") {
        return { error: new Error(`${path} has no ${fn}() (a stale build?)`) };
      }
    }
    return { addon: addon as NativeAddon };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    return { error: new Error(`cannot load ${path}: ${err.message.split("\n")[0]}`, { cause: err }) };
  }
}

let cached: AddonLoadResult | undefined;

/** The package's addon, loaded once (the result, success or error, is cached). */
export function loadAddon(): AddonLoadResult {
  cached ??= loadAddonFrom(defaultAddonPath());
  return cached;
}

/** One line for stderr when lorakit falls back to the reference kernels. */
export function nativeFallbackNotice(error: Error): string {
  return `lorakit: native kernels unavailable (${error.message}); using the TypeScript kernels (much slower). Run \`npm run build:native\` in the lorakit package to build them.`;
}

/** The multi-line message for LORAKIT_BACKEND=native when the addon does not load. */
export function nativeUnavailableMessage(error: Error): string {
  return [
    "LORAKIT_BACKEND=native was requested but the native kernels could not be loaded:",
    `  ${error.message}`,
    "Possible fixes:",
    "  - install a C++ toolchain: g++ (or clang++), make and python3",
    "    (Debian/Ubuntu: apt-get install g++ make python3; macOS: xcode-select --install)",
    "  - build the addon in the lorakit package: npm run build:native",
    "    (it is built at install time unless LORAKIT_SKIP_NATIVE=1 was set)",
    "  - or run on the TypeScript kernels on purpose: LORAKIT_BACKEND=ref",
  ].join("\n");
}
