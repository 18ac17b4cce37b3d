// The kernel contract: every backend against the reference backend, kernel by kernel, on
// seeded random f32 inputs (odd sizes, broadcasts, reductions over several axes, GQA
// attention with long sequences so tiling matters, offsets with kvCapacity > S, ignored
// cross-entropy rows, bit-identical dropout masks, several AdamW steps, every GEMM
// transpose). Each target runs the whole table under each of its configurations (thread
// counts, ISA levels). Adding a backend (wasm, webgpu) is one entry in TARGETS.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import {
  type AttentionParams,
  type Backend,
  BINARY_OPS,
  type Nf4Weight,
  UNARY_OPS,
  type UnaryOp,
} from "../../src/core/backend.js";
import { f32ToBf16 } from "../../src/core/dtype.js";
import { refBackend } from "../../src/kernels/ref/index.js";
import { NF4_CODE } from "../../src/quant/nf4.js";

// ─────────────────────────────────────────────────────────────────────────────────────
// Targets

interface Config {
  label: string;
  apply(): void;
}
interface Target {
  name: string;
  /** The backend with the configurations to run under, or a reason it is not available here. */
  open(): Promise<{ backend: Backend; configs: Config[] } | { skip: string }>;
  /**
   * Asserts that the kernels this backend runs outside JavaScript's bounds checks throw on
   * short buffers and bad indices (the ones it delegates to the reference need not).
   */
  boundsChecks(be: Backend): void;
}

interface NativeControls {
  setThreads(n: number): void;
  getThreads(): number;
  setOpsIsa(isa: string): string;
  opsIsa(): string;
}

async function openNative(): Promise<{ backend: Backend; configs: Config[] } | { skip: string }> {
  const loader = await import("../../src/kernels/native/loader.js");
  const r = loader.loadAddon();
  if ("error" in r) return { skip: `native addon not built (${r.error.message.split("\n")[0]})` };
  const { createNativeBackend } = await import("../../src/kernels/native/backend.js");
  const addon = r.addon as unknown as NativeControls;
  // The table LORAKIT_CPU chose at load; "emu16" is the 16-lane emulation of the AVX-512
  // kernels (emu16.test.ts runs this file so under it, in a child process).
  const initial = addon.opsIsa();
  const best = addon.setOpsIsa("best");
  const threads0 = addon.getThreads();
  // Resize the pool only when the count changes, then give the new workers a moment to
  // start before the first parallel kernel.
  const setThreads = (n: number): void => {
    if (addon.getThreads() === n) return;
    addon.setThreads(n);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  };
  const level = (isa: string, threads: number): Config => ({
    label: `${isa}, ${threads} thread${threads > 1 ? "s" : ""}`,
    apply() {
      setThreads(threads);
      addon.setOpsIsa(isa);
    },
  });
  // The best ISA with 1 and 2 threads, then each lower level the CPU also runs; under
  // LORAKIT_CPU=emu16 the emulated table alone.
  const configs =
    initial === "emu16" ? [level("emu16", 1), level("emu16", 2)] : [level(best, 1), level(best, 2)];
  if (initial !== "emu16" && best === "avx512") configs.push(level("avx2", 2));
  if (initial !== "emu16" && best !== "portable") configs.push(level("portable", 2));
  configs.push({
    label: "restore",
    apply() {
      setThreads(threads0);
      addon.setOpsIsa(initial);
    },
  });
  return { backend: createNativeBackend(r.addon), configs };
}

/**
 * The WebAssembly kernels from the modules the build put in dist/: on one thread, or on
 * `threads` (3: shares of uneven size on this 2-core host) with every call split, however
 * small, so the contract covers the threaded split of each kernel.
 */
function openWasm(threads: number) {
  return async (): Promise<{ backend: Backend; configs: Config[] } | { skip: string }> => {
    const { loadNodeWasmBackend } = await import("../../src/kernels/wasm/node/load.js");
    const r = await loadNodeWasmBackend({ threads, splitAbove: 0 });
    if ("error" in r) return { skip: r.error.message };
    if (r.handle.threads !== threads) throw new Error(`wasm on ${threads} threads: ${r.handle.notice}`);
    // The build the engine took: simd128, or relaxed under --experimental-wasm-relaxed-simd
    // (test/kernels/wasm-relaxed.test.ts runs this suite so).
    return {
      backend: r.handle.backend,
      configs: [{ label: `${r.handle.simd}, ${threads} thread(s)`, apply() {} }],
    };
  };
}

const TARGETS: Target[] = [
  { name: "native", open: openNative, boundsChecks: shortBufferChecks },
  // The wasm backend runs every kernel in WebAssembly but gather, scatterAdd and fill (and the calls
  // src/kernels/wasm/{unary,layout}.ts measured faster on the reference); those are the reference's.
  { name: "wasm", open: openWasm(1), boundsChecks: wasmBoundsChecks },
  { name: "wasm-threads", open: openWasm(3), boundsChecks: wasmBoundsChecks },
];

// ─────────────────────────────────────────────────────────────────────────────────────
// Inputs and comparison

/** mulberry32, so a failure reproduces. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  f32(n: number, lo = -1, hi = 1): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * this.next();
    return a;
  }
  int(n: number, lo: number, hi: number): Int32Array {
    const a = new Int32Array(n);
    for (let i = 0; i < n; i++) a[i] = lo + Math.floor((hi - lo) * this.next());
    return a;
  }
}

/** An output buffer full of a value no kernel produces, so unwritten elements show. */
function out(n: number): Float32Array {
  return new Float32Array(n).fill(-12345.678);
}

type Outputs = Record<string, ArrayLike<number>>;

interface Case {
  name: string;
  /** |got − want| ≤ tol·(1 + |want|); 0 means bit-identical. */
  tol?: number;
  /** Runs the kernel(s) on `be` with inputs drawn from `r` (same seed for every backend). */
  run(be: Backend, r: Rng): Outputs;
}

