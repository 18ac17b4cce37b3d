// The native GEMM against a naive f64 product, on every path this CPU allows (the other
// paths run in child processes with LORAKIT_CPU forced), plus the loader's error path.
import assert from "node:assert/strict";
import { test } from "node:test";
import { type GemmAddon, nativeGemm } from "../../src/kernels/native/gemm.js";
import { loadAddon, loadAddonFrom, nativeUnavailableMessage } from "../../src/kernels/native/loader.js";
import type { Nf4Addon } from "../../src/kernels/native/nf4.js";
import { passesOnForcedPath } from "../util/forced-path.js";

const loaded = loadAddon();
const addon = "addon" in loaded ? loaded.addon : null;
const skip = addon === null ? "native addon not built (npm run build:native)" : false;

let seed = 12345;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
}
function randomF32(len: number): Float32Array {
  const x = new Float32Array(len);
  for (let i = 0; i < len; i++) x[i] = rand() * 2;
  return x;
}
function bf16ToF32(h: Uint16Array): Float32Array {
  const u = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) u[i] = h[i] << 16;
  return new Float32Array(u.buffer);
}
function randomBf16(len: number): Uint16Array {
  const u = new Uint32Array(randomF32(len).buffer);
  const out = new Uint16Array(len);
  for (let i = 0; i < len; i++) out[i] = u[i] >>> 16;
  return out;
}

interface Case {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  batch?: number;
  strideA?: number; // default m*k; 0 = shared
  strideB?: number;
  alpha?: number;
  beta?: number;
  bf16?: boolean;
}

/** Runs the case natively and checks it against a naive f64 product. */
function check(ad: GemmAddon, cs: Case): void {
  const { transA, transB, m, n, k } = cs;
  const batch = cs.batch ?? 1;
  const sA = cs.strideA ?? m * k;
  const sB = cs.strideB ?? k * n;
  const sC = m * n;
  const alpha = cs.alpha ?? 1;
  const beta = cs.beta ?? 0;
  const lenA = batch === 0 ? 0 : (batch - 1) * sA + m * k;
  const lenB = batch === 0 ? 0 : (batch - 1) * sB + k * n;
  const a = randomF32(lenA);
  const bh = cs.bf16 ? randomBf16(lenB) : null;
  const b = bh ?? randomF32(lenB);
  const bf = bh ? bf16ToF32(bh) : (b as Float32Array);
  const c0 = beta === 0 ? new Float32Array(batch * sC).fill(Number.NaN) : randomF32(batch * sC);
  const c = c0.slice();
  nativeGemm(ad, {
    transA,
    transB,
    m,
    n,
    k,
    batch,
    a,
    strideA: sA,
    b,
    strideB: sB,
    c,
    strideC: sC,
    alpha,
    beta,
  });
  const label = JSON.stringify(cs);
  for (let bi = 0; bi < batch; bi++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        let mag = 0;
        for (let p = 0; p < k; p++) {
          const x = a[bi * sA + (transA ? p * m + i : i * k + p)];
          const y = bf[bi * sB + (transB ? j * k + p : p * n + j)];
          s += x * y;
          mag += Math.abs(x * y);
        }
        const idx = bi * sC + i * n + j;
        const want = alpha * s + (beta === 0 ? 0 : beta * c0[idx]);
        const tol = 1e-5 * (Math.abs(alpha) * mag + Math.abs(beta * (beta === 0 ? 0 : c0[idx]))) + 1e-6;
        const got = c[idx];
        if (!(Math.abs(got - want) <= tol)) {
          assert.fail(`${label}: C[${bi}][${i}][${j}] = ${got}, want ${want} (tol ${tol})`);
        }
      }
    }
  }
}

const odd = [1, 3, 17, 65, 129];
const tf = [false, true];

