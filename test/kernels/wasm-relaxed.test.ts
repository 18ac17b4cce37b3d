// The relaxed-SIMD build of the wasm kernels (lorakit_kernels{,_threads}_relaxed.wasm, the
// GEMM and attention with f32x4.relaxed_madd) and the feature detection that picks it.
// Node 20 validates relaxed SIMD only under --experimental-wasm-relaxed-simd, so this process
// (no flag) covers the plain path, and a child process with the flag runs the kernel contract
// and the thread bit-identity suite on the relaxed modules. Chromium (which ships relaxed
// SIMD) takes the relaxed build in test/kernels/wasm-browser.test.ts and test/browser.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { instantiateWasmKernels, relaxedSimdSupported } from "../../src/kernels/wasm/module.js";
import { loadNodeWasmBackend, wasmModulePath } from "../../src/kernels/wasm/node/load.js";
import { repoRoot } from "../util/repo.js";

const FLAG = "--experimental-wasm-relaxed-simd";
const flagged = process.execArgv.includes(FLAG);
const built = existsSync(wasmModulePath("relaxed"));
const skip = built ? false : "relaxed-SIMD kernels not built (needs clang ≥ 16: npm run build:wasm)";

/** Runs `code` (an ES module) in a child Node with or without the relaxed-SIMD flag; returns its stdout. */
function child(code: string, withFlag: boolean): string {
  const r = spawnSync(process.execPath, [...(withFlag ? [FLAG] : []), "--input-type=module", "-e", code], {
    cwd: repoRoot(),
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

describe("relaxed SIMD feature detection", { skip }, () => {
  test("the probe follows the engine: false in Node 20 without the flag, true with it", () => {
    const probe = `import { relaxedSimdSupported } from "./dist/src/kernels/wasm/module.js"; console.log(relaxedSimdSupported());`;
    assert.equal(child(probe, false), "false");
    assert.equal(child(probe, true), "true");
    assert.equal(relaxedSimdSupported(), flagged);
  });

  test("an engine without relaxed SIMD loads the plain build and refuses the relaxed module", async () => {
    if (flagged) return;
    const r = await loadNodeWasmBackend({ threads: 1 });
    assert.ok("handle" in r);
    assert.equal(r.handle.simd, "simd128");
    await assert.rejects(instantiateWasmKernels(readFileSync(wasmModulePath("relaxed"))), /did not compile/);
  });

  test("with relaxed SIMD the relaxed build is loaded, on one thread and on several", () => {
    const code = `import { loadNodeWasmBackend } from "./dist/src/kernels/wasm/node/load.js";
      const out = [];
      for (const threads of [1, 2]) {
        const r = await loadNodeWasmBackend({ threads });
        out.push(r.handle.simd + "/" + r.handle.threads);
        r.handle.dispose();
      }
      console.log(out.join(" "));`;
    assert.equal(child(code, true), "relaxed/1 relaxed/2");
  });

  test("the kernel contract and the thread bit-identity suite pass on the relaxed build", () => {
    const files = ["contract.test.js", "wasm-threads.test.js"].map((f) =>
      join(repoRoot(), "dist/test/kernels", f),
    );
    // Without NODE_TEST_CONTEXT (set for this file by the runner), the child reports in TAP.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const r = spawnSync(
      process.execPath,
      [
        FLAG,
        "--test",
        "--test-reporter=tap",
        "--test-concurrency=1",
        // The wasm targets of the contract, and the bit-identity test (the other tests of
        // wasm-threads compare against the plain module by path).
        "--test-name-pattern=kernel contract: wasm",
        "--test-name-pattern=bit-identical on 1, 2, 3 and 5 threads",
        ...files,
      ],
      { cwd: repoRoot(), encoding: "utf8", env, maxBuffer: 256 << 20, timeout: 300_000 },
    );
    assert.equal(r.status, 0, `${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
    // The contract names the build it ran on: the relaxed one, on 1 and 3 threads.
    assert.match(r.stdout, /kernel contract: wasm \(relaxed, 1 thread\(s\)\)/);
    assert.match(r.stdout, /kernel contract: wasm-threads \(relaxed, 3 thread\(s\)\)/);
    assert.match(r.stdout, /^ {4}ok \d+ - every wasm kernel is bit-identical on 1, 2, 3 and 5 threads/m);
    assert.doesNotMatch(r.stdout, /^# fail [1-9]/m);
  });
});