function compare(got: Outputs, want: Outputs, tol: number): void {
  for (const key of Object.keys(want)) {
    const g = got[key];
    const w = want[key];
    assert.ok(g !== undefined, `${key}: missing`);
    assert.equal(g.length, w.length, `${key}: length`);
    for (let i = 0; i < w.length; i++) {
      const a = g[i];
      const e = w[i];
      if (a === e || (Number.isNaN(a) && Number.isNaN(e))) continue;
      if (tol === 0 || !(Math.abs(a - e) <= tol * (1 + Math.abs(e)))) {
        assert.fail(`${key}[${i}] = ${a}, reference ${e} (tol ${tol})`);
      }
    }
  }
}

const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

// ─────────────────────────────────────────────────────────────────────────────────────
// The table

const cases: Case[] = [];
const add = (c: Case): void => {
  cases.push(c);
};

function unaryDomain(op: UnaryOp): [number, number] {
  if (op === "log" || op === "sqrt" || op === "rsqrt" || op === "pow") return [0.1, 3];
  return [-4, 4];
}
const unaryParam = (op: UnaryOp): number => (op === "pow" ? 2.5 : op === "scale" ? 0.7 : 0);

for (const op of UNARY_OPS) {
  for (const n of [1037, 70001]) {
    add({
      name: `unary ${op} n=${n}`,
      run(be, r) {
        const [lo, hi] = unaryDomain(op);
        const x = r.f32(n, lo, hi);
        const y = out(n);
        be.unary(op, x, y, unaryParam(op));
        return { y };
      },
    });
  }
  for (const acc of [false, true]) {
    add({
      name: `unaryBackward ${op}${acc ? " accumulate" : ""}`,
      run(be, r) {
        const n = 2053;
        const [lo, hi] = unaryDomain(op);
        const x = r.f32(n, lo, hi);
        const y = new Float32Array(n);
        refBackend.unary(op, x, y, unaryParam(op));
        const dy = r.f32(n);
        const dx = acc ? r.f32(n) : out(n);
        be.unaryBackward(op, x, y, dy, dx, unaryParam(op), acc);
        return { dx };
      },
    });
  }
}
add({
  name: "unary pow 2 and scale -3",
  run(be, r) {
    const x = r.f32(333, -2, 2);
    const a = out(333);
    const b = out(333);
    be.unary("pow", x, a, 2);
    be.unary("scale", x, b, -3);
    return { a, b };
  },
});

// The transcendental ops over their whole range: ±0, ±inf, NaN, subnormals, overflow and
// underflow of eˣ (including (−87.34, −86.99), where a flushing eˣ goes wrong), the far tails
// of tanh, σ and both GELUs, and pow's JavaScript rules for negative bases and odd exponents.
const SPECIALS = [
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  0,
  -0,
  1e-45,
  -1e-45,
  1e-40,
  1,
  -1,
  3.4e38,
  -3.4e38,
  88.72,
  88.73,
  -87.2,
  -87.1,
  -103.9,
  -104.1,
  0.625,
  -0.625,
  0.84375,
  1.25 * Math.SQRT2,
  -1.25 * Math.SQRT2,
  -4,
  -9.5,
  -14.5,
];
function extremes(r: Rng, op: UnaryOp): Float32Array {
  const wide = r.f32(3001, -120, 120);
  const x = new Float32Array(SPECIALS.length + wide.length);
  x.set(SPECIALS);
  x.set(wide, SPECIALS.length);
  // log over every scale, subnormals to FLT_MAX (and the negatives above give NaN).
  if (op === "log") for (let i = SPECIALS.length; i < x.length; i += 2) x[i] = 2 ** (r.next() * 276 - 149);
  return x;
}
for (const op of ["exp", "log", "tanh", "sigmoid", "silu", "gelu_tanh", "gelu_erf"] as const) {
  add({
    name: `unary ${op} over its whole range (specials, tails, overflow, subnormals)`,
    run(be, r) {
      const x = extremes(r, op);
      const y = out(x.length);
      be.unary(op, x, y, 0);
      return { y };
    },
  });
}
for (const p of [2.5, 3, -2, 0.5, -0.5, 1, 2, 0, Number.POSITIVE_INFINITY, Number.NaN]) {
  add({
    name: `unary pow ${p}: negative bases, ±0, ±inf, NaN, large and small x`,
    run(be, r) {
      const x = extremes(r, "pow").map((v) => (Math.abs(v) > 1e6 ? v : v / 8));
      const y = out(x.length);
      be.unary("pow", x, y, p);
      return { y };
    },
  });
}
for (const op of ["silu", "gelu_tanh", "gelu_erf", "pow"] as const) {
  add({
    name: `unaryBackward ${op} over its whole range, accumulating`,
    run(be, r) {
      // |x| ≤ 10⁶ for gelu_tanh: native's backward gives NaN beyond about 2·10¹⁹ (x² overflows
      // f32 there), where the reference's derivative is 1 (wasm-math.test.ts checks wasm's there).
      const x = extremes(r, op).map((v) =>
        op === "pow" ? v / 8 : op === "gelu_tanh" && Math.abs(v) > 1e6 ? Math.sign(v) * 1e6 : v,
      );
      const y = new Float32Array(x.length);
      refBackend.unary(op, x, y, 1.5);
      const dy = r.f32(x.length);
      const dx = r.f32(x.length);
      be.unaryBackward(op, x, y, dy, dx, 1.5, true);
      return { dx };
    },
  });
}

