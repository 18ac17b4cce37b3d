// Prepacked weights on the native addon (native/src/prepack.cc): the panels unpack to W bit
// for bit, and gemmPacked gives every element exactly the row-major GEMM's bits for any
// number of rows (the ≤ 8-row decode path and the packed-GEMM path alike), any thread count,
// alpha and beta, f32 and bf16 weights, ragged n and k: a row is the same alone or in a batch.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GemmAddon } from "../../src/kernels/native/gemm.js";
import { loadAddon } from "../../src/kernels/native/loader.js";
import { type PrepackAddon, prepackAddonOf } from "../../src/kernels/native/prepack.js";

const loaded = loadAddon();
const raw = "addon" in loaded ? loaded.addon : null;
const addon = raw ? prepackAddonOf(raw) : null;
const gemm = raw as (GemmAddon & { setThreads(n: number): void; getThreads(): number }) | null;
const skip = addon === null ? "no native addon with prepacked kernels on this CPU" : false;

let seed = 777;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
}
const randomF32 = (n: number) => Float32Array.from({ length: n }, () => rand() * 2);
function randomBf16(n: number): Uint16Array {
  const u = new Uint32Array(randomF32(n).buffer);
  return Uint16Array.from(u, (x) => x >>> 16);
}

function pack(
  ad: PrepackAddon,
  w: Float32Array | Uint16Array,
  n: number,
  k: number,
): Float32Array | Uint16Array {
  const len = ad.packedElements(n, k);
  const p = w instanceof Uint16Array ? new Uint16Array(len) : new Float32Array(len);
  ad.prepackWeight(w, n, k, p);
  return p;
}