function suite(ad: GemmAddon & { setThreads(n: number): void; getThreads(): number }, threads: number): void {
  const before = ad.getThreads();
  ad.setThreads(threads);
  try {
    for (const transA of tf)
      for (const transB of tf) {
        for (const m of odd)
          for (const n of [1, 17, 65]) for (const k of [1, 3, 129]) check(ad, { transA, transB, m, n, k });
        // Tile, panel and block edges of every kernel shape; several run multi-threaded.
        for (const [m, n, k] of [
          [257, 129, 65],
          [7, 300, 257],
          [300, 16, 300], // narrow n: dot tiles (row-major A) or the 24×16 kernel (Aᵀ)
          [257, 33, 130],
          [130, 40, 520], // dot path with several k slices
          [96, 64, 513], // two KC slices of the 6×64 kernel
          [301, 701, 11],
        ])
          check(ad, { transA, transB, m, n, k });
        check(ad, { transA, transB, m: 65, n: 129, k: 33, alpha: 0.5, beta: 1 });
        check(ad, { transA, transB, m: 129, n: 17, k: 257, alpha: -2, beta: 0.25 });
        check(ad, { transA, transB, m: 65, n: 65, k: 300, bf16: true });
        check(ad, { transA, transB, m: 200, n: 16, k: 100, bf16: true, beta: 1 });
      }
    // Batches, with a shared (stride 0) operand on either side.
    check(ad, { transA: false, transB: true, m: 33, n: 65, k: 17, batch: 3 });
    check(ad, { transA: false, transB: true, m: 33, n: 65, k: 17, batch: 4, strideB: 0, beta: 0.5 });
    check(ad, { transA: true, transB: false, m: 40, n: 70, k: 129, batch: 3, strideA: 0, bf16: true });
    check(ad, { transA: false, transB: false, m: 130, n: 129, k: 260, batch: 2 });
    // alpha = 0 and k = 0 only scale C (beta = 0 writes zeros over NaN).
    check(ad, { transA: false, transB: false, m: 5, n: 7, k: 0 });
    check(ad, { transA: false, transB: false, m: 5, n: 7, k: 0, beta: 0.5 });
    check(ad, { transA: true, transB: true, m: 9, n: 20, k: 30, alpha: 0, beta: 2 });
    // A C large enough for streaming stores (one k slice, beta 0).
    check(ad, { transA: false, transB: true, m: 1030, n: 2048, k: 7 });
  } finally {
    ad.setThreads(before);
  }
}

test("native gemm equals a naive f64 product, 1 thread", { skip }, () => {
  suite(addon!, 1);
});

test("native gemm equals a naive f64 product, 2 threads", { skip }, () => {
  suite(addon!, 2);
});

test("native gemm checks its arguments", { skip }, () => {
  const ad = addon!;
  const a = new Float32Array(6);
  const b = new Float32Array(6);
  const c = new Float32Array(4);
  ad.gemm(false, false, 2, 2, 3, 1, a, 0, b, 0, c, 0, 1, 0);
  assert.throws(() => ad.gemm(false, false, 2, 2, 4, 1, a, 0, b, 0, c, 0, 1, 0), RangeError);
  assert.throws(() => ad.gemm(false, false, 2, 2, 3, 2, a, 6, b, 0, c, 4, 1, 0), /a has 6 elements/);
  assert.throws(() => ad.gemm(false, false, 2, 2, 3, 2, a, 0, b, 0, c, 0, 1, 0), RangeError);
  assert.throws(() => ad.gemm(false, false, -1, 2, 3, 1, a, 0, b, 0, c, 0, 1, 0), /m must be/);
  assert.throws(() => ad.gemm(false, false, 1.5, 2, 3, 1, a, 0, b, 0, c, 0, 1, 0), RangeError);
  const a64 = new Float64Array(6) as unknown as Float32Array;
  assert.throws(() => ad.gemm(false, false, 2, 2, 3, 1, a64, 0, b, 0, c, 0, 1, 0), TypeError);
  const b32 = new Int32Array(6) as unknown as Float32Array;
  assert.throws(() => ad.gemm(false, false, 2, 2, 3, 1, a, 0, b32, 0, c, 0, 1, 0), TypeError);
  assert.throws(() => (ad.gemm as unknown as (...x: unknown[]) => void)(false, false, 2), TypeError);
});