const binaryShapes: [number[], number[], number[]][] = [
  [
    [3, 5, 7],
    [3, 5, 7],
    [3, 5, 7],
  ],
  [
    [3, 1, 7],
    [1, 5, 1],
    [3, 5, 7],
  ],
  [
    [4, 1],
    [1, 1],
    [4, 1],
  ],
  [
    [1, 1, 9],
    [2, 3, 9],
    [2, 3, 9],
  ],
  [
    [2, 3, 1, 5],
    [2, 1, 4, 5],
    [2, 3, 4, 5],
  ],
  [
    [64, 1100],
    [1, 1100],
    [64, 1100],
  ],
  [
    [70, 1, 1000],
    [70, 1, 1],
    [70, 1, 1000],
  ],
];
for (const op of BINARY_OPS) {
  for (const [as, bs, os] of binaryShapes) {
    add({
      name: `binary ${op} [${as}]∘[${bs}]`,
      tol: 0,
      run(be, r) {
        // Halves, so eq and maximum meet equal values; div keeps away from 0.
        const a = r.f32(prod(as), -3, 3).map((v) => Math.round(v * 2) / 2);
        const b = r.f32(prod(bs), -3, 3).map((v) => Math.round(v * 2) / 2 + (op === "div" ? 3.25 : 0));
        const o = out(prod(os));
        be.binary(op, a, as, b, bs, o, os);
        return { o };
      },
    });
  }
}

const reduceCases: [number[], number[]][] = [
  [[3, 4, 5, 6], [0]],
  [[3, 4, 5, 6], [1]],
  [[3, 4, 5, 6], [3]],
  [
    [3, 4, 5, 6],
    [0, 1],
  ],
  [
    [3, 4, 5, 6],
    [1, 2],
  ],
  [
    [3, 4, 5, 6],
    [0, 2],
  ],
  [
    [3, 4, 5, 6],
    [1, 3],
  ],
  [
    [3, 4, 5, 6],
    [0, 1, 2, 3],
  ],
  [[3, 1, 5], [1]],
  [[300, 701], [0]],
  [[300, 701], [1]],
  [[7, 1, 9001], [2]],
];
for (const op of ["sum", "max"] as const) {
  for (const [shape, axes] of reduceCases) {
    add({
      name: `reduce ${op} [${shape}] over [${axes}]`,
      tol: 1e-5,
      run(be, r) {
        const x = r.f32(prod(shape));
        const os = shape.map((d, i) => (axes.includes(i) ? 1 : d));
        const o = out(prod(os));
        be.reduce(op, x, shape, axes, o);
        return { o };
      },
    });
  }
}

add({
  name: "reduce sum and max with NaN and ±inf, rank 5 with odd sizes",
  tol: 1e-5,
  run(be, r) {
    const shape = [3, 1, 5, 7, 67];
    const x = r.f32(prod(shape));
    x[17] = Number.NaN;
    x[400] = Number.POSITIVE_INFINITY;
    x[401] = Number.NEGATIVE_INFINITY;
    x[2000] = Number.POSITIVE_INFINITY;
    const res: Outputs = {};
    for (const axes of [[4], [0, 3], [2, 4], [0, 2, 3, 4], [1]]) {
      const os = shape.map((d, i) => (axes.includes(i) ? 1 : d));
      for (const op of ["sum", "max"] as const) {
        const o = out(prod(os));
        be.reduce(op, x, shape, axes, o);
        res[`${op} [${axes}]`] = o;
      }
    }
    return res;
  },
});
add({
  name: "reduce over a negative or out-of-range axis is a RangeError",
  tol: 0,
  run(be) {
    const threw = [-1, 2].map((ax) => {
      try {
        be.reduce("sum", new Float32Array(6), [2, 3], [ax], new Float32Array(6));
        return 0;
      } catch (e) {
        return e instanceof RangeError ? 1 : 2;
      }
    });
    return { threw };
  },
});

for (const [xs, os] of [
  [
    [3, 1, 5],
    [3, 4, 5],
  ],
  [
    [1, 7],
    [6, 7],
  ],
  [
    [2, 1, 1, 3],
    [2, 4, 5, 3],
  ],
  [
    [1, 1],
    [130, 1001],
  ],
  [
    [130, 1],
    [130, 70],
  ],
  [
    [1, 1, 5],
    [7, 3, 5],
  ],
  [
    [2, 1, 3, 1, 5],
    [2, 4, 3, 6, 5],
  ],
]) {
  add({
    name: `broadcastTo [${xs}] → [${os}]`,
    tol: 0,
    run(be, r) {
      const x = r.f32(prod(xs));
      const o = out(prod(os));
      be.broadcastTo(x, xs, o, os);
      return { o };
    },
  });
}

for (const [shape, perm] of [
  [
    [2, 3, 4, 5],
    [0, 2, 1, 3],
  ],
  [
    [2, 3, 4, 5],
    [3, 2, 1, 0],
  ],
  [
    [2, 3, 4, 5],
    [0, 1, 3, 2],
  ],
  [
    [2, 3, 4, 5],
    [1, 0, 2, 3],
  ],
  [
    [3, 1, 7],
    [2, 1, 0],
  ],
  [
    [64, 130, 33],
    [2, 0, 1],
  ],
  [
    [37, 291],
    [1, 0],
  ],
  [
    [3, 1, 4, 5, 2],
    [4, 2, 0, 3, 1],
  ],
  [
    [2, 70, 3],
    [0, 2, 1],
  ],
]) {
  add({
    name: `permute [${shape}] by [${perm}]`,
    tol: 0,
    run(be, r) {
      const x = r.f32(prod(shape));
      const o = out(prod(shape));
      be.permute(x, shape, perm, o);
      return { o };
    },
  });
}

for (const acc of [false, true]) {
  add({
    name: `copyAxis${acc ? " accumulate" : ""}`,
    tol: 0,
    run(be, r) {
      const x = r.f32(5 * 9 * 7);
      const o = acc ? r.f32(5 * 6 * 7) : out(5 * 6 * 7);
      be.copyAxis(x, 5, 9, 7, 2, o, 6, 1, 5, acc);
      return { o };
    },
  });
}

for (const acc of [false, true]) {
  add({
    name: `copyAxis of runs longer than 64${acc ? " accumulate" : ""}`,
    tol: 0,
    run(be, r) {
      const x = r.f32(3 * 10 * 13);
      const o = acc ? r.f32(3 * 8 * 13) : out(3 * 8 * 13);
      be.copyAxis(x, 3, 10, 13, 2, o, 8, 1, 6, acc);
      return { o };
    },
  });
}