/** Index of the first element whose bits differ, or -1. */
function firstDiff(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

describe("prepacked weights (native)", { skip }, () => {
  test("the layout: 16-column panels of 256-deep k slices; unpack restores W bit for bit", () => {
    const ad = addon!;
    assert.deepEqual(ad.prepackLayout(), { panel: 16, slice: 256 });
    for (const [n, k] of [
      [1, 1],
      [17, 300],
      [64, 256],
      [100, 513],
    ]) {
      assert.equal(ad.packedElements(n, k), Math.ceil(n / 16) * 16 * k);
      for (const w of [randomF32(n * k), randomBf16(n * k)]) {
        const p = pack(ad, w, n, k);
        // W[j][p] sits at slice·npad + panel·kc·16 + (p − slice)·16 + lane(j % 16), where a
        // bf16 row swaps columns 4..7 with 8..11.
        const npad = Math.ceil(n / 16) * 16;
        const lane = (c: number) =>
          w instanceof Uint16Array && c >= 4 && c < 12 ? (c < 8 ? c + 4 : c - 4) : c;
        for (const j of new Set([n - 1, Math.min(n - 1, 5), Math.min(n - 1, 9), Math.min(n - 1, 12)]))
          for (const q of new Set([0, k - 1, Math.min(k - 1, 300)])) {
            const s = Math.floor(q / 256) * 256;
            const kc = Math.min(256, k - s);
            const at = s * npad + Math.floor(j / 16) * kc * 16 + (q - s) * 16 + lane(j % 16);
            assert.equal(p[at], w[j * k + q], `W[${j}][${q}]`);
          }
        const back = w instanceof Uint16Array ? new Uint16Array(n * k) : new Float32Array(n * k);
        ad.unpackWeight(p, n, k, back);
        assert.deepEqual(back, w);
        const ids = Int32Array.from([n - 1, 0, Math.floor(n / 2)]);
        const rows = new Float32Array(3 * k);
        ad.gatherPackedRows(p, n, k, ids, rows);
        const wf =
          w instanceof Uint16Array ? new Float32Array(Uint32Array.from(w, (h) => h << 16).buffer) : w;
        for (const [r, id] of ids.entries())
          assert.deepEqual(rows.subarray(r * k, (r + 1) * k), wf.subarray(id * k, (id + 1) * k));
      }
    }
  });

  test("gemmPacked equals the row-major GEMM bit for bit, for every m, thread count, alpha and beta", () => {
    const ad = addon!;
    const g = gemm!;
    const threads = g.getThreads();
    try {
      for (const [n, k] of [
        [33, 1],
        [100, 300],
        [200, 513],
        [1000, 768],
      ])
        for (const bf16 of [false, true]) {
          const w = bf16 ? randomBf16(n * k) : randomF32(n * k);
          const p = pack(ad, w, n, k);
          // 128 (a prefill) and 140 (two 132-row A blocks of the AVX2 order, the second 4 + 4 rows).
          for (const m of [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 30, 100, 128, 140])
            for (const [alpha, beta] of [
              [1, 0],
              [1, 1],
              [0.75, 0.5],
            ]) {
              const a = randomF32(m * k);
              const c0 = randomF32(m * n);
              g.setThreads(threads);
              const want = c0.slice();
              g.gemm(false, true, m, n, k, 1, a, 0, w, 0, want, 0, alpha, beta);
              for (const t of [1, 2]) {
                g.setThreads(t);
                const got = c0.slice();
                ad.gemmPacked(m, n, k, a, p, got, alpha, beta);
                const at = firstDiff(got, want);
                assert.equal(
                  at,
                  -1,
                  `n=${n} k=${k} bf16=${bf16} m=${m} alpha=${alpha} beta=${beta} threads=${t}: element ${at}`,
                );
              }
              // The last row alone gets the bits it got inside the batch.
              const alone = c0.slice((m - 1) * n);
              ad.gemmPacked(1, n, k, a.subarray((m - 1) * k), p, alone, alpha, beta);
              assert.equal(
                firstDiff(alone, want.subarray((m - 1) * n)),
                -1,
                `row ${m - 1} alone, n=${n} m=${m}`,
              );
            }
        }
    } finally {
      g.setThreads(threads);
    }
  });

  test("beta 0 never reads c (NaN stays out); alpha 0 or k 0 only scales c", () => {
    const ad = addon!;
    const [n, k] = [40, 20];
    const p = pack(ad, randomF32(n * k), n, k);
    for (const m of [1, 12]) {
      const c = new Float32Array(m * n).fill(Number.NaN);
      ad.gemmPacked(m, n, k, randomF32(m * k), p, c, 1, 0);
      assert.ok(c.every((x) => Number.isFinite(x)));
      const d = new Float32Array(m * n).fill(2);
      ad.gemmPacked(m, n, k, randomF32(m * k), p, d, 0, 0.5);
      assert.ok(d.every((x) => x === 1));
    }
    const e = new Float32Array(3 * n).fill(4);
    ad.gemmPacked(3, n, 0, new Float32Array(0), new Float32Array(0), e, 1, 0);
    assert.ok(e.every((x) => x === 0));
  });

  test("gemmPackedShared gives each product gemmPacked's bits alone, for every m, thread count, alpha and beta", () => {
    const ad = addon!;
    const g = gemm!;
    const threads = g.getThreads();
    try {
      // A decoder layer's q/k/v (one small product among larger ones) and gate/up; ragged n.
      for (const [k, ns] of [
        [300, [100, 33, 33]],
        [768, [768, 256, 256]],
        [513, [1000, 1000]],
        [1, [17, 64]],
      ] as [number, number[]][])
        for (const bf16 of [false, true]) {
          const ps = ns.map((n) => pack(ad, bf16 ? randomBf16(n * k) : randomF32(n * k), n, k));
          for (const m of [1, 2, 3, 5, 8, 9, 20])
            for (const [alpha, beta] of [
              [1, 0],
              [1, 1],
              [0.75, 0.5],
            ]) {
              const a = randomF32(m * k);
              const c0 = ns.map((n) => randomF32(m * n));
              const want = c0.map((c) => c.slice());
              for (const [i, n] of ns.entries()) ad.gemmPacked(m, n, k, a, ps[i], want[i], alpha, beta);
              for (const t of [1, 2, 3]) {
                g.setThreads(t);
                const got = c0.map((c) => c.slice());
                ad.gemmPackedShared(
                  m,
                  k,
                  a,
                  ps,
                  ns,
                  got,
                  ns.map(() => alpha),
                  ns.map(() => beta),
                );
                for (const i of ns.keys()) {
                  const at = firstDiff(got[i], want[i]);
                  assert.equal(
                    at,
                    -1,
                    `k=${k} ns=${ns} product ${i} bf16=${bf16} m=${m} alpha=${alpha} beta=${beta} threads=${t}: element ${at}`,
                  );
                }
              }
              g.setThreads(threads);
            }
        }
    } finally {
      g.setThreads(threads);
    }
  });

  test("gemmPackedShared checks every product's arrays and throws instead of reading out of bounds", () => {
    const ad = addon!;
    const k = 10;
    const [p1, p2] = [pack(ad, randomF32(20 * k), 20, k), pack(ad, randomBf16(40 * k), 40, k)];
    const a = randomF32(k);
    const ok = () => [new Float32Array(20), new Float32Array(40)];
    ad.gemmPackedShared(1, k, a, [p1, p2], [20, 40], ok(), [1, 1], [0, 0]);
    assert.throws(() => ad.gemmPackedShared(1, k, a, [p1, p2], [20, 40], ok(), [1], [0, 0]), /one length/);
    assert.throws(
      () => ad.gemmPackedShared(1, k, a, [p1, p2.subarray(16)], [20, 40], ok(), [1, 1], [0, 0]),
      /ws\[1\] has/,
    );
    assert.throws(
      () =>
        ad.gemmPackedShared(
          1,
          k,
          a,
          [p1, p2],
          [20, 40],
          [new Float32Array(20), new Float32Array(39)],
          [1, 1],
          [0, 0],
        ),
      /cs\[1\] has/,
    );
    assert.throws(() => ad.gemmPackedShared(2, k, a, [p1, p2], [20, 40], ok(), [1, 1], [0, 0]), RangeError);
    assert.throws(
      () =>
        ad.gemmPackedShared(1, k, a, [p1, new Float64Array(40 * k) as never], [20, 40], ok(), [1, 1], [0, 0]),
      TypeError,
    );
    assert.throws(
      () => ad.gemmPackedShared(1, k, a, [p1, p2], [20, "40" as never], ok(), [1, 1], [0, 0]),
      TypeError,
    );
  });

  test("wrong types and short buffers throw instead of reading out of bounds", () => {
    const ad = addon!;
    const [n, k] = [20, 10];
    const w = randomF32(n * k);
    const p = pack(ad, w, n, k);
    assert.throws(
      () => ad.prepackWeight(w.subarray(1), n, k, new Float32Array(ad.packedElements(n, k))),
      RangeError,
    );
    assert.throws(() => ad.prepackWeight(w, n, k, new Float32Array(10)), RangeError);
    assert.throws(() => ad.prepackWeight(w, n, k, new Uint16Array(ad.packedElements(n, k))), TypeError);
    assert.throws(() => ad.unpackWeight(p.subarray(16), n, k, new Float32Array(n * k)), RangeError);
    assert.throws(
      () => ad.gemmPacked(2, n, k, new Float32Array(k), p, new Float32Array(2 * n), 1, 0),
      RangeError,
    );
    assert.throws(
      () => ad.gemmPacked(1, n, k, new Float32Array(k), p, new Float32Array(n - 1), 1, 0),
      RangeError,
    );
    assert.throws(
      () => ad.gemmPacked(1, n, k, new Float64Array(k) as never, p, new Float32Array(n), 1, 0),
      TypeError,
    );
    assert.throws(() => ad.gatherPackedRows(p, n, k, Int32Array.from([n]), new Float32Array(k)), RangeError);
    assert.throws(
      () => ad.gatherPackedRows(p, n, k, Int32Array.from([0, 1]), new Float32Array(k)),
      RangeError,
    );
  });
});