test("cpuFeatures and fmaPeak report the path", { skip }, () => {
  const f = addon!.cpuFeatures();
  assert.ok(["avx512", "avx2", "portable"].includes(f.path));
  if (process.env.LORAKIT_CPU === "portable") assert.equal(f.path, "portable");
  const peak = addon!.fmaPeak(1, 20);
  assert.ok(peak > 0.1, `peak ${peak}`);
});

test("the loader returns an error object for a missing addon", () => {
  const r = loadAddonFrom("/nonexistent/lorakit_native.node");
  assert.ok("error" in r);
  assert.match(r.error.message, /cannot load/);
  const msg = nativeUnavailableMessage(r.error);
  assert.match(msg, /Fix: npm rebuild lorakit/);
  assert.match(msg, /LORAKIT_BACKEND=ref/);
  assert.ok("error" in loadAddonFrom(null));
});

// The lower paths, each in a child process (the path is chosen once per process).
const lower = addon === null || process.env.LORAKIT_CPU ? [] : (["avx2", "portable"] as const);
for (const path of lower) {
  const best = addon!.cpuFeatures().best;
  const ok = path === "portable" || best !== "portable";
  test(`native gemm on the forced ${path} path`, { skip: ok ? false : `${path} not supported here` }, () => {
    passesOnForcedPath(import.meta.url, path);
  });
}

// Row invariance: C[i][j] depends only on row i of op(A), column j of op(B), k, alpha, beta
// and the old C[i][j] — never on m, the other rows or the thread split (serving compares
// batched rows with single rows for equality). Checked bit for bit on each narrow path.
function rowsOf(
  transA: boolean,
  a: Float32Array,
  m: number,
  k: number,
  r0: number,
  rows: number,
): Float32Array {
  const out = new Float32Array(rows * k);
  for (let i = 0; i < rows; i++)
    for (let p = 0; p < k; p++)
      out[transA ? p * rows + i : i * k + p] = a[transA ? p * m + r0 + i : (r0 + i) * k + p];
  return out;
}

function invariance(ad: GemmAddon & { setThreads(n: number): void; getThreads(): number }): void {
  const before = ad.getThreads();
  const cases: [boolean, boolean, number, number, number, boolean][] = [
    [false, true, 1000, 16, 600, false], // X·Aᵀ: broadcast kernel, 8 rows × 16
    [false, false, 1000, 16, 600, false], // G·B: broadcast kernel
    [false, true, 1001, 12, 600, true], // the same with a bf16 B, ragged columns and rows
    [false, false, 300, 16, 37, false], // k not a multiple of 16, short k
    [false, true, 1000, 32, 600, false], // broadcast kernel, 8 rows × 32
    [false, false, 601, 24, 600, true],
    [false, true, 600, 40, 600, false], // broadcast kernel, 6 rows × 48 (masked), widest n
    [false, false, 599, 35, 600, false],
    [true, false, 1000, 16, 600, false], // Gᵀ·H: small-side kernel, transposed store
    [true, false, 1000, 12, 600, true], // the same with a bf16 B
    [true, true, 1000, 16, 600, false],
    [true, false, 1000, 5, 600, false], // 24×16 kernel
    [true, false, 16, 1000, 600, false], // dHᵀ·X: small-side kernel (m ≤ 16), column split
    [false, false, 16, 1000, 600, false],
    [true, false, 300, 70, 600, false], // 6×64 kernel, ragged column split
    [false, false, 300, 100, 600, false],
    // X·Wᵀ with a wide W (every linear layer): ≤ 8 rows take the decode path, which must give
    // the packed GEMM's bits (k over several slices, ragged k and n, bf16 weights).
    [false, true, 40, 300, 600, false],
    [false, true, 33, 257, 37, true],
    [false, true, 20, 1000, 777, true],
    [false, true, 12, 70, 256, false],
  ];
  try {
    for (const [transA, transB, m, n, k, bf16] of cases)
      for (const beta of [0, 0.5, 1]) {
        const label = JSON.stringify({ transA, transB, m, n, k, bf16, beta });
        const a = randomF32(m * k);
        const b = bf16 ? randomBf16(k * n) : randomF32(k * n);
        const c0 = randomF32(m * n);
        const run = (aa: Float32Array, rows: number, c: Float32Array) =>
          ad.gemm(transA, transB, rows, n, k, 1, aa, 0, b, 0, c, 0, 0.75, beta);
        ad.setThreads(1);
        const c1 = c0.slice();
        run(a, m, c1);
        ad.setThreads(2);
        const c2 = c0.slice();
        run(a, m, c2);
        assert.ok(
          c1.every((x, i) => Object.is(x, c2[i])),
          `${label}: 1 and 2 threads differ`,
        );
        for (const [r0, rows] of [
          [0, 1],
          [m - 1, 1],
          [Math.floor(m / 2), 1],
          [3, Math.min(16, m - 3)],
          [1, Math.min(9, m - 1)],
          [2, Math.min(8, m - 2)],
          [4, Math.min(5, m - 4)],
        ]) {
          const cs = c0.slice(r0 * n, (r0 + rows) * n);
          run(rowsOf(transA, a, m, k, r0, rows), rows, cs);
          for (let i = 0; i < rows * n; i++)
            if (!Object.is(cs[i], c1[r0 * n + i]))
              assert.fail(`${label}: rows ${r0}+${rows}: C[${r0 + Math.floor(i / n)}][${i % n}] differs`);
        }
      }
  } finally {
    ad.setThreads(before);
  }
}

