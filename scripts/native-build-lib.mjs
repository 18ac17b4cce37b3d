// What the install script (build-native.mjs) and the prepack script (prebuild.mjs) share:
// where prebuilt binaries live, how this machine is named, and how node-gyp is run quietly.
// Plain Node, no dependencies: it runs inside a user's `npm install`.
//
// The layout is prebuildify's: prebuilds/<platform>-<arch>/lorakit_native.napi[.<libc>].node.
// src/kernels/native/loader.ts reads the same names (a test packs and installs the package,
// so the two cannot drift apart unnoticed).
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { delimiter, dirname, join } from "node:path";

export const ADDON_NAME = "lorakit_native";
export const SOURCE_BUILD_PATH = join("build", "Release", `${ADDON_NAME}.node`);
export const STATUS_PATH = join("build", "native-status.json");
export const BUILD_LOG_PATH = join("build", "native-build.log");

/** "glibc" or "musl" on Linux, null elsewhere (the libc a binary for this machine must use). */
export function hostLibc() {
  if (process.platform !== "linux") return null;
  const header = process.report?.getReport?.()?.header;
  return header?.glibcVersionRuntime ? "glibc" : "musl";
}

/** "linux-x64", and the file a prebuilt for it has under prebuilds/. */
export function prebuiltFile(platform, arch, libc) {
  const tag = `${platform}-${arch}`;
  return { tag, rel: join("prebuilds", tag, `${ADDON_NAME}.napi${libc ? `.${libc}` : ""}.node`) };
}

/** The prebuilt that matches this process (it may not exist). */
export function hostPrebuilt() {
  return prebuiltFile(process.platform, process.arch, hostLibc());
}

/** The first of `names` that is an executable file on PATH (or an absolute path), else null. */
export function which(names) {
  for (const name of names) {
    if (!name) continue;
    const candidates = name.includes("/")
      ? [name]
      : (process.env.PATH ?? "").split(delimiter).map((d) => join(d, name));
    for (const c of candidates) {
      try {
        accessSync(c, constants.X_OK);
        return c;
      } catch {
        // not here
      }
    }
  }
  return null;
}

/** What a source build needs and is missing here: a C++ compiler, make, Python 3. */
export function missingToolchain(env = process.env) {
  const missing = [];
  const cxx = env.CXX?.split(" ")[0];
  if (!which([cxx, "c++", "g++", "clang++"]))
    missing.push(cxx ? `the C++ compiler CXX=${cxx}` : "a C++ compiler (g++ or clang++)");
  if (process.platform !== "win32" && !which(["make", "gmake"])) missing.push("make");
  const py = env.npm_config_python ?? env.PYTHON;
  if (!which([py, "python3", "python"])) missing.push("python3");
  return missing;
}

/** node-gyp's entry script: npm's own (it sets npm_config_node_gyp for scripts), else the one beside node. */
export function nodeGypCommand() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, [fromNpm]];
  const prefix = dirname(dirname(process.execPath));
  for (const p of [
    join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
    join(prefix, "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  ]) {
    if (existsSync(p)) return [process.execPath, [p]];
  }
  const onPath = which(["node-gyp"]);
  return onPath ? [onPath, []] : null;
}

/**
 * `--nodedir=` for node-gyp when npm has none configured and the running node carries its
 * own headers (official tarballs and distribution packages do): node-gyp then builds
 * without downloading a header tarball.
 */
export function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, "include", "node", "node_api.h")) ? [`--nodedir=${prefix}`] : [];
}

/**
 * `node-gyp rebuild` in `cwd` with its whole output captured (returned, not printed), or
 * shown as it comes with `verbose`. `extraEnv` adds to the environment (CXX for a cross
 * compiler, GYP_DEFINES, NODE_PATH).
 */
export function runNodeGyp(cwd, args, extraEnv = {}, { verbose = false } = {}) {
  const gyp = nodeGypCommand();
  if (gyp === null) return { ok: false, status: null, output: "node-gyp not found (it ships with npm)\n" };
  const [cmd, pre] = gyp;
  const jobs = String(Math.max(1, availableParallelism()));
  const r = spawnSync(cmd, [...pre, "rebuild", `--jobs=${jobs}`, ...nodedirArgs(), ...args], {
    cwd,
    env: { ...process.env, ...extraEnv },
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
    stdio: ["ignore", verbose ? "inherit" : "pipe", verbose ? "inherit" : "pipe"],
  });
  const output = `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? `\n${r.error.message}\n` : ""}`;
  return { ok: r.status === 0, status: r.status, output };
}

/** The compiler's warning lines in a build log. */
export function warningLines(output) {
  return output.split("\n").filter((l) => /\bwarning:/.test(l) && !/^gyp (info|WARN)/.test(l));
}

/** The first compiler or node-gyp error line, for a one-line summary of a failed build. */
export function firstErrorLine(output) {
  const lines = output.split("\n");
  return (
    lines.find((l) => /\b(fatal )?error:/.test(l)) ??
    lines.find(
      (l) =>
        l.startsWith("gyp ERR!") &&
        !/^gyp ERR! (stack|System|command|cwd|node -v|node-gyp -v|not ok)/.test(l),
    ) ??
    ""
  ).trim();
}

/** Writes `file` (and its folder) under `root`. */
export function writeUnder(root, rel, text) {
  const p = join(root, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
  return p;
}
