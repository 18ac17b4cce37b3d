// The wasm thread pool's per-part callback (pool.ts run's onPart), through which the GEMM
// copies each part's rows of C out while the other threads still compute: every part is
// handed over exactly once, only after its output is written, also when the call runs on the
// caller alone (part 0 of 1), and never after a part failed.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, describe, test } from "node:test";
import { BackendError } from "../../src/core/errors.js";
import { compileThreadedKernels } from "../../src/kernels/wasm/module.js";
import { spawnNodeWorker, wasmThreadsModulePath } from "../../src/kernels/wasm/node/load.js";
import { WasmThreadPool } from "../../src/kernels/wasm/pool.js";

let module: WebAssembly.Module | null = null;
try {
  module = await compileThreadedKernels(readFileSync(wasmThreadsModulePath()));
} catch {
  module = null;
}
const skip = module ? false : "wasm kernels not built (npm run build:wasm)";

/** y = x + y on n floats at `at` (x) and `at + 4n` (y) through wasm_axpy, split into the pool's parts. */
function axpyArgs(at: number, n: number): number[] {
  return [1, at, at + 4 * n, n];
}

describe("wasm pool: onPart", { skip }, () => {
  test("each part is handed over once, after its output is written; one part when not split", async () => {
    const pool = await WasmThreadPool.start(module as WebAssembly.Module, 3, spawnNodeWorker);
    after(() => pool.dispose());
    const n = 1 << 16;
    const at = pool.arenaBase;
    const need = at + 8 * n;
    if (pool.ex.memory.buffer.byteLength < need)
      pool.ex.memory.grow(Math.ceil((need - pool.ex.memory.buffer.byteLength) / 65536));
    for (const splitAbove of [0, Number.POSITIVE_INFINITY]) {
      pool.splitAbove = splitAbove;
      for (let round = 0; round < 20; round++) {
        const x = new Float32Array(pool.ex.memory.buffer, at, n);
        const y = new Float32Array(pool.ex.memory.buffer, at + 4 * n, n);
        x.fill(round + 1);
        y.fill(1);
        const seen: number[] = [];
        let total = 0;
        pool.run("wasm_axpy", axpyArgs(at, n), (part, parts) => {
          total = parts;
          seen.push(part);
          // wasm_axpy's part covers a contiguous range; whichever it is, some of y must be
          // done (= round + 2) by now and the sum over y grows with every part reported.
          const done = y.reduce((s, v) => s + (v === round + 2 ? 1 : 0), 0);
          assert.ok(done >= (seen.length * n) / parts - 64, `part ${part}: only ${done} of y written`);
        });
        assert.equal(total, splitAbove === 0 ? pool.parts : 1);
        assert.deepEqual(
          [...seen].sort((a, b) => a - b),
          Array.from({ length: total }, (_, i) => i),
        );
        assert.ok(y.every((v) => v === round + 2));
      }
    }
  });

  test("no part is handed over after a part failed; the call throws", async () => {
    const pool = await WasmThreadPool.start(module as WebAssembly.Module, 2, spawnNodeWorker);
    after(() => pool.dispose());
    pool.splitAbove = 0;
    const end = pool.ex.memory.buffer.byteLength;
    // y runs past the end of memory: the parts holding its tail trap.
    const n = 4096;
    const x = pool.arenaBase;
    const y = end - 4 * (n - 64);
    const seen: number[] = [];
    assert.throws(
      () => pool.run("wasm_axpy", [1, x, y, n], (part) => seen.push(part)),
      (e: unknown) => e instanceof BackendError && /failed in wasm_axpy/.test(e.message),
    );
    assert.ok(!seen.includes(pool.parts - 1), `the failing last part was handed over: ${seen}`);
  });
});
