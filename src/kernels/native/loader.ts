// Finds and loads the native addon of the lorakit package once. Where it looks, in order:
//   1. build/Release/lorakit_native.node                       a source build (node-gyp, made by
//                                                               scripts/build-native.mjs) for this machine
//   2. prebuilds/<platform>-<arch>/lorakit_native.napi[.<libc>].node   the prebuilt binary the
//                                                               package ships (scripts/prebuild.mjs)
// It never throws: when neither loads it returns a NativeUnavailableError that says why
// (no prebuilt for this platform and no install script run / the source build failed / the
// install skipped it / the file would not load) and the one command that fixes it, read
// from build/native-status.json, which the install script writes. The caller falls back to
// the reference kernels (or fails loudly when LORAKIT_BACKEND=native).
// The file names are those of scripts/native-build-lib.mjs.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BackendError } from "../../core/errors.js";
import type { GemmAddon } from "./gemm.js";
import type { OpsAddon } from "./ops.js";

export type NativeAddon = GemmAddon &
  OpsAddon & {
    getThreads(): number;
    setThreads(n: number): void;
  };

export type AddonLoadResult = { addon: NativeAddon } | { error: Error };

export const ADDON_RELATIVE_PATH = "build/Release/lorakit_native.node";
export const STATUS_RELATIVE_PATH = "build/native-status.json";

/** Why the native kernels are not there. */
export type NativeUnavailableReason =
  /** No prebuilt binary for this platform, and the install script that builds one never ran. */
  | "no-prebuilt"
  /** No prebuilt binary for this platform, and the source build at install failed. */
  | "build-failed"
  /** The install ran with LORAKIT_SKIP_NATIVE=1. */
  | "skipped"
  /** A binary is there but does not load (wrong libc, too old a glibc, a broken file). */
  | "load-error"
  /** The loader is not inside a lorakit package (a bundler moved it). */
  | "no-package";

/** The native addon did not load: `reason`, the details in `message`, and `fix`, the command that fixes it. */
export class NativeUnavailableError extends BackendError {
  readonly reason: NativeUnavailableReason;
  readonly fix: string;
  constructor(reason: NativeUnavailableReason, message: string, fix: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
    this.fix = fix;
  }
}

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

/** This package's root (the folder holding its package.json), or null. */
export function defaultPackageRoot(): string | null {
  return findPackageRoot(dirname(fileURLToPath(import.meta.url)));
}

/** Where a source build of the addon is: <package root>/build/Release/lorakit_native.node. */
export function defaultAddonPath(): string | null {
  const root = defaultPackageRoot();
  return root === null ? null : join(root, ADDON_RELATIVE_PATH);
}

/** The machine a binary must be built for: platform, arch and (on Linux) the C library. */
export interface HostTarget {
  platform: string;
  arch: string;
  libc: "glibc" | "musl" | null;
}

export function hostTarget(): HostTarget {
  let libc: HostTarget["libc"] = null;
  if (process.platform === "linux") {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    libc = report?.header?.glibcVersionRuntime ? "glibc" : "musl";
  }
  return { platform: process.platform, arch: process.arch, libc };
}

/** "linux-x64" (the prebuilds/ folder), with " (musl)" where that matters. */
function describe(t: HostTarget): string {
  return `${t.platform}-${t.arch}${t.libc === "musl" ? " (musl)" : ""}`;
}

/** The package-relative path of the prebuilt binary for `t`. */
export function prebuiltRelativePath(t: HostTarget): string {
  return `prebuilds/${t.platform}-${t.arch}/lorakit_native.napi${t.libc ? `.${t.libc}` : ""}.node`;
}

