// The wasm backend on several threads: every kernel it runs in WebAssembly gives bit-identical
// results on 1, 2, 3 and 5 threads (each call split, however small); a worker that fails or
// dies surfaces as a BackendError, never a hang; dispose() leaves a working one-thread
// backend; idle workers never keep Node alive; the browser entry's fallbacks.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import type { AttentionParams, Backend } from "../../src/core/backend.js";
import { backend as engineBackend, setBackend } from "../../src/core/engine.js";
import { BackendError } from "../../src/core/errors.js";
import { refBackend } from "../../src/kernels/ref/index.js";
import { createWasmBackend } from "../../src/kernels/wasm/backend.js";
import { loadWasmBackend } from "../../src/kernels/wasm/load.js";
import { compileThreadedKernels, instantiateWasmKernels } from "../../src/kernels/wasm/module.js";
import {
  defaultWasmThreads,
  loadNodeWasmBackend,
  nodeWorkerHandle,
  spawnNodeWorker,
  wasmModulePath,
  wasmThreadsModulePath,
} from "../../src/kernels/wasm/node/load.js";
import { openWasmBackend, type WasmBackendHandle } from "../../src/kernels/wasm/open.js";
import { WasmThreadPool } from "../../src/kernels/wasm/pool.js";
import { repoRoot } from "../util/repo.js";

const THREADS = [1, 2, 3, 5];
const handles: WasmBackendHandle[] = [];
for (const threads of THREADS) {
  const r = await loadNodeWasmBackend({ threads, splitAbove: 0 });
  if ("error" in r) break;
  handles.push(r.handle);
}
const skip = handles.length < THREADS.length ? "wasm kernels not built (npm run build:wasm)" : false;
after(() => {
  for (const h of handles) h.dispose();
});

let seed = 4242;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
}
function randomF32(len: number, scale = 2): Float32Array {
  const x = new Float32Array(len);
  for (let i = 0; i < len; i++) x[i] = rand() * scale;
  return x;
}

/** Inputs drawn once, so every backend sees the same. */
function inputs() {
  seed = 4242;
  const att = { B: 2, T: 13, S: 13, H: 4, Hkv: 2, D: 24 };
  const rows = att.B * att.T * att.H * att.D;
  const kv = att.B * att.S * att.Hkv * att.D;
  return {
    gemms: [
      // m, n, k, batch, transA, transB: column split, row split (n small), batch split, batch not divisible.
      { m: 37, n: 203, k: 300, batch: 1, transA: false, transB: true },
      { m: 301, n: 16, k: 70, batch: 1, transA: true, transB: false },
      { m: 19, n: 33, k: 41, batch: 6, transA: false, transB: false },
      { m: 23, n: 45, k: 270, batch: 7, transA: true, transB: true },
    ].map((g) => ({ ...g, a: randomF32(g.m * g.k * g.batch), b: randomF32(g.k * g.n * g.batch) })),
    att,
    q: randomF32(rows),
    k: randomF32(kv),
    v: randomF32(kv),
    dout: randomF32(rows),
    dk0: randomF32(kv),
    gate: randomF32(1003, 12),
    up: randomF32(1003),
    dy: randomF32(1003),
    acc0: randomF32(1003),
    logits: randomF32(37 * 101, 8),
    targets: Int32Array.from({ length: 37 }, (_, i) => (i % 9 === 4 ? -100 : (i * 31) % 101)),
    x: randomF32(29 * 67),
    w: randomF32(67),
    dyN: randomF32(29 * 67),
    dw0: randomF32(67),
  };
}

