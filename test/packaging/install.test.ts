// lorakit as a user gets it: `npm pack` (its prepack builds the prebuilt binary), the tarball
// installed into a fresh project from the npm cache (`npm ci` filled it), once with npm's
// defaults and once with --ignore-scripts, both with a PATH that holds node and npm and no
// compiler, make or python. Each install must train on native kernels, and the package must
// load with both `import` and `require`.
//
// The prepack runs through `npm run prepack` and the pack with --ignore-scripts: that is
// `npm pack` without its `prepare` step (tsc), which `npm test` has just done. The arm64
// cross compiler is pointed at a name that does not exist, so the pack also shows that a
// missing cross compiler leaves a linux-x64-only package (and the test skips a second
// minute-long build).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { prebuiltRelativePath } from "../../src/kernels/native/loader.js";
import { repoRoot } from "../util/repo.js";

const repo = repoRoot();
const onLinuxX64 = process.platform === "linux" && process.arch === "x64";
const PREBUILT = prebuiltRelativePath({ platform: "linux", arch: "x64", libc: "glibc" });

/** npm's CLI script: the one running `npm test`, else the one installed beside node. */
function npmCli(): string {
  const fromNpm = process.env.npm_execpath;
  if (fromNpm && /npm-cli\.js$/.test(fromNpm)) return fromNpm;
  return join(dirname(dirname(process.execPath)), "lib", "node_modules", "npm", "bin", "npm-cli.js");
}

/** The first `name` on PATH, or null. */
function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

/** The environment of a user's shell: no npm lifecycle variables from the `npm test` around us. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (
      /^npm_(lifecycle|package|execpath|node_execpath|command)|^npm_config_(local_prefix|node_gyp)$|^INIT_CWD$/.test(
        k,
      )
    )
      continue;
    if (k === "NODE_TEST_CONTEXT" || k === "LORAKIT_BACKEND") continue;
    env[k] = v;
  }
  return { ...env, NO_COLOR: "1", ...extra };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Run {
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  return {
    code: r.status,
    stdout: r.stdout ?? "",
    stderr: `${r.stderr ?? ""}${r.error ? r.error.message : ""}`,
  };
}

function ok(r: Run, what: string): Run {
  assert.equal(r.code, 0, `${what} exited ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return r;
}

/** The highest version of each symbol-version family (GLIBC, GLIBCXX) a binary needs, via objdump. */
function neededVersions(file: string): Record<string, string> | null {
  const r = spawnSync("objdump", ["-T", file], { encoding: "utf8" });
  if (r.status !== 0) return null;
  const max: Record<string, string> = {};
  for (const m of r.stdout.matchAll(/\((GLIBC|GLIBCXX)_([0-9.]+)\)/g)) {
    const [, fam, ver] = m;
    if (!max[fam] || cmpVersion(ver, max[fam]) > 0) max[fam] = ver;
  }
  return max;
}

