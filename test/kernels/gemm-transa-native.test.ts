// A transposed A (Aᵀ·B, as in a LoRA gradient Gᵀ·H) must give the bits of the same product
// with A transposed beforehand: the kernels read a narrow product's transposed A in place and
// pack a wide one's, a row-major A in place or packed, and every path must run each element's
// multiply-adds in the same order. Narrow and wide outputs, ragged row tiles and k slices, 1
// and 2 threads.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { GemmAddon } from "../../src/kernels/native/gemm.js";
import { loadAddon } from "../../src/kernels/native/loader.js";

const loaded = loadAddon();
const addon =
  "addon" in loaded
    ? (loaded.addon as unknown as GemmAddon & { setThreads(n: number): void; getThreads(): number })
    : null;

let seed = 31337;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
}
const randomF32 = (n: number) => Float32Array.from({ length: n }, () => rand() * 2);

test("native gemm: Aᵀ·B equals (A transposed first)·B bit for bit", {
  skip: addon ? false : "native addon not built",
}, () => {
  const before = addon!.getThreads();
  try {
    for (const threads of [1, 2])
      for (const [m, n, k] of [
        [200, 16, 300],
        [137, 17, 520],
        [64, 32, 257],
        [1100, 16, 130],
        [90, 64, 300],
        [7, 8, 100],
      ]) {
        addon!.setThreads(threads);
        const at = randomF32(k * m); // A stored transposed: element (i, p) at at[p·m + i]
        const a = new Float32Array(m * k);
        for (let p = 0; p < k; p++) for (let i = 0; i < m; i++) a[i * k + p] = at[p * m + i];
        const b = randomF32(k * n);
        const c0 = randomF32(m * n);
        for (const beta of [0, 1]) {
          const viaT = c0.slice();
          const viaA = c0.slice();
          addon!.gemm(true, false, m, n, k, 1, at, 0, b, 0, viaT, 0, 0.5, beta);
          addon!.gemm(false, false, m, n, k, 1, a, 0, b, 0, viaA, 0, 0.5, beta);
          assert.ok(viaA.some((x) => x !== 0));
          assert.deepEqual(viaT, viaA, `m ${m}, n ${n}, k ${k}, beta ${beta}, ${threads} threads`);
        }
      }
  } finally {
    addon!.setThreads(before);
  }
});