add({
  name: "where with condition bytes other than 0 and 1",
  tol: 0,
  run(be, r) {
    const n = 203;
    const cond = Uint8Array.from(r.f32(n), (v) => (v > 0.3 ? 255 : v > 0 ? 2 : 0));
    const o = out(n);
    be.where(cond, r.f32(n), r.f32(n), o);
    return { o };
  },
});

add({
  name: "gather and scatterAdd (repeated indices)",
  run(be, r) {
    const V = 50;
    const C = 37;
    const N = 301;
    const table = r.f32(V * C);
    const idx = r.int(N, 0, V);
    const g = out(N * C);
    be.gather(table, idx, C, g);
    const dOut = r.f32(N * C);
    const dTable = r.f32(V * C);
    be.scatterAdd(dOut, idx, C, dTable);
    return { g, dTable };
  },
});

add({
  name: "where",
  tol: 0,
  run(be, r) {
    const n = 1001;
    const cond = Uint8Array.from(r.f32(n), (v) => (v > 0 ? 1 : 0));
    const o = out(n);
    be.where(cond, r.f32(n), r.f32(n), o);
    return { o };
  },
});

for (const [p, seed, offset] of [
  [0.1, 1234, 0],
  [0.5, -5, 1_000_003],
  [0.9, 0x7fffffff, 4294967290],
  [0, 7, 3],
]) {
  add({
    name: `dropout p=${p} seed=${seed} offset=${offset} (bit-identical)`,
    tol: 0,
    run(be, r) {
      const n = 100_003;
      const x = r.f32(n);
      const o = out(n);
      be.dropout(x, o, p, seed, offset);
      return { o };
    },
  });
}

for (const [N, C] of [
  [7, 1001],
  [300, 257],
  [3, 5],
]) {
  add({
    name: `softmax / logSoftmax (+ backward) N=${N} C=${C}`,
    run(be, r) {
      const x = r.f32(N * C, -6, 6);
      const y = out(N * C);
      const ly = out(N * C);
      be.softmax(x, N, C, y);
      be.logSoftmax(x, N, C, ly);
      const dy = r.f32(N * C);
      const dx = out(N * C);
      const ldx = out(N * C);
      be.softmaxBackward(y, dy, N, C, dx, false);
      be.logSoftmaxBackward(ly, dy, N, C, ldx, false);
      const dxa = r.f32(N * C);
      const ldxa = r.f32(N * C);
      be.softmaxBackward(y, dy, N, C, dxa, true);
      be.logSoftmaxBackward(ly, dy, N, C, ldxa, true);
      return { y, ly, dx, ldx, dxa, ldxa };
    },
  });
}

for (const acc of [false, true]) {
  add({
    name: `crossEntropy with ignored rows (+ backward${acc ? ", accumulate" : ""})`,
    run(be, r) {
      const N = 37;
      const V = 1003;
      const ignore = -100;
      const logits = r.f32(N * V, -8, 8);
      const targets = r.int(N, 0, V);
      for (let i = 0; i < N; i += 5) targets[i] = ignore;
      const loss = out(N);
      const lse = out(N);
      be.crossEntropy(logits, targets, N, V, ignore, loss, lse);
      const gs = r.f32(N, 0.1, 2);
      const dl = acc ? r.f32(N * V) : out(N * V);
      be.crossEntropyBackward(logits, targets, lse, gs, N, V, ignore, dl, acc);
      return { loss, lse, dl };
    },
  });
}

for (const [dxOn, dwOn, acc] of [
  [true, true, false],
  [true, false, true],
  [false, true, false],
]) {
  add({
    name: `rmsNorm (+ backward dx=${dxOn} dw=${dwOn} accumulate=${acc})`,
    run(be, r) {
      const N = 37;
      const C = 301;
      const x = r.f32(N * C, -2, 2);
      const w = r.f32(C, 0.5, 1.5);
      const y = out(N * C);
      const rstd = out(N);
      be.rmsNorm(x, w, N, C, 1e-5, y, rstd);
      const dy = r.f32(N * C);
      const dx = dxOn ? (acc ? r.f32(N * C) : out(N * C)) : null;
      const dw = dwOn ? r.f32(C) : null;
      be.rmsNormBackward(x, w, rstd, dy, N, C, dx, dw, acc);
      return { y, rstd, ...(dx ? { dx } : {}), ...(dw ? { dw } : {}) };
    },
  });
}

for (const inverse of [false, true]) {
  add({
    name: `rope${inverse ? " inverse" : ""}`,
    run(be, r) {
      const [B, T, H, D] = [2, 7, 3, 18];
      const x = r.f32(B * T * H * D);
      const ang = r.f32((T * D) / 2, -3, 3);
      const cos = ang.map(Math.cos);
      const sin = ang.map(Math.sin);
      const o = out(B * T * H * D);
      be.rope(x, cos, sin, B, T, H, D, inverse, o);
      return { o };
    },
  });
}