/** Every kernel the wasm backend runs in WebAssembly, on `be`: all outputs, in order. */
function runAll(be: Backend): Float32Array[] {
  const I = inputs();
  const outs: Float32Array[] = [];
  for (const g of I.gemms) {
    const c = new Float32Array(g.m * g.n * g.batch).fill(0.5);
    be.gemm({
      ...g,
      strideA: g.m * g.k,
      strideB: g.k * g.n,
      c,
      strideC: g.m * g.n,
      alpha: 0.75,
      beta: 1,
    });
    outs.push(c);
  }
  const { B, T, S, H, D } = I.att;
  const p: AttentionParams = {
    ...I.att,
    q: I.q,
    k: I.k,
    v: I.v,
    kvCapacity: S,
    scale: 1 / Math.sqrt(D),
    offset: 0,
    causal: true,
  };
  const out = new Float32Array(B * T * H * D);
  const lse = new Float32Array(B * H * T);
  be.attention(p, out, lse);
  const dq = new Float32Array(out.length);
  const dk = I.dk0.slice();
  const dv = new Float32Array(I.k.length);
  be.attentionBackward(p, out, lse, I.dout, dq, dk, dv);
  outs.push(out, lse, dq, dk, dv);
  const sm = new Float32Array(I.gate.length);
  be.siluMul(I.gate, I.up, sm);
  const dg = I.acc0.slice();
  const du = I.acc0.slice();
  be.siluMulBackward(I.gate, I.up, I.dy, dg, du, true);
  outs.push(sm, dg, du);
  const N = I.targets.length;
  const V = I.logits.length / N;
  const loss = new Float32Array(N);
  const clse = new Float32Array(N);
  be.crossEntropy(I.logits, I.targets, N, V, -100, loss, clse);
  const dl = new Float32Array(I.logits.length);
  be.crossEntropyBackward(I.logits, I.targets, clse, new Float32Array(N).fill(1 / N), N, V, -100, dl, false);
  outs.push(loss, clse, dl);
  const C = I.w.length;
  const R = I.x.length / C;
  const y = new Float32Array(I.x.length);
  const rstd = new Float32Array(R);
  be.rmsNorm(I.x, I.w, R, C, 1e-6, y, rstd);
  const dx = new Float32Array(I.x.length).fill(0.25);
  const dw = I.dw0.slice();
  be.rmsNormBackward(I.x, I.w, rstd, I.dyN, R, C, dx, dw, true);
  outs.push(y, rstd, dx, dw);
  // AdamW: two steps on 1003 elements (f32x4 groups split unevenly).
  const param = I.up.slice();
  const m = new Float32Array(param.length);
  const v = new Float32Array(param.length);
  for (const step of [1, 2])
    be.adamw({
      param,
      grad: I.dy,
      m,
      v,
      lr: 1e-2,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.1,
      step,
    });
  outs.push(param, m, v);
  // RoPE on the attention queries (rows b, t, h split between threads), both directions.
  const half = D / 2;
  const cos = Float32Array.from({ length: T * half }, (_, i) => Math.cos(i * 0.37));
  const sin = Float32Array.from({ length: T * half }, (_, i) => Math.sin(i * 0.37));
  for (const inverse of [false, true]) {
    const ro = new Float32Array(I.q.length);
    be.rope(I.q, cos, sin, B, T, H, D, inverse, ro);
    outs.push(ro);
  }
  // The softmax family on the rmsNorm input's rows.
  const sm2 = new Float32Array(I.x.length);
  const ls = new Float32Array(I.x.length);
  be.softmax(I.x, R, C, sm2);
  be.logSoftmax(I.x, R, C, ls);
  const sdx = new Float32Array(I.x.length).fill(0.25);
  const ldx = new Float32Array(I.x.length);
  be.softmaxBackward(sm2, I.dyN, R, C, sdx, true);
  be.logSoftmaxBackward(ls, I.dyN, R, C, ldx, false);
  outs.push(sm2, ls, sdx, ldx);
  // Binary ops, contiguous and broadcast (runs cut between threads mid-row), and axpy.
  for (const [op, bShape] of [
    ["add", [R, C]],
    ["mul", [1, C]],
    ["div", [R, 1]],
    ["maximum", [1, 1]],
  ] as const) {
    const bo = new Float32Array(I.x.length);
    const b = bShape[0] === R ? I.dyN : bShape[1] === C ? I.w : Float32Array.of(0.5);
    be.binary(op, I.x, [R, C], bShape[1] === 1 && bShape[0] === R ? I.x.subarray(0, R) : b, [...bShape], bo, [
      R,
      C,
    ]);
    outs.push(bo);
  }
  const ay = I.dyN.slice();
  be.axpy(-0.37, I.x, ay);
  const dr = new Float32Array(I.x.length);
  be.dropout(I.x, dr, 0.3, 77, 2 ** 32 - 100);
  const ur = new Float32Array(C);
  be.unary("rsqrt", I.w.map(Math.abs), ur, 0);
  const us = new Float32Array(I.x.length);
  be.unary("scale", I.x, us, -0.7);
  outs.push(ay, dr, ur, us);
  // The transcendental unary ops (c/unary.c) over a wide range, forward and backward.
  const wide = I.logits;
  const pos = wide.map(Math.abs);
  for (const op of ["exp", "log", "tanh", "sigmoid", "silu", "gelu_tanh", "gelu_erf", "pow"] as const) {
    const uo = new Float32Array(wide.length);
    be.unary(op, op === "log" ? pos : wide, uo, 2.5);
    outs.push(uo);
  }
  for (const op of ["silu", "gelu_tanh", "gelu_erf", "pow"] as const) {
    const ud = I.up.slice();
    be.unaryBackward(op, I.gate, I.gate, I.dy, ud, -1.5, true);
    outs.push(ud);
  }
  // Reductions (innermost dim kept and reduced, several reduced groups), strided copies,
  // copyAxis's accumulate, where, and the NF4 kernels.
  for (const [op, axes] of [
    ["sum", [1]],
    ["sum", [0, 2]],
    ["max", [1, 2]],
    ["max", [0]],
  ] as const) {
    const shape = [37, 1, 101];
    const ro = new Float32Array(
      shape.reduce((n, d, i) => n * ((axes as readonly number[]).includes(i) ? 1 : d), 1),
    );
    be.reduce(op, wide, shape, [...axes], ro);
    outs.push(ro);
  }
  const rs = new Float32Array(29);
  be.reduce("sum", I.x, [29, 67], [1], rs);
  const pr = new Float32Array(I.x.length);
  be.permute(I.x, [29, 67], [1, 0], pr);
  const bt = new Float32Array(29 * 67 * 3);
  be.broadcastTo(I.w, [1, 67, 1], bt, [29, 67, 3]);
  const ca = I.dyN.slice();
  // Runs of 64: long enough to run in wasm (layout.ts's ROW_COPY_MIN).
  be.copyAxis(wide.subarray(0, 29 * 100), 29, 100, 1, 5, ca, 67, 3, 64, true);
  const wc = new Float32Array(I.x.length);
  be.where(
    Uint8Array.from(I.dyN, (v) => (v > 0 ? 1 : 0)),
    I.x,
    I.dyN,
    wc,
  );
  const w4 = {
    packed: Uint8Array.from(I.logits, (v) => Math.floor((v + 4) * 31) & 255),
    scales: I.w.map(Math.abs),
    blocksize: 64,
    quantMap: Float32Array.from({ length: 16 }, (_, i) => i / 7.5 - 1),
    outFeatures: 67,
    inFeatures: 64,
  };
  const deq = new Float32Array(3001);
  be.nf4Dequant(w4, 1001, 3001, deq);
  const ns = new Float32Array(1003);
  be.nf4Scales(
    Uint8Array.from(I.gate, (v) => Math.floor(v * 10) & 255),
    wide.subarray(0, 256),
    I.w,
    64,
    0.03,
    ns,
  );
  outs.push(rs, pr, bt, ca, wc, deq, ns);
  return outs;
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

describe("wasm threads", { skip }, () => {
  test("every wasm kernel is bit-identical on 1, 2, 3 and 5 threads", () => {
    const base = runAll(handles[0].backend);
    for (const h of handles.slice(1)) {
      assert.equal(h.notice, null);
      const got = runAll(h.backend);
      for (let i = 0; i < base.length; i++)
        assert.deepEqual(bits(got[i]), bits(base[i]), `output ${i} differs on ${h.threads} threads`);
    }
    // And they are the kernels' results, not garbage shared by all: close to the reference.
    const ref = runAll(refBackend);
    for (let i = 0; i < base.length; i++)
      for (let j = 0; j < base[i].length; j++)
        assert.ok(
          Math.abs(base[i][j] - ref[i][j]) <= 1e-4 * (1 + Math.abs(ref[i][j])) ||
            (Number.isNaN(base[i][j]) && Number.isNaN(ref[i][j])) ||
            base[i][j] === ref[i][j],
          `output ${i}[${j}]: ${base[i][j]} vs reference ${ref[i][j]}`,
        );
  });

  test("GEMM scratch: threads splitting the columns share one B panel's worth, not one each", async () => {
    const ex = await instantiateWasmKernels(readFileSync(wasmModulePath()));
    // A vocabulary-sized output layer (Qwen2.5's 151,936 columns) on 8 threads.
    const one = ex.wasm_gemm_scratch_bytes(64, 151936, 896, 1, 1);
    const each = ex.wasm_gemm_scratch_bytes(64, 151936, 896, 1, 8);
    assert.ok(8 * each < 1.01 * one, `8 × ${each} bytes vs ${one} on one thread`);
    // Rows split (few columns) or a batch split: each thread packs all columns.
    assert.equal(
      ex.wasm_gemm_scratch_bytes(1024, 16, 64, 1, 4),
      ex.wasm_gemm_scratch_bytes(1024, 16, 64, 1, 1),
    );
    assert.equal(ex.wasm_gemm_scratch_bytes(8, 512, 64, 4, 4), ex.wasm_gemm_scratch_bytes(8, 512, 64, 4, 1));
  });

  test("a part that traps is a BackendError naming the thread that ran it; the next call works", async () => {
    const module = await compileThreadedKernels(readFileSync(wasmThreadsModulePath()));
    const pool = await WasmThreadPool.start(module, 2, spawnNodeWorker);
    after(() => pool.dispose());
    pool.splitAbove = 0;
    const end = pool.ex.memory.buffer.byteLength;
    const [m, n, k] = [4, 64, 1];
    const a = pool.arenaBase;
    const b = a + 64;
    const scratch = b + 1024;
    // C is m×n, split by columns into parts; the last row's columns from 40 on lie past the end
    // of memory, so the parts holding them trap, on whichever thread claimed them.
    const c = end - (3 * n + 40) * 4;
    assert.throws(
      () => pool.run("wasm_gemm", [0, 0, m, n, k, 1, a, 0, b, 0, 0, c, 0, 1, 0, scratch]),
      (e: unknown) =>
        e instanceof BackendError &&
        /(wasm worker 1|the calling thread) failed in wasm_gemm: RuntimeError/.test(e.message),
    );
    const be = createWasmBackend(pool);
    assert.deepEqual(runAll(be).map(bits), runAll(handles[0].backend).map(bits));
  });

  test("a worker that dies makes the next call a BackendError, not a hang", async () => {
    const module = await compileThreadedKernels(readFileSync(wasmThreadsModulePath()));
    let exited: Promise<void> = Promise.resolve();
    let worker: Worker | null = null;
    // A worker that says ready, then exits instead of waiting for jobs.
    const pool = await WasmThreadPool.start(module, 2, () => {
      const w = new Worker(
        `const { parentPort } = require("node:worker_threads");
         parentPort.once("message", () => { parentPort.postMessage({ type: "ready" }); setTimeout(() => process.exit(7), 10); });`,
        { eval: true },
      );
      exited = new Promise((resolve) => w.once("exit", () => resolve()));
      worker = w;
      return nodeWorkerHandle(w);
    });
    after(() => pool.dispose());
    // The pool unrefs its workers; this test waits for the exit, so it keeps this one counted.
    (worker as Worker | null)?.ref();
    await exited;
    const be = createWasmBackend(pool);
    pool.splitAbove = 0;
    assert.throws(
      () => be.siluMul(new Float32Array(64), new Float32Array(64), new Float32Array(64)),
      /wasm worker 1 stopped \(the worker thread exited with code 7\)/,
    );
  });

  test("a worker that never gets to the job does not hold up the call: the caller runs every part", async () => {
    const module = await compileThreadedKernels(readFileSync(wasmThreadsModulePath()));
    // A worker that says ready and then never looks at the job board: the extreme of a thread
    // the OS runs late. With shares assigned per thread the call would wait for it forever.
    const pool = await WasmThreadPool.start(module, 2, () =>
      nodeWorkerHandle(
        new Worker(
          `const { parentPort } = require("node:worker_threads");
           parentPort.once("message", () => parentPort.postMessage({ type: "ready" }));`,
          { eval: true },
        ),
      ),
    );
    after(() => pool.dispose());
    pool.splitAbove = 0;
    assert.equal(pool.threads, 2);
    assert.deepEqual(runAll(createWasmBackend(pool)).map(bits), runAll(handles[0].backend).map(bits));
  });

  test("a worker that cannot start leaves one thread and a notice saying why", async () => {
    const h = await openWasmBackend({
      threads: 3,
      threadsUnavailable: null,
      simd: "simd128",
      singleBytes: async () => readFileSync(wasmModulePath()),
      threadedBytes: async () => readFileSync(wasmThreadsModulePath()),
      spawn: () => nodeWorkerHandle(new Worker(`throw new Error("no worker today")`, { eval: true })),
    });
    assert.equal(h.threads, 1);
    assert.match(h.notice ?? "", /run on 1 thread, not 3: wasm worker \d could not start: no worker today/);
    assert.deepEqual(runAll(h.backend).map(bits), runAll(handles[0].backend).map(bits));
  });

  test("after dispose() the backend runs on the calling thread alone, with the same results", async () => {
    const r = await loadNodeWasmBackend({ threads: 2, splitAbove: 0 });
    assert.ok("handle" in r);
    assert.equal(r.handle.threads, 2);
    r.handle.dispose();
    r.handle.dispose();
    assert.equal(r.handle.threads, 1);
    assert.deepEqual(runAll(r.handle.backend).map(bits), runAll(handles[0].backend).map(bits));
  });

  test("idle workers do not keep Node running; workers start under `node -e` and under V8 flags", () => {
    const script = `
      const { loadNodeWasmBackend } = await import(${JSON.stringify(`${repoRoot()}/dist/src/kernels/wasm/node/load.js`)});
      const r = await loadNodeWasmBackend({ threads: 3, splitAbove: 0 });
      const n = 4096;
      r.handle.backend.siluMul(new Float32Array(n).fill(1), new Float32Array(n).fill(2), new Float32Array(n));
      console.log("threads", r.handle.threads, r.handle.notice);`;
    const dir = mkdtempSync(join(tmpdir(), "lorakit-wasm-threads-"));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "run.mjs");
    writeFileSync(file, script);
    // --input-type (node -e) must not reach the workers; a V8 flag may not be passed to them
    // explicitly (Node refuses such an execArgv), so they inherit it.
    for (const argv of [
      ["--input-type=module", "-e", script],
      ["--no-liftoff", file],
    ]) {
      const r = spawnSync(process.execPath, argv, { encoding: "utf8", timeout: 120_000 });
      assert.equal(r.signal, null, `${argv[0]}: the process had to be killed: a worker kept it alive`);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /threads 3 null/, argv[0]);
    }
  });
});

