// Where the native addon comes from and what lorakit says when it does not load: the loader
// on package folders laid out here (a prebuilt, a source build, an install status), and the
// install script (scripts/build-native.mjs) run on such folders with no compiler on PATH.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import {
  ADDON_RELATIVE_PATH,
  type AddonLoadResult,
  defaultPackageRoot,
  type HostTarget,
  hostTarget,
  loadPackageAddon,
  NativeUnavailableError,
  nativeFallbackNotice,
  prebuiltRelativePath,
  STATUS_RELATIVE_PATH,
} from "../../src/kernels/native/loader.js";
import { repoRoot } from "../util/repo.js";

const host = hostTarget();
const hostTag = `${host.platform}-${host.arch}`;
// The addon this checkout built (npm ci), used as a stand-in prebuilt binary.
const realRoot = defaultPackageRoot();
const realAddon = realRoot === null ? null : join(realRoot, ADDON_RELATIVE_PATH);
const noAddon =
  realAddon === null || !existsSync(realAddon) ? "native addon not built (npm run build:native)" : false;

const scratch = mkdtempSync(join(tmpdir(), "lorakit-loader-"));
after(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;

/** A folder that looks like an installed lorakit package, holding `files`. */
function pkg(files: Record<string, string | { copyOf: string }> = {}): string {
  const root = join(scratch, `pkg${n++}`);
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, "package.json"), JSON.stringify({ name: "lorakit", version: "0.0.0" }));
  for (const [rel, content] of Object.entries(files)) {
    const p = join(root, rel);
    mkdirSync(dirname(p), { recursive: true });
    if (typeof content === "string") writeFileSync(p, content);
    else cpSync(content.copyOf, p);
  }
  return root;
}

function status(s: Record<string, unknown>): string {
  return JSON.stringify({ platform: hostTag, node: process.version, ...s });
}

function unavailable(r: AddonLoadResult): NativeUnavailableError {
  assert.ok("error" in r, "the addon should not load");
  assert.ok(r.error instanceof NativeUnavailableError, `a plain error: ${r.error.message}`);
  return r.error;
}

describe("finding the addon", () => {
  test("a prebuilt binary for this platform loads when there is no source build", { skip: noAddon }, () => {
    const root = pkg({ [prebuiltRelativePath(host)]: { copyOf: realAddon! } });
    const r = loadPackageAddon(root, host);
    assert.ok("addon" in r, "error" in r ? r.error.message : "");
    assert.equal(typeof r.addon.cpuFeatures().path, "string");
  });

  test("a source build that does not load falls through to the prebuilt", { skip: noAddon }, () => {
    const root = pkg({
      [ADDON_RELATIVE_PATH]: "not an ELF file",
      [prebuiltRelativePath(host)]: { copyOf: realAddon! },
    });
    assert.ok("addon" in loadPackageAddon(root, host));
  });

  test("prebuilds/<platform>-<arch>/lorakit_native.napi.<libc>.node, the prebuildify layout", () => {
    assert.equal(
      prebuiltRelativePath({ platform: "linux", arch: "x64", libc: "glibc" }),
      "prebuilds/linux-x64/lorakit_native.napi.glibc.node",
    );
    assert.equal(
      prebuiltRelativePath({ platform: "darwin", arch: "arm64", libc: null }),
      "prebuilds/darwin-arm64/lorakit_native.napi.node",
    );
  });
});