/** Loads an addon file without caching; never throws. */
export function loadAddonFrom(path: string | null): AddonLoadResult {
  if (path === null) {
    return {
      error: new NativeUnavailableError(
        "no-package",
        "could not find the lorakit package root (no package.json named lorakit above the loader)",
        "npm install lorakit (run lorakit from its installed package, not from a bundle)",
      ),
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

interface InstallStatus {
  outcome?: string;
  reason?: string;
  why?: string;
  missing?: string[];
  error?: string;
  log?: string | null;
}

function readStatus(root: string): InstallStatus | null {
  try {
    return JSON.parse(readFileSync(join(root, STATUS_RELATIVE_PATH), "utf8")) as InstallStatus;
  } catch {
    return null;
  }
}

/** The platforms the package carries binaries for ("linux-arm64, linux-x64"), or "none". */
function shippedPrebuilds(root: string): string {
  try {
    const dirs = readdirSync(join(root, "prebuilds")).sort();
    return dirs.length > 0 ? dirs.join(", ") : "none";
  } catch {
    return "none";
  }
}

/**
 * Loads the addon of the lorakit package at `root` (the source build, else the prebuilt for
 * `host`, by default this machine); when neither loads, a NativeUnavailableError with the
 * reason and the fix.
 */
export function loadPackageAddon(root: string | null, hostOrDefault?: HostTarget): AddonLoadResult {
  if (root === null) return loadAddonFrom(null);
  const loadErrors: Error[] = [];
  const sourceBuild = join(root, ADDON_RELATIVE_PATH);
  if (existsSync(sourceBuild)) {
    const r = loadAddonFrom(sourceBuild);
    if ("addon" in r) return r;
    loadErrors.push(r.error);
  }
  // Only now: reading the libc takes a process report (~10 ms).
  const host = hostOrDefault ?? hostTarget();
  const prebuilt = join(root, prebuiltRelativePath(host));
  if (existsSync(prebuilt)) {
    const r = loadAddonFrom(prebuilt);
    if ("addon" in r) return r;
    loadErrors.push(r.error);
  }
  const checkout = existsSync(join(root, ".git"));
  const rebuild = checkout ? "npm run build:native (in this checkout)" : "npm rebuild lorakit";
  const where = describe(host);
  if (loadErrors.length > 0) {
    const first = loadErrors[0];
    return {
      error: new NativeUnavailableError(
        "load-error",
        `the native addon does not load here (${where}): ${first.message}`,
        checkout
          ? "npm run build:native"
          : "npm rebuild lorakit --build-from-source (needs g++, make and python3)",
        { cause: first },
      ),
    };
  }
  const status = readStatus(root);
  const carried = shippedPrebuilds(root);
  const noPrebuilt = `no prebuilt binary for ${where} (this package carries: ${carried})`;
  if (status?.outcome === "skipped") {
    return {
      error: new NativeUnavailableError(
        "skipped",
        `${noPrebuilt}, and the install skipped the source build (LORAKIT_SKIP_NATIVE=1)`,
        `${rebuild} (without LORAKIT_SKIP_NATIVE=1)`,
      ),
    };
  }
  if (status?.outcome === "failed") {
    const log = status.log ? join(root, status.log) : null;
    const detail =
      status.reason === "toolchain"
        ? `missing ${(status.missing ?? []).join(", ")}`
        : status.reason === "node-addon-api"
          ? "the node-addon-api package is not installed"
          : `${status.error ?? "the compiler failed"}${log ? `; full log: ${log}` : ""}`;
    const fix =
      status.reason === "toolchain"
        ? `install g++, make and python3 (Debian/Ubuntu: apt-get install g++ make python3), then ${rebuild}`
        : status.reason === "node-addon-api"
          ? `npm install, then ${rebuild}`
          : `${rebuild} once the cause in the log is fixed`;
    return {
      error: new NativeUnavailableError(
        "build-failed",
        `${status.why ?? noPrebuilt}; the source build at install failed: ${detail}`,
        fix,
      ),
    };
  }
  if (status?.outcome === "built" || status?.outcome === "prebuilt") {
    return {
      error: new NativeUnavailableError(
        "load-error",
        `the install set up the native addon (${status.outcome}) but it is gone from ${root}`,
        rebuild,
      ),
    };
  }
  return {
    error: new NativeUnavailableError(
      "no-prebuilt",
      checkout
        ? `${noPrebuilt}, and this checkout has no source build (npm ci builds one unless --ignore-scripts)`
        : `${noPrebuilt}, and the install script that builds one from source did not run ` +
            "(npm --ignore-scripts, or an allowScripts policy that does not allow lorakit)",
      checkout
        ? "npm run build:native (needs g++, make and python3)"
        : "npm rebuild lorakit (where npm asks, first: npm install-scripts approve lorakit); it needs g++, make and python3",
    ),
  };
}

let cached: AddonLoadResult | undefined;

/** The package's addon, loaded once (the result, success or error, is cached). */
export function loadAddon(): AddonLoadResult {
  cached ??= loadPackageAddon(defaultPackageRoot());
  return cached;
}

function fixOf(error: Error): string {
  return error instanceof NativeUnavailableError ? error.fix : "npm rebuild lorakit";
}

/** The notice (two lines) for stderr when lorakit falls back to the reference kernels. */
export function nativeFallbackNotice(error: Error): string {
  return [
    `lorakit: native kernels unavailable: ${error.message.split("\n")[0]}`,
    `lorakit: running on the TypeScript kernels (much slower). Fix: ${fixOf(error)}`,
  ].join("\n");
}

/** The multi-line message for LORAKIT_BACKEND=native when the addon does not load. */
export function nativeUnavailableMessage(error: Error): string {
  return [
    "LORAKIT_BACKEND=native was requested but the native kernels could not be loaded:",
    `  ${error.message.split("\n")[0]}`,
    `Fix: ${fixOf(error)}`,
    "Or run on the TypeScript kernels on purpose: LORAKIT_BACKEND=ref",
  ].join("\n");
}