describe("wasm threads in Node by default", () => {
  test("LORAKIT_THREADS (the native backend's variable), else every core", () => {
    const saved = process.env.LORAKIT_THREADS;
    try {
      process.env.LORAKIT_THREADS = "3";
      assert.equal(defaultWasmThreads(), 3);
      for (const bad of ["0", "-2", "many", ""]) {
        process.env.LORAKIT_THREADS = bad;
        assert.equal(defaultWasmThreads(), availableParallelism(), bad);
      }
      delete process.env.LORAKIT_THREADS;
      assert.equal(defaultWasmThreads(), availableParallelism());
    } finally {
      if (saved === undefined) delete process.env.LORAKIT_THREADS;
      else process.env.LORAKIT_THREADS = saved;
    }
  });
});

describe("loadWasmBackend (the browser entry) outside a page", { skip }, () => {
  const saved = engineBackend();
  after(() => setBackend(saved));
  test("without Web Workers it runs on one thread, says why, and becomes the engine's backend", async () => {
    const h = await loadWasmBackend({
      bytes: readFileSync(wasmModulePath()),
      threadsBytes: readFileSync(wasmThreadsModulePath()),
      threads: 2,
    });
    assert.equal(h.threads, 1);
    assert.match(h.notice ?? "", /1 thread, not 2: this context cannot start Web Workers/);
    assert.equal(engineBackend(), h.backend);
    assert.deepEqual(runAll(h.backend).map(bits), runAll(handles[0].backend).map(bits));
  });
  test("install: false leaves the engine's backend alone; a file: URL is refused with the Node way", async () => {
    setBackend(refBackend);
    const h = await loadWasmBackend({ bytes: readFileSync(wasmModulePath()), threads: 1, install: false });
    assert.equal(h.notice, null);
    assert.equal(engineBackend(), refBackend);
    await assert.rejects(
      loadWasmBackend({ threads: 1, install: false }),
      (e: unknown) => e instanceof BackendError && /selectBackend\("wasm"\)/.test(e.message),
    );
  });
});