interface AttnCase {
  label: string;
  B: number;
  T: number;
  S: number;
  H: number;
  Hkv: number;
  D: number;
  kvCapacity: number;
  offset: number;
  causal: boolean;
}
const attnCases: AttnCase[] = [
  { label: "small causal", B: 2, T: 17, S: 17, H: 4, Hkv: 4, D: 16, kvCapacity: 17, offset: 0, causal: true },
  {
    label: "GQA 8/2 T=S=300 causal",
    B: 1,
    T: 300,
    S: 300,
    H: 8,
    Hkv: 2,
    D: 32,
    kvCapacity: 300,
    offset: 0,
    causal: true,
  },
  {
    label: "GQA 8/2 non-causal T=5 S=300",
    B: 2,
    T: 5,
    S: 300,
    H: 8,
    Hkv: 2,
    D: 32,
    kvCapacity: 300,
    offset: 0,
    causal: false,
  },
  {
    label: "offset 280, kvCapacity 320 > S",
    B: 2,
    T: 20,
    S: 300,
    H: 8,
    Hkv: 2,
    D: 16,
    kvCapacity: 320,
    offset: 280,
    causal: true,
  },
  {
    label: "odd D=19, T=S=70, GQA 6/3",
    B: 1,
    T: 70,
    S: 70,
    H: 6,
    Hkv: 3,
    D: 19,
    kvCapacity: 70,
    offset: 0,
    causal: true,
  },
  {
    label: "B=3 H=Hkv=1 T=S=130 non-causal",
    B: 3,
    T: 130,
    S: 130,
    H: 1,
    Hkv: 1,
    D: 8,
    kvCapacity: 130,
    offset: 0,
    causal: false,
  },
  // Head sizes wide enough for the forward's 8-vector P·V blocks on 16 lanes too (D ≥ 128),
  // and D=200: 8 vectors, 4 vectors, then a partial one (16 lanes) or a full one (8 lanes).
  {
    label: "D=128, offset 110, kvCapacity 160, GQA 4/2",
    B: 1,
    T: 40,
    S: 150,
    H: 4,
    Hkv: 2,
    D: 128,
    kvCapacity: 160,
    offset: 110,
    causal: true,
  },
  {
    label: "D=200, T=S=70 causal, GQA 2/1",
    B: 1,
    T: 70,
    S: 70,
    H: 2,
    Hkv: 1,
    D: 200,
    kvCapacity: 70,
    offset: 0,
    causal: true,
  },
];
for (const c of attnCases) {
  add({
    name: `attention forward + backward: ${c.label}`,
    tol: 1e-4,
    run(be, r) {
      const p: AttentionParams = {
        q: r.f32(c.B * c.T * c.H * c.D),
        k: r.f32(c.B * c.kvCapacity * c.Hkv * c.D),
        v: r.f32(c.B * c.kvCapacity * c.Hkv * c.D),
        B: c.B,
        T: c.T,
        S: c.S,
        H: c.H,
        Hkv: c.Hkv,
        D: c.D,
        kvCapacity: c.kvCapacity,
        scale: 2 / Math.sqrt(c.D),
        offset: c.offset,
        causal: c.causal,
      };
      const o = out(c.B * c.T * c.H * c.D);
      const lse = out(c.B * c.H * c.T);
      be.attention(p, o, lse);
      const dout = r.f32(o.length);
      const dq = out(o.length);
      const dk = r.f32(p.k.length); // dk, dv are added into
      const dv = r.f32(p.v.length);
      be.attentionBackward(p, o, lse, dout, dq, dk, dv);
      const dq2 = out(o.length);
      be.attentionBackward(p, o, lse, dout, dq2, null, null);
      const dv2 = new Float32Array(p.v.length);
      be.attentionBackward(p, o, lse, dout, null, null, dv2);
      return { o, lse, dq, dk, dv, dq2, dv2 };
    },
  });
}

// bf16 k, v (a KV cache kept in bf16): the reference is attention over the widened values,
// and every backend's bf16 forward must equal its own f32 forward over those values bit for bit.
const bf16Bits = (x: Float32Array): Uint16Array => Uint16Array.from(x, f32ToBf16);
const widened = (h: Uint16Array): Float32Array =>
  new Float32Array(Uint32Array.from(h, (b) => b << 16).buffer);
const bf16AttnCases: AttnCase[] = [
  ...attnCases,
  {
    label: "decode T=1 S=1000 of kvCapacity 1024, GQA 12/4, D=64",
    B: 2,
    T: 1,
    S: 1000,
    H: 12,
    Hkv: 4,
    D: 64,
    kvCapacity: 1024,
    offset: 999,
    causal: true,
  },
];
for (const c of bf16AttnCases) {
  add({
    name: `attention forward, bf16 k/v: ${c.label}`,
    tol: 1e-4,
    run(be, r) {
      const n = c.B * c.kvCapacity * c.Hkv * c.D;
      const k = bf16Bits(r.f32(n, -2, 2));
      const v = bf16Bits(r.f32(n, -2, 2));
      const p: AttentionParams = {
        q: r.f32(c.B * c.T * c.H * c.D),
        k,
        v,
        B: c.B,
        T: c.T,
        S: c.S,
        H: c.H,
        Hkv: c.Hkv,
        D: c.D,
        kvCapacity: c.kvCapacity,
        scale: 1 / Math.sqrt(c.D),
        offset: c.offset,
        causal: c.causal,
      };
      const o = out(c.B * c.T * c.H * c.D);
      const lse = out(c.B * c.H * c.T);
      be.attention(p, o, lse);
      const ow = out(o.length);
      const lsew = out(lse.length);
      be.attention({ ...p, k: widened(k), v: widened(v) }, ow, lsew);
      assert.deepEqual(o, ow, "bf16 k/v: not the f32 result over the widened values");
      assert.deepEqual(lse, lsew, "bf16 k/v: lse differs from the f32 one over the widened values");
      return { o, lse };
    },
  });
}

for (const acc of [false, true]) {
  add({
    name: `siluMul (+ backward${acc ? ", accumulate" : ""}, one side null)`,
    run(be, r) {
      const n = 20011;
      const g = r.f32(n, -6, 6);
      const u = r.f32(n);
      const o = out(n);
      be.siluMul(g, u, o);
      const dy = r.f32(n);
      const dg = acc ? r.f32(n) : out(n);
      const du = acc ? r.f32(n) : out(n);
      be.siluMulBackward(g, u, dy, dg, du, acc);
      const dg2 = out(n);
      be.siluMulBackward(g, u, dy, dg2, null, false);
      return { o, dg, du, dg2 };
    },
  });
}

add({
  name: "axpy and fill",
  run(be, r) {
    const y = r.f32(70003);
    be.axpy(-0.37, r.f32(70003), y);
    const f = out(1001);
    be.fill(f, 2.5);
    return { y, f };
  },
});

add({
  name: "adamw, 5 steps",
  run(be, r) {
    const n = 10007;
    const param = r.f32(n);
    const m = new Float32Array(n);
    const v = new Float32Array(n);
    for (let step = 1; step <= 5; step++) {
      const grad = r.f32(n);
      be.adamw({ param, grad, m, v, lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step });
    }
    return { param, m, v };
  },
});

