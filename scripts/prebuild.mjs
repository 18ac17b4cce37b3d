// prepack: builds the native binaries the npm package carries, so that an installed lorakit
// has native kernels with no compiler and no install script (src/kernels/native/loader.ts
// finds them; scripts/build-native.mjs builds from source only when none loads).
//
//   prebuilds/linux-x64/lorakit_native.napi.glibc.node     built with this machine's g++
//   prebuilds/linux-arm64/lorakit_native.napi.glibc.node   cross-compiled with Debian's
//                                                           g++-aarch64-linux-gnu, if installed
//
// On another host it builds that host's binary only. Each binary is an N-API (version 8)
// addon, so one file serves every Node version from 20 on; it is compiled without -march
// and picks AVX-512 / AVX2+FMA / portable (NEON on arm64) code at run time (native/src/cpu.cc).
// Builds run in a scratch copy of binding.gyp + native/src, so the checkout's own build/ is
// left alone. A missing cross compiler skips that target and says so (the pack goes on); a
// compile error fails the pack.
//
//   LORAKIT_PREBUILD_TARGETS=linux-x64   build only these targets (comma-separated)
//   LORAKIT_ARM64_CXX=...                the arm64 cross compiler (default aarch64-linux-gnu-g++)
import { cpSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ADDON_NAME,
  firstErrorLine,
  hostLibc,
  prebuiltFile,
  runNodeGyp,
  warningLines,
  which,
  writeUnder,
} from "./native-build-lib.mjs";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const requireHere = createRequire(join(root, "package.json"));

// ELF e_machine values of the targets.
const ELF_MACHINE = { x64: 62, arm64: 183 };

function say(line) {
  console.error(`lorakit prebuild: ${line}`);
}

/** The targets this host can build: its own, and linux-arm64 from linux-x64. */
function targets() {
  const list = [{ platform: process.platform, arch: process.arch, libc: hostLibc(), cross: null }];
  if (process.platform === "linux" && process.arch === "x64") {
    const cxx = process.env.LORAKIT_ARM64_CXX || "aarch64-linux-gnu-g++";
    list.push({
      platform: "linux",
      arch: "arm64",
      libc: "glibc",
      cross: { cxx, cc: cxx.replace(/g\+\+$/, "gcc"), apt: "g++-aarch64-linux-gnu" },
    });
  }
  const only = process.env.LORAKIT_PREBUILD_TARGETS;
  if (!only) return list;
  const wanted = only.split(",").map((s) => s.trim());
  return list.filter((t) => wanted.includes(`${t.platform}-${t.arch}`));
}

function elfMachine(file) {
  const fd = openSync(file, "r");
  const head = Buffer.alloc(20);
  readSync(fd, head, 0, 20, 0);
  if (head.readUInt32BE(0) !== 0x7f454c46) return null;
  return head.readUInt16LE(18);
}

/** Loads the host binary and runs a 2×2 product through it: the path it picked, or throws. */
function smokeTest(file) {
  const addon = requireHere(file);
  const c = new Float32Array(4);
  addon.gemm(
    false,
    false,
    2,
    2,
    2,
    1,
    new Float32Array([1, 2, 3, 4]),
    0,
    new Float32Array([1, 0, 0, 1]),
    0,
    c,
    0,
    1,
    0,
  );
  if (c.join(",") !== "1,2,3,4") throw new Error(`a 2×2 product gave ${c.join(",")}`);
  return addon.cpuFeatures().path;
}

function build(t) {
  const { tag, rel } = prebuiltFile(t.platform, t.arch, t.libc);
  const env = { GYP_DEFINES: `${process.env.GYP_DEFINES ?? ""} lorakit_prebuilt=1`.trim() };
  const args = [];
  if (t.cross) {
    const cxx = which([t.cross.cxx]);
    const cc = which([t.cross.cc]);
    if (!cxx || !cc) {
      say(
        `${tag} skipped: ${t.cross.cxx} is not installed (apt-get install ${t.cross.apt}); the package carries no ${tag} binary.`,
      );
      return null;
    }
    Object.assign(env, { CXX: cxx, CC: cc, LINK: cxx });
    args.push(`--arch=${t.arch}`);
  }
  // binding.gyp finds node-addon-api with require() from its own folder: point it here.
  const addonApi = dirname(dirname(requireHere.resolve("node-addon-api")));
  env.NODE_PATH = [addonApi, process.env.NODE_PATH].filter(Boolean).join(delimiter);

  const stage = mkdtempSync(join(tmpdir(), `lorakit-prebuild-${tag}-`));
  cpSync(join(root, "binding.gyp"), join(stage, "binding.gyp"));
  cpSync(join(root, "native", "src"), join(stage, "native", "src"), { recursive: true });
  const t0 = Date.now();
  const r = runNodeGyp(stage, args, env);
  const log = join(stage, "build.log");
  writeFileSync(log, r.output);
  if (!r.ok) {
    say(`${tag} FAILED: ${firstErrorLine(r.output) || `node-gyp exited with ${r.status}`}`);
    process.stderr.write(`${r.output.split("\n").slice(-40).join("\n")}\n`);
    say(`full log: ${log}`);
    process.exit(1);
  }
  const built = join(stage, "build", "Release", `${ADDON_NAME}.node`);
  const machine = elfMachine(built);
  if (t.platform === "linux" && machine !== ELF_MACHINE[t.arch]) {
    say(`${tag} FAILED: ${built} is ELF machine ${machine}, not ${ELF_MACHINE[t.arch]} (${t.arch})`);
    process.exit(1);
  }
  const dest = join(root, rel);
  writeUnder(root, rel, "");
  cpSync(built, dest);
  const warnings = warningLines(r.output);
  for (const w of warnings) say(`warning: ${w}`);
  const size = `${Math.round(statSync(dest).size / 1024)} KiB`;
  const check = t.cross ? "cross-compiled, not run here" : `loads here, ${smokeTest(dest)} path`;
  const secs = Math.round((Date.now() - t0) / 1000);
  say(`${tag}: ${rel} (${size}, ${warnings.length} compiler warnings, ${secs} s, ${check}).`);
  rmSync(stage, { recursive: true, force: true });
  return tag;
}

// Never ship a binary left over from an earlier pack.
rmSync(join(root, "prebuilds"), { recursive: true, force: true });
const built = targets()
  .map(build)
  .filter((t) => t !== null);
if (built.length === 0) {
  say("no prebuilt binary was built; installs will build from source (or run on the TypeScript kernels).");
} else {
  say(`the package carries prebuilt native kernels for ${built.join(", ")}.`);
}