function cmpVersion(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

const CORPUS =
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, " +
  "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery " +
  "part of the world.\n";

describe("lorakit installed from its npm tarball", {
  skip: onLinuxX64 ? false : "linux-x64 only",
  timeout: 1_200_000,
}, () => {
  const npm = npmCli();
  let scratch: string;
  let tarball: string;
  let prepackLog: string;
  // node and npm only: any attempt to compile at install would fail here.
  let noCompilerPath: string;

  before(() => {
    scratch = mkdtempSync(join(tmpdir(), "lorakit-pack-"));
    const bin = join(scratch, "bin");
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, "node"));
    symlinkSync(npm, join(bin, "npm"));
    // npm runs scripts through `sh`, which every user's PATH has.
    const sh = onPath("sh");
    assert.ok(sh, "no sh on PATH");
    symlinkSync(sh, join(bin, "sh"));
    noCompilerPath = bin;
    for (const tool of ["g++", "c++", "clang++", "make", "python3"]) {
      assert.ok(!existsSync(join(bin, tool)), `${tool} in the no-compiler PATH`);
    }

    const prepack = ok(
      run(
        process.execPath,
        [npm, "run", "prepack"],
        repo,
        userEnv({ LORAKIT_ARM64_CXX: "lorakit-test-no-such-g++" }),
      ),
      "npm run prepack",
    );
    prepackLog = prepack.stderr + prepack.stdout;
    const pack = ok(
      run(
        process.execPath,
        [npm, "pack", "--ignore-scripts", "--json", "--pack-destination", scratch],
        repo,
        userEnv(),
      ),
      "npm pack",
    );
    const [info] = JSON.parse(pack.stdout) as { filename: string }[];
    tarball = join(scratch, info.filename);
  });
  after(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  test("the pack builds linux-x64 without a warning and goes on without the arm64 cross compiler", () => {
    assert.match(
      prepackLog,
      /linux-x64: prebuilds\/linux-x64\/lorakit_native\.napi\.glibc\.node \(\d+ KiB, 0 compiler warnings/,
    );
    assert.match(prepackLog, /linux-arm64 skipped: lorakit-test-no-such-g\+\+ is not installed/);
    assert.match(prepackLog, /carries prebuilt native kernels for linux-x64\./);
  });

  test("the tarball carries the prebuilt, the sources and both install scripts, and no build folder", () => {
    const files = ok(run("tar", ["tzf", tarball], scratch, userEnv()), "tar").stdout.split("\n");
    for (const f of [
      PREBUILT,
      "binding.gyp",
      "native/src/cpu.cc",
      "scripts/build-native.mjs",
      "scripts/native-build-lib.mjs",
      // The WebAssembly kernels, built by prepack, and what rebuilds them.
      "dist/src/kernels/wasm/lorakit_kernels.wasm",
      "scripts/build-wasm.mjs",
      "src/kernels/wasm/c/gemm.c",
    ]) {
      assert.ok(files.includes(`package/${f}`), `package/${f} missing from the tarball`);
    }
    assert.ok(!files.some((f) => f.startsWith("package/build/")), "a build/ folder in the tarball");
    assert.ok(
      !files.some((f) => f.startsWith("package/prebuilds/linux-arm64/")),
      "an arm64 binary that was not built",
    );
    const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8"));
    assert.ok(pkg.dependencies["node-addon-api"], "node-addon-api must be a dependency for source builds");
  });

  test("the prebuilt asks no more of the system than glibc 2.29 and GLIBCXX_3.4.22", (t) => {
    const v = neededVersions(join(repo, PREBUILT));
    if (v === null) return t.skip("objdump is not installed");
    assert.ok(cmpVersion(v.GLIBC, "2.29") <= 0, `needs GLIBC_${v.GLIBC}`);
    assert.ok(cmpVersion(v.GLIBCXX ?? "0", "3.4.22") <= 0, `needs GLIBCXX_${v.GLIBCXX}`);
  });

  for (const mode of ["npm defaults", "--ignore-scripts"] as const) {
    describe(`installed with ${mode}, no compiler on PATH`, () => {
      let project: string;
      let installed: string;
      const env = () => userEnv({ PATH: noCompilerPath });

      before(() => {
        project = join(scratch, mode === "npm defaults" ? "defaults" : "ignore-scripts");
        mkdirSync(project);
        writeFileSync(
          join(project, "package.json"),
          JSON.stringify({ name: "consumer", version: "1.0.0", private: true }),
        );
        const flags = [
          "--prefer-offline",
          "--no-audit",
          "--no-fund",
          ...(mode === "--ignore-scripts" ? ["--ignore-scripts"] : []),
        ];
        ok(
          run(process.execPath, [npm, "install", tarball, ...flags], project, env()),
          `npm install (${mode})`,
        );
        installed = join(project, "node_modules", "lorakit");
      });

      test("no addon was compiled; the install script, when it ran, took the prebuilt", () => {
        assert.ok(!existsSync(join(installed, "build", "Release")), "something was compiled at install");
        const status = join(installed, "build", "native-status.json");
        if (mode === "--ignore-scripts") assert.ok(!existsSync(status), "the install script ran");
        else assert.equal(JSON.parse(readFileSync(status, "utf8")).outcome, "prebuilt");
      });

      /** `lorakit train --json` (2 tiny steps on the shipped demo model) through the installed bin. */
      function train(out: string): { summary: Record<string, unknown>; stderr: string } {
        writeFileSync(join(project, "corpus.txt"), CORPUS.repeat(4));
        const model = join(installed, "models", "demo-base");
        const args = ["train", "--model", model, "--data", "corpus.txt", "--out", out, "--json"];
        args.push("--steps", "2", "--seq-len", "16", "--batch-size", "1", "--r", "2");
        const r = ok(
          run(join(project, "node_modules", ".bin", "lorakit"), args, project, env()),
          "lorakit train",
        );
        return { summary: JSON.parse(r.stdout.trim()), stderr: r.stderr };
      }

      test("lorakit train runs on the native kernels", () => {
        const { summary, stderr } = train("adapter");
        assert.equal(summary.backend, "native", stderr);
        assert.equal(summary.steps, 2);
        assert.doesNotMatch(stderr, /native kernels unavailable/);
        assert.ok(existsSync(join(project, "adapter", "adapter_model.safetensors")));
      });

      test("import and require both load the package", () => {
        const esm = ok(
          run(
            process.execPath,
            [
              "--input-type=module",
              "-e",
              "const m = await import('lorakit'); const n = await import('lorakit/node');" +
                "console.log(JSON.stringify([typeof m.Tensor, typeof n.selectBackend]));",
            ],
            project,
            env(),
          ),
          "import",
        );
        assert.deepEqual(JSON.parse(esm.stdout), ["function", "function"]);
        const cjs = ok(
          run(
            process.execPath,
            [
              "-e",
              "const m = require('lorakit'); const n = require('lorakit/node');" +
                "console.log(JSON.stringify([typeof m.Tensor, typeof n.selectBackend, m.Tensor === n.Tensor]));",
            ],
            project,
            env(),
          ),
          "require",
        );
        assert.deepEqual(JSON.parse(cjs.stdout), ["function", "function", true]);
        assert.equal(cjs.stderr, "", "require(esm) printed a warning");
      });

      if (mode === "--ignore-scripts") {
        test("with no prebuilt and no install script, the notice says why and the fix", () => {
          rmSync(join(installed, "prebuilds"), { recursive: true });
          const why =
            /native kernels unavailable: no prebuilt binary for linux-x64 \(this package carries: none\), and the install script that builds one from source did not run/;
          // The WebAssembly kernels the tarball carries run instead...
          const onWasm = train("adapter-wasm");
          assert.equal(onWasm.summary.backend, "wasm");
          assert.match(onWasm.stderr, why);
          assert.match(onWasm.stderr, /running on the WebAssembly kernels .*Fix: npm rebuild lorakit/);
          // ...and without them too, the TypeScript kernels, saying so.
          rmSync(join(installed, "dist", "src", "kernels", "wasm", "lorakit_kernels.wasm"));
          const { summary, stderr } = train("adapter-ref");
          assert.equal(summary.backend, "ref");
          assert.match(stderr, why);
          assert.match(stderr, /TypeScript kernels \(much slower\)\. Fix: npm rebuild lorakit/);
          assert.match(
            stderr,
            /the WebAssembly kernels are unavailable too: the WebAssembly kernels are not built/,
          );
        });
      }
    });
  }
});