for (const transA of [false, true]) {
  for (const transB of [false, true]) {
    for (const beta of [0, 1]) {
      add({
        name: `gemm transA=${transA} transB=${transB} beta=${beta} (batch 2)`,
        tol: 1e-5,
        run(be, r) {
          const [m, n, k, batch] = [13, 17, 19, 2];
          const a = r.f32(batch * m * k);
          const b = r.f32(batch * k * n);
          const c = beta ? r.f32(batch * m * n) : out(batch * m * n);
          be.gemm({
            transA,
            transB,
            m,
            n,
            k,
            batch,
            a,
            strideA: m * k,
            b,
            strideB: k * n,
            c,
            strideC: m * n,
            alpha: 0.5,
            beta,
          });
          return { c };
        },
      });
    }
  }
}
add({
  name: "gemm shared B (strideB 0), larger odd sizes",
  tol: 1e-5,
  run(be, r) {
    const [m, n, k, batch] = [67, 129, 71, 3];
    const a = r.f32(batch * m * k);
    const b = r.f32(k * n);
    const c = out(batch * m * n);
    be.gemm({
      transA: false,
      transB: true,
      m,
      n,
      k,
      batch,
      a,
      strideA: m * k,
      b,
      strideB: 0,
      c,
      strideC: m * n,
      alpha: 1,
      beta: 0,
    });
    return { c };
  },
});

add({
  name: "loraGrouped: contiguous, scattered and single-row groups, ranks 1–16",
  tol: 1e-5,
  run(be, r) {
    const [N, inF, outF] = [11, 67, 45];
    const x = r.f32(N * inF);
    const y = r.f32(N * outF);
    // Group 0: rows 2..5 (in place); group 1: rows 9, 0, 7 (gathered); group 2: row 10 alone;
    // rows 1, 6, 8 use no adapter and must keep their values.
    const rows = Int32Array.of(2, 3, 4, 5, 9, 0, 7, 10);
    const starts = Int32Array.of(0, 4, 7, 8);
    const ranks = Int32Array.of(8, 16, 1);
    const A = [...ranks].map((rk) => r.f32(rk * inF, -0.2, 0.2));
    const B = [...ranks].map((rk) => r.f32(outF * rk, -0.2, 0.2));
    be.loraGrouped({
      x,
      y,
      inFeatures: inF,
      outFeatures: outF,
      rows,
      starts,
      A,
      B,
      ranks,
      scales: Float64Array.of(2, 0.5, 1 / 3),
    });
    return { y };
  },
});

/** A random NF4 weight (codes, per-block absmax) of out × in with the given block size. */
function nf4Weight(r: Rng, outF: number, inF: number, blocksize: number): Nf4Weight {
  const n = outF * inF;
  const packed = Uint8Array.from(r.int(Math.ceil(n / 2), 0, 256));
  return {
    packed,
    scales: r.f32(Math.ceil(n / blocksize), 0.01, 0.1),
    blocksize,
    quantMap: NF4_CODE,
    outFeatures: outF,
    inFeatures: inF,
  };
}

for (const backward of [false, true]) {
  for (const beta of [0, 1]) {
    add({
      name: `nf4Gemm ${backward ? "backward (a·W)" : "forward (a·Wᵀ)"} beta=${beta}`,
      tol: 1e-5,
      run(be, r) {
        const [rows, outF, inF] = [37, 70, 192];
        const w = nf4Weight(r, outF, inF, 64);
        const a = r.f32(rows * (backward ? outF : inF));
        const n = rows * (backward ? inF : outF);
        const c = beta ? r.f32(n) : out(n);
        be.nf4Gemm({ backward, rows, a, w, c, beta });
        return { c };
      },
    });
  }
}
add({
  name: "nf4Gemm one row (decode), odd in-features",
  tol: 1e-5,
  run(be, r) {
    const w = nf4Weight(r, 300, 37, 32);
    const c = out(300);
    be.nf4Gemm({ backward: false, rows: 1, a: r.f32(37), w, c, beta: 0 });
    return { c };
  },
});
add({
  name: "nf4Dequant of a range and nf4Scales (bit-identical)",
  tol: 0,
  run(be, r) {
    const w = nf4Weight(r, 40, 90, 64);
    const part = out(1001);
    be.nf4Dequant(w, 333, 1001, part);
    const nested = r.f32(3, 0.001, 0.01);
    const scales = out(600);
    be.nf4Scales(
      Uint8Array.from(r.int(600, 0, 256)),
      r.f32(256, -1, 1),
      nested,
      256,
      Math.fround(0.03),
      scales,
    );
    return { part, scales };
  },
});

// ─────────────────────────────────────────────────────────────────────────────────────
// Contract errors the native side must raise instead of touching memory out of bounds.

function shortBufferChecks(be: Backend): void {
  const x = new Float32Array(10);
  assert.throws(() => be.unary("exp", x, new Float32Array(3), 0));
  assert.throws(() => be.softmax(x, 3, 5, new Float32Array(15)));
  assert.throws(() => be.gather(x, Int32Array.of(0, 99), 2, new Float32Array(4)));
  assert.throws(() =>
    be.crossEntropy(x, Int32Array.of(0, 7), 2, 5, -100, new Float32Array(2), new Float32Array(2)),
  );
  const p: AttentionParams = {
    q: new Float32Array(8),
    k: new Float32Array(8),
    v: new Float32Array(4),
    B: 1,
    T: 2,
    S: 2,
    H: 1,
    Hkv: 1,
    D: 4,
    kvCapacity: 2,
    scale: 0.5,
    offset: 0,
    causal: true,
  };
  assert.throws(() => be.attention(p, new Float32Array(8), new Float32Array(2)));
  // bf16 k/v: a short one, k and v of different types, and the backward all throw.
  const p16: AttentionParams = { ...p, k: new Uint16Array(8), v: new Uint16Array(8) };
  be.attention(p16, new Float32Array(8), new Float32Array(2));
  assert.throws(() =>
    be.attention({ ...p16, v: new Uint16Array(4) }, new Float32Array(8), new Float32Array(2)),
  );
  assert.throws(() =>
    be.attention({ ...p16, v: new Float32Array(8) }, new Float32Array(8), new Float32Array(2)),
  );
  assert.throws(
    () =>
      be.attentionBackward(
        p16,
        new Float32Array(8),
        new Float32Array(2),
        new Float32Array(8),
        null,
        null,
        null,
      ),
    /bf16|Float32Array/,
  );
}