test("native gemm rows do not depend on m, other rows or the thread split", { skip }, () => {
  invariance(addon!);
});

// The NF4 decode path (≤ 8 rows read the codes in place) against the panel GEMM (more rows):
// every row bit for bit the same, for f32-exact and ragged shapes, beta 0 and 1.
test("native NF4 GEMM rows do not depend on m (decode path = panel GEMM)", { skip }, () => {
  const nf4 = addon as unknown as Nf4Addon;

  const qmap = Float32Array.from({ length: 16 }, (_, i) => (i - 7.5) / 7.5);
  for (const [inF, outF, bs] of [
    [512, 300, 64],
    [72, 37, 8],
    [1024, 129, 256],
  ]) {
    const m = 20;
    const packed = Uint8Array.from(
      { length: (inF * outF) / 2 },
      () => Math.floor((rand() + 0.5) * 256) & 255,
    );
    const scales = Float32Array.from({ length: Math.ceil((inF * outF) / bs) }, () => 0.01 + Math.abs(rand()));
    const a = randomF32(m * inF);
    for (const beta of [0, 1]) {
      const c0 = randomF32(m * outF);
      const full = c0.slice();
      nf4.nf4Gemm(false, m, inF, outF, a, packed, scales, bs, qmap, full, beta);
      for (const [r0, rows] of [
        [0, 1],
        [m - 1, 1],
        [3, 8],
        [5, 5],
      ]) {
        const part = c0.slice(r0 * outF, (r0 + rows) * outF);
        nf4.nf4Gemm(
          false,
          rows,
          inF,
          outF,
          a.subarray(r0 * inF, (r0 + rows) * inF),
          packed,
          scales,
          bs,
          qmap,
          part,
          beta,
        );
        for (let i = 0; i < part.length; i++)
          if (!Object.is(part[i], full[r0 * outF + i]))
            assert.fail(
              `in ${inF} out ${outF} bs ${bs} beta ${beta}: rows ${r0}+${rows}: element ${i} differs`,
            );
      }
    }
  }
});

test("readBandwidth measures a positive rate and refuses bad arguments", { skip }, () => {
  const bw = addon as unknown as { readBandwidth(threads: number, mib: number): number };
  assert.ok(bw.readBandwidth(1, 16) > 0);
  assert.throws(() => bw.readBandwidth(0, 16), RangeError);
  assert.throws(() => bw.readBandwidth(1, 0.5), RangeError);
});
