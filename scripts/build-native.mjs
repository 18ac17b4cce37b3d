// lorakit's install script: native kernels without a compiler when a prebuilt binary in
// prebuilds/ loads here, a source build with node-gyp only when none does.
//
//   node scripts/build-native.mjs            what `npm install` runs
//   node scripts/build-native.mjs --force    build from source anyway (npm run build:native);
//                                            also `npm install --build-from-source`
//   --verbose                                show the compiler's output instead of logging it
//   LORAKIT_SKIP_NATIVE=1                    do nothing (lorakit runs on its TypeScript kernels)
//
// It prints a line or two, keeps the compiler's output in build/native-build.log, and
// records what happened in build/native-status.json, which src/kernels/native/loader.ts
// reads to say why native kernels are missing. It never fails an install (lorakit works
// without its addon, only slower); --force does fail when the build fails.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  BUILD_LOG_PATH,
  firstErrorLine,
  hostPrebuilt,
  missingToolchain,
  runNodeGyp,
  SOURCE_BUILD_PATH,
  STATUS_PATH,
  warningLines,
  writeUnder,
} from "./native-build-lib.mjs";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const argv = process.argv.slice(2);
const force = argv.includes("--force") || process.env.npm_config_build_from_source === "true";
const verbose = argv.includes("--verbose");
const prebuilt = hostPrebuilt();
const requireHere = createRequire(join(root, "package.json"));

function say(line) {
  console.error(`lorakit: ${line}`);
}

function record(outcome, extra = {}) {
  const status = {
    outcome,
    platform: prebuilt.tag,
    node: process.version,
    at: new Date().toISOString(),
    ...extra,
  };
  writeUnder(root, STATUS_PATH, `${JSON.stringify(status, null, 2)}\n`);
}

/** Loads an addon file in this process: null when it works, else why not. */
function loadError(file) {
  try {
    const addon = requireHere(file);
    if (typeof addon.gemm !== "function" || typeof addon.cpuFeatures !== "function") {
      return "it has no gemm()/cpuFeatures() (not a lorakit addon?)";
    }
    addon.cpuFeatures();
    return null;
  } catch (e) {
    return String(e instanceof Error ? e.message : e).split("\n")[0];
  }
}

if (process.env.LORAKIT_SKIP_NATIVE === "1") {
  record("skipped");
  say("LORAKIT_SKIP_NATIVE=1: native kernels not set up; lorakit will run on its TypeScript kernels.");
  process.exit(0);
}

// A git checkout builds its own addon: its prebuilds/ (left by an `npm pack`) may predate
// the sources being worked on.
const checkout = existsSync(join(root, ".git"));
let why;
if (force) {
  why = argv.includes("--force") ? "--force" : "--build-from-source";
} else if (checkout) {
  why = "a git checkout builds its own";
} else if (!existsSync(join(root, prebuilt.rel))) {
  why = `no prebuilt binary for ${prebuilt.tag}${prebuilt.rel.endsWith(".musl.node") ? " (musl)" : ""}`;
} else {
  const err = loadError(join(root, prebuilt.rel));
  if (err === null) {
    record("prebuilt", { file: prebuilt.rel });
    say(`using the prebuilt native kernels for ${prebuilt.tag} (${prebuilt.rel}).`);
    process.exit(0);
  }
  why = `the prebuilt for ${prebuilt.tag} does not load here: ${err}`;
}

const missing = missingToolchain();
if (missing.length > 0) {
  record("failed", { reason: "toolchain", why, missing });
  say(
    `cannot build the native kernels (${why}): missing ${missing.join(", ")}. lorakit will run on its TypeScript kernels (much slower).`,
  );
  say(
    "  Fix: install g++, make and python3 (Debian/Ubuntu: apt-get install g++ make python3), then run `npm rebuild lorakit`.",
  );
  process.exit(force ? 1 : 0);
}
try {
  requireHere.resolve("node-addon-api");
} catch {
  record("failed", { reason: "node-addon-api", why });
  say("cannot build the native kernels: the node-addon-api package is not installed beside lorakit.");
  say("  Fix: `npm install` (it is one of lorakit's dependencies), then `npm rebuild lorakit`.");
  process.exit(force ? 1 : 0);
}

say(`building the native kernels from source (${why}); this takes a minute or two...`);
const t0 = Date.now();
const r = runNodeGyp(root, [], {}, { verbose });
const seconds = Math.round((Date.now() - t0) / 1000);
const log = verbose ? null : writeUnder(root, BUILD_LOG_PATH, r.output);
if (r.ok) {
  const warnings = verbose ? [] : warningLines(r.output);
  record("built", { file: SOURCE_BUILD_PATH, why, warnings: warnings.length, log: BUILD_LOG_PATH });
  const note = warnings.length > 0 ? `; ${warnings.length} compiler warnings, see ${log}` : "";
  say(`native kernels built in ${seconds} s (${SOURCE_BUILD_PATH}${note}).`);
  process.exit(0);
}
const error = verbose
  ? `node-gyp exited with ${r.status}`
  : firstErrorLine(r.output) || `node-gyp exited with ${r.status}`;
record("failed", { reason: "compile", why, error, log: verbose ? null : BUILD_LOG_PATH });
say(`the native kernel build failed (${error}); lorakit will run on its TypeScript kernels (much slower).`);
say(verbose ? "  The compiler's output is above." : `  Full log: ${log}`);
process.exit(force ? 1 : 0);