/**
 * The kernels the wasm backend runs in WebAssembly (GEMM, attention, SiLU·mul, cross-entropy,
 * RMSNorm, AdamW, RoPE, the softmax family, binary and unary ops, axpy, dropout, reduce, the layout
 * ops, where, NF4 dequantisation): short operands, bad targets.
 */
function wasmBoundsChecks(be: Backend): void {
  shortGemmChecks(be);
  shortLayoutChecks(be);
  shortRowChecks(be);
  shortElementwiseChecks(be);
  const p: AttentionParams = {
    q: new Float32Array(8),
    k: new Float32Array(8),
    v: new Float32Array(8),
    B: 1,
    T: 2,
    S: 2,
    H: 1,
    Hkv: 1,
    D: 4,
    kvCapacity: 2,
    scale: 0.5,
    offset: 0,
    causal: true,
  };
  be.attention(p, new Float32Array(8), new Float32Array(2)); // the exact sizes pass
  assert.throws(
    () => be.attention({ ...p, v: new Float32Array(4) }, new Float32Array(8), new Float32Array(2)),
    RangeError,
  );
  assert.throws(() => be.attention(p, new Float32Array(7), new Float32Array(2)), RangeError);
  assert.throws(() => be.attention(p, new Float32Array(8), new Float32Array(1)), RangeError);
  const [o, lse, g] = [new Float32Array(8), new Float32Array(2), new Float32Array(8)];
  be.attention(p, o, lse);
  assert.throws(() => be.attentionBackward(p, o, lse, g, null, new Float32Array(7), null), RangeError);
  assert.throws(
    () => be.attentionBackward(p, o, lse, new Float32Array(7), new Float32Array(8), null, null),
    RangeError,
  );
}

/** Binary ops, unary ops, axpy and dropout: an operand shorter than its shape (or than x) is a RangeError. */
function shortElementwiseChecks(be: Backend): void {
  const f = (n: number) => new Float32Array(n);
  be.binary("add", f(6), [2, 3], f(3), [1, 3], f(6), [2, 3]); // the exact sizes pass
  assert.throws(() => be.binary("add", f(5), [2, 3], f(3), [1, 3], f(6), [2, 3]), RangeError);
  assert.throws(() => be.binary("add", f(6), [2, 3], f(2), [1, 3], f(6), [2, 3]), RangeError);
  assert.throws(() => be.binary("add", f(6), [2, 3], f(3), [1, 3], f(5), [2, 3]), RangeError);
  be.axpy(2, f(7), f(7));
  assert.throws(() => be.axpy(2, f(7), f(6)), RangeError);
  be.unary("scale", f(7), f(7), 2);
  assert.throws(() => be.unary("scale", f(7), f(6), 2), RangeError);
  be.dropout(f(7), f(7), 0.5, 1, 0);
  assert.throws(() => be.dropout(f(7), f(6), 0.5, 1, 0), RangeError);
}

/**
 * The transcendental unary ops and their backwards, reduce, permute, broadcastTo, copyAxis
 * (accumulating long runs), where and the NF4 kernels: an operand one element short is a
 * RangeError (the exact sizes pass).
 */
function shortLayoutChecks(be: Backend): void {
  const f = (n: number) => new Float32Array(n);
  be.unary("gelu_erf", f(7), f(7), 0);
  assert.throws(() => be.unary("gelu_erf", f(7), f(6), 0), RangeError);
  be.unaryBackward("silu", f(7), f(7), f(7), f(7), 0, true);
  assert.throws(() => be.unaryBackward("silu", f(6), f(7), f(7), f(7), 0, true), RangeError);
  assert.throws(() => be.unaryBackward("pow", f(7), f(7), f(7), f(6), 2.5, false), RangeError);
  be.reduce("sum", f(12), [3, 4], [1], f(3));
  assert.throws(() => be.reduce("sum", f(11), [3, 4], [1], f(3)), RangeError);
  assert.throws(() => be.reduce("max", f(12), [3, 4], [0], f(3)), RangeError);
  be.permute(f(12), [3, 4], [1, 0], f(12));
  assert.throws(() => be.permute(f(11), [3, 4], [1, 0], f(12)), RangeError);
  assert.throws(() => be.permute(f(12), [3, 4], [1, 0], f(11)), RangeError);
  be.broadcastTo(f(4), [1, 4], f(12), [3, 4]);
  assert.throws(() => be.broadcastTo(f(3), [1, 4], f(12), [3, 4]), RangeError);
  assert.throws(() => be.broadcastTo(f(4), [1, 4], f(11), [3, 4]), RangeError);
  be.copyAxis(f(2 * 70), 2, 70, 1, 0, f(2 * 80), 80, 5, 70, true);
  assert.throws(() => be.copyAxis(f(2 * 70 - 1), 2, 70, 1, 0, f(2 * 80), 80, 5, 70, true), RangeError);
  assert.throws(() => be.copyAxis(f(2 * 70), 2, 70, 1, 0, f(2 * 80 - 1), 80, 5, 70, true), RangeError);
  const cond = new Uint8Array(7);
  be.where(cond, f(7), f(7), f(7));
  assert.throws(() => be.where(cond, f(6), f(7), f(7)), RangeError);
  assert.throws(() => be.where(cond.subarray(1), f(7), f(7), f(7)), RangeError);
  const w: Nf4Weight = {
    packed: new Uint8Array(64),
    scales: f(2),
    blocksize: 64,
    quantMap: f(16),
    outFeatures: 2,
    inFeatures: 64,
  };
  be.nf4Dequant(w, 0, 128, f(128));
  assert.throws(() => be.nf4Dequant(w, 1, 128, f(128)), RangeError);
  assert.throws(() => be.nf4Dequant(w, 0, 128, f(127)), RangeError);
  assert.throws(() => be.nf4Dequant({ ...w, scales: f(1) }, 0, 128, f(128)), RangeError);
  be.nf4Scales(new Uint8Array(10), f(256), f(3), 4, 0.5, f(10));
  assert.throws(() => be.nf4Scales(new Uint8Array(10), f(256), f(2), 4, 0.5, f(10)), RangeError);
  assert.throws(() => be.nf4Scales(new Uint8Array(10), f(256), f(3), 4, 0.5, f(9)), RangeError);
}