describe("why native kernels are missing, and the fix", () => {
  test("no prebuilt and no install status: the install script did not run", () => {
    const e = unavailable(loadPackageAddon(pkg(), host));
    assert.equal(e.reason, "no-prebuilt");
    assert.match(e.message, new RegExp(`no prebuilt binary for ${hostTag}`));
    assert.match(e.message, /install script .* did not run/);
    assert.match(e.fix, /^npm rebuild lorakit/);
  });

  test("a musl system is told the package carries glibc binaries only", () => {
    const musl: HostTarget = { platform: "linux", arch: "x64", libc: "musl" };
    const root = pkg({ "prebuilds/linux-x64/lorakit_native.napi.glibc.node": "x" });
    const e = unavailable(loadPackageAddon(root, musl));
    assert.equal(e.reason, "no-prebuilt");
    assert.match(e.message, /no prebuilt binary for linux-x64 \(musl\) \(this package carries: linux-x64\)/);
  });

  test("the source build failed for want of a compiler", () => {
    const root = pkg({
      [STATUS_RELATIVE_PATH]: status({
        outcome: "failed",
        reason: "toolchain",
        missing: ["a C++ compiler (g++ or clang++)", "make"],
      }),
    });
    const e = unavailable(loadPackageAddon(root, host));
    assert.equal(e.reason, "build-failed");
    assert.match(e.message, /missing a C\+\+ compiler \(g\+\+ or clang\+\+\), make/);
    assert.match(e.fix, /apt-get install g\+\+ make python3\), then npm rebuild lorakit/);
  });

  test("the source build failed in the compiler: the error and where the full log is", () => {
    const root = pkg({
      [STATUS_RELATIVE_PATH]: status({
        outcome: "failed",
        reason: "compile",
        error: "gemm.cc:1:10: fatal error: napi.h: No such file or directory",
        log: "build/native-build.log",
      }),
    });
    const e = unavailable(loadPackageAddon(root, host));
    assert.equal(e.reason, "build-failed");
    assert.match(e.message, /fatal error: napi\.h/);
    assert.ok(e.message.includes(join(root, "build/native-build.log")), e.message);
  });

  test("the install skipped the build (LORAKIT_SKIP_NATIVE=1)", () => {
    const e = unavailable(
      loadPackageAddon(pkg({ [STATUS_RELATIVE_PATH]: status({ outcome: "skipped" }) }), host),
    );
    assert.equal(e.reason, "skipped");
    assert.match(e.fix, /without LORAKIT_SKIP_NATIVE=1/);
  });

  test("a prebuilt that does not load: the loader's error and a source build as the fix", () => {
    const root = pkg({ [prebuiltRelativePath(host)]: "not an ELF file" });
    const e = unavailable(loadPackageAddon(root, host));
    assert.equal(e.reason, "load-error");
    assert.ok(e.message.includes(join(root, prebuiltRelativePath(host))), e.message);
    assert.match(e.fix, /npm rebuild lorakit --build-from-source/);
  });

  test("in a git checkout the fix is npm run build:native", () => {
    const e = unavailable(loadPackageAddon(pkg({ ".git/HEAD": "ref: refs/heads/main\n" }), host));
    assert.match(e.fix, /^npm run build:native/);
  });

  test("the fallback notice says why and the fix, on two lines", () => {
    const e = unavailable(loadPackageAddon(pkg(), host));
    const lines = nativeFallbackNotice(e).split("\n");
    assert.equal(lines.length, 2);
    assert.match(lines[0], /^lorakit: native kernels unavailable: no prebuilt binary/);
    assert.match(lines[1], /TypeScript kernels .* Fix: npm rebuild lorakit/);
  });
});

// The install script on a package folder (its scripts copied in, no .git), with a PATH that
// holds node and nothing else: no compiler, no make, no python.
describe("the install script", () => {
  const repo = repoRoot();
  const bin = join(scratch, "bin-node-only");
  mkdirSync(bin, { recursive: true });
  symlinkSync(process.execPath, join(bin, "node"));

  function install(root: string, env: Record<string, string> = {}, args: string[] = []) {
    for (const f of ["build-native.mjs", "native-build-lib.mjs"]) {
      cpSync(join(repo, "scripts", f), join(root, "scripts", f));
    }
    const clean: NodeJS.ProcessEnv = { ...process.env, PATH: bin, ...env };
    for (const k of [
      "CXX",
      "CC",
      "PYTHON",
      "npm_config_python",
      "npm_config_build_from_source",
      "LORAKIT_SKIP_NATIVE",
    ]) {
      if (!(k in env)) delete clean[k];
    }
    const r = spawnSync(process.execPath, [join(root, "scripts", "build-native.mjs"), ...args], {
      cwd: root,
      env: clean,
      encoding: "utf8",
    });
    const lines = r.stderr.split("\n").filter((l) => l !== "");
    return { code: r.status, lines, stdout: r.stdout };
  }

  test("takes a prebuilt that loads, compiles nothing, says one line", { skip: noAddon }, () => {
    const root = pkg({ [prebuiltRelativePath(host)]: { copyOf: realAddon! } });
    const r = install(root);
    assert.equal(r.code, 0);
    assert.equal(r.lines.length, 1, r.lines.join("\n"));
    assert.match(r.lines[0], /using the prebuilt native kernels/);
    assert.equal(JSON.parse(readFileSync(join(root, STATUS_RELATIVE_PATH), "utf8")).outcome, "prebuilt");
    assert.ok(!existsSync(join(root, ADDON_RELATIVE_PATH)));
  });

  test("with no prebuilt and no compiler: two lines, the install goes on, the loader explains", () => {
    const root = pkg();
    const r = install(root);
    assert.equal(r.code, 0, "an install never fails for want of the addon");
    assert.equal(r.lines.length, 2, r.lines.join("\n"));
    assert.match(r.lines[0], new RegExp(`no prebuilt binary for ${hostTag}.*missing a C\\+\\+ compiler`));
    assert.equal(r.stdout, "");
    const e = unavailable(loadPackageAddon(root, host));
    assert.equal(e.reason, "build-failed");
    assert.match(e.message, /missing a C\+\+ compiler \(g\+\+ or clang\+\+\), make, python3/);
  });

  test("--force without a compiler fails", () => {
    const r = install(pkg(), {}, ["--force"]);
    assert.equal(r.code, 1, r.lines.join("\n"));
  });

  test("LORAKIT_SKIP_NATIVE=1 records the skip", () => {
    const root = pkg();
    const r = install(root, { LORAKIT_SKIP_NATIVE: "1" });
    assert.equal(r.code, 0);
    assert.equal(unavailable(loadPackageAddon(root, host)).reason, "skipped");
  });
});
