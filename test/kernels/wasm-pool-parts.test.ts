// The wasm thread pool's per-part callback (pool.ts run's onPart), through which the GEMM
// copies each part's rows of C out while the other threads still compute: every part is
// handed over exactly once, only after its output is written, also when the call runs on the
// caller alone (part 0 of 1), and never after a part failed. And the pool's backing off: when
// the workers do not help (a busy host), large calls run on the caller alone for a while.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import { BackendError } from "../../src/core/errors.js";
import { compileThreadedKernels } from "../../src/kernels/wasm/module.js";
import {
  nodeWorkerHandle,
  spawnNodeWorker,
  wasmThreadsModulePath,
} from "../../src/kernels/wasm/node/load.js";
import { WARMUP_SPLIT_CALLS, WasmThreadPool } from "../../src/kernels/wasm/pool.js";

let module: WebAssembly.Module | null = null;
try {
  module = await compileThreadedKernels(readFileSync(wasmThreadsModulePath()));
} catch {
  module = null;
}
const skip = module ? false : "wasm kernels not built (npm run build:wasm)";

/** y = x + y on n floats at `at` (x) and `at + 4n` (y) through wasm_axpy, split into the pool's parts. */
/** Grows the pool's shared memory to at least `bytes`. */
function growTo(pool: WasmThreadPool, bytes: number): void {
  const have = pool.ex.memory.buffer.byteLength;
  if (have < bytes) pool.ex.memory.grow(Math.ceil((bytes - have) / 65536));
}

function axpyArgs(at: number, n: number): number[] {
  return [1, at, at + 4 * n, n];
}

describe("wasm pool: onPart", { skip }, () => {
  test("each part is handed over once, after its output is written; one part when not split", async () => {
    const pool = await WasmThreadPool.start(module as WebAssembly.Module, 3, spawnNodeWorker);
    after(() => pool.dispose());
    const n = 1 << 16;
    const at = pool.arenaBase;
    growTo(pool, at + 8 * n);
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

  test("when the workers never help, large calls go to the caller alone; splitAbove 0 never backs off", async () => {
    // A worker that says ready and never looks at the job board: every part falls to the caller.
    const idle = () =>
      nodeWorkerHandle(
        new Worker(
          `const { parentPort } = require("node:worker_threads");
           parentPort.once("message", () => parentPort.postMessage({ type: "ready" }));`,
          { eval: true },
        ),
      );
    const pool = await WasmThreadPool.start(module as WebAssembly.Module, 2, idle);
    after(() => pool.dispose());
    const n = 1 << 14;
    const at = pool.arenaBase;
    growTo(pool, at + 8 * n);
    const y = new Float32Array(pool.ex.memory.buffer, at + 4 * n, n);
    new Float32Array(pool.ex.memory.buffer, at, n).fill(1);
    y.fill(0);
    const calls = WARMUP_SPLIT_CALLS + 100;
    for (const splitAbove of [0, 1]) {
      pool.splitAbove = splitAbove;
      const before = pool.backedOffCalls;
      for (let i = 0; i < calls; i++) pool.run("wasm_axpy", axpyArgs(at, n));
      const alone = pool.backedOffCalls - before;
      if (splitAbove === 0) assert.equal(alone, 0);
      // Split through the warm-up, which is not judged; the first judging window after it
      // (32 split calls) shows no saving; the rest run alone.
      else {
        assert.ok(alone <= calls - WARMUP_SPLIT_CALLS - 32, `${alone} of ${calls} calls ran alone`);
        assert.ok(alone >= calls - WARMUP_SPLIT_CALLS - 40, `${alone} of ${calls} calls ran alone`);
      }
    }
    assert.ok(y.every((v) => v === 2 * calls));
  });
});