/** AdamW, RoPE and the softmax family: each operand one element short is a RangeError. */
function shortRowChecks(be: Backend): void {
  const f = (n: number) => new Float32Array(n);
  const adamw = (p: number, g: number, m: number, v: number) =>
    be.adamw({
      param: f(p),
      grad: f(g),
      m: f(m),
      v: f(v),
      lr: 0.1,
      beta1: 0.9,
      beta2: 0.99,
      eps: 1e-8,
      weightDecay: 0,
      step: 1,
    });
  adamw(9, 9, 9, 9); // the exact sizes pass
  assert.throws(() => adamw(9, 8, 9, 9), RangeError);
  assert.throws(() => adamw(9, 9, 8, 9), RangeError);
  assert.throws(() => adamw(9, 9, 9, 8), RangeError);
  const [B, T, H, D] = [2, 3, 2, 6];
  const n = B * T * H * D;
  const tab = (T * D) / 2;
  const rope = (x: number, c: number, s: number, o: number) =>
    be.rope(f(x), f(c), f(s), B, T, H, D, false, f(o));
  rope(n, tab, tab, n);
  assert.throws(() => rope(n - 1, tab, tab, n), RangeError);
  assert.throws(() => rope(n, tab - 1, tab, n), RangeError);
  assert.throws(() => rope(n, tab, tab - 1, n), RangeError);
  assert.throws(() => rope(n, tab, tab, n - 1), RangeError);
  assert.throws(() => be.rope(f(n), f(tab), f(tab), B, T, H, 5, false, f(n)), RangeError);
  const [N, C] = [3, 5];
  for (const sm of [be.softmax, be.logSoftmax]) {
    sm(f(N * C), N, C, f(N * C));
    assert.throws(() => sm(f(N * C - 1), N, C, f(N * C)), RangeError);
    assert.throws(() => sm(f(N * C), N, C, f(N * C - 1)), RangeError);
  }
  for (const bw of [be.softmaxBackward, be.logSoftmaxBackward]) {
    bw(f(N * C), f(N * C), N, C, f(N * C), true);
    assert.throws(() => bw(f(N * C - 1), f(N * C), N, C, f(N * C), false), RangeError);
    assert.throws(() => bw(f(N * C), f(N * C - 1), N, C, f(N * C), false), RangeError);
    assert.throws(() => bw(f(N * C), f(N * C), N, C, f(N * C - 1), true), RangeError);
  }
}

/** GEMM operands shorter than batch, stride and sizes need (each of A, B, C; f32 and bf16 B). */
function shortGemmChecks(be: Backend): void {
  const [m, n, k] = [3, 4, 5];
  const gemm = (a: number, b: number, c: number, bf16 = false) =>
    be.gemm({
      transA: false,
      transB: false,
      m,
      n,
      k,
      batch: 2,
      a: new Float32Array(a),
      strideA: m * k,
      b: bf16 ? new Uint16Array(b) : new Float32Array(b),
      strideB: 0,
      c: new Float32Array(c),
      strideC: m * n,
      alpha: 1,
      beta: 0,
    });
  gemm(2 * m * k, k * n, 2 * m * n); // the exact sizes pass
  assert.throws(() => gemm(2 * m * k - 1, k * n, 2 * m * n), RangeError);
  assert.throws(() => gemm(2 * m * k, k * n - 1, 2 * m * n), RangeError);
  assert.throws(() => gemm(2 * m * k, k * n - 1, 2 * m * n, true), RangeError);
  assert.throws(() => gemm(2 * m * k, k * n, 2 * m * n - 1), RangeError);
}

// ─────────────────────────────────────────────────────────────────────────────────────

// Under LORAKIT_CPU=emu16 (emu16.test.ts's child) only the native table under test.
const targets = process.env.LORAKIT_CPU === "emu16" ? TARGETS.filter((t) => t.name === "native") : TARGETS;
for (const target of targets) {
  const opened = await target.open();
  if ("skip" in opened) {
    describe(`kernel contract: ${target.name}`, { skip: opened.skip }, () => {});
    continue;
  }
  const { backend, configs } = opened;
  for (const cfg of configs) {
    if (cfg.label === "restore") continue;
    describe(`kernel contract: ${target.name} (${cfg.label})`, () => {
      cases.forEach((c, i) => {
        test(c.name, () => {
          cfg.apply();
          const want = c.run(refBackend, new Rng(1000 + i));
          const got = c.run(backend, new Rng(1000 + i));
          compare(got, want, c.tol ?? 2e-5);
        });
      });
      test("Float64Array arguments go to the reference", () => {
        cfg.apply();
        const x = Float64Array.from([0.5, -1, 2]);
        const y = new Float64Array(3);
        backend.unary("exp", x, y, 0);
        assert.deepEqual(Array.from(y), [Math.exp(0.5), Math.exp(-1), Math.exp(2)]);
      });
      test("short buffers and bad indices throw", () => {
        cfg.apply();
        target.boundsChecks(backend);
      });
    });
  }
  // The last configuration puts the backend's defaults back for the files that run after.
  after(() => {
    for (const cfg of configs) if (cfg.label === "restore") cfg.apply();
  });
}
