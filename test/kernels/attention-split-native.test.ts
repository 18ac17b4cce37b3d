// The native attention forward splits a prompt into query tiles whose size depends on the
// thread count, and threads claim the tiles as they go: the result must not depend on either.
// Prompts long enough to take the prompt tiles, on 1, 2 and 3 threads, bit for bit, and each
// query row bit for bit the same row computed alone (a one-query call: the decode tiling).
import assert from "node:assert/strict";
import { test } from "node:test";
import { loadAddon } from "../../src/kernels/native/loader.js";
import type { OpsAddon } from "../../src/kernels/native/ops.js";

const loaded = loadAddon();
const addon =
  "addon" in loaded
    ? (loaded.addon as unknown as OpsAddon & { setThreads(n: number): void; getThreads(): number })
    : null;

let seed = 4242;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
}
const randomF32 = (n: number) => Float32Array.from({ length: n }, () => rand() * 3);

interface Shape {
  T: number;
  offset: number;
  H: number;
  Hkv: number;
  D: number;
  bf16: boolean;
}

const SHAPES: Shape[] = [
  // The 125M prefill: 12 heads over 4, D = 64, a 128-token prompt.
  { T: 128, offset: 0, H: 12, Hkv: 4, D: 64, bf16: false },
  // A later prompt chunk after cached keys, ragged sizes, one KV head, bf16 cache.
  { T: 77, offset: 45, H: 6, Hkv: 1, D: 40, bf16: true },
  { T: 200, offset: 3, H: 4, Hkv: 2, D: 24, bf16: false },
  // No grouped heads (a one-query call is a single row), and D = 80: the rows taken together
  // over whole 4-vector column blocks, then each alone over the last vector.
  { T: 50, offset: 5, H: 2, Hkv: 2, D: 80, bf16: false },
];

function run(s: Shape, q: Float32Array, k: Float32Array | Uint16Array, v: Float32Array | Uint16Array) {
  const S = s.offset + s.T;
  const out = new Float32Array(s.T * s.H * s.D);
  const lse = new Float32Array(s.H * s.T);
  addon!.attention(
    q,
    k as Float32Array,
    v as Float32Array,
    1,
    s.T,
    S,
    s.H,
    s.Hkv,
    s.D,
    S,
    1 / Math.sqrt(s.D),
    s.offset,
    true,
    out,
    lse,
  );
  return { out, lse };
}

test("native attention: a prompt's forward is bit for bit the same on 1, 2 and 3 threads and row by row", {
  skip: addon ? false : "native addon not built",
}, () => {
  const before = addon!.getThreads();
  try {
    for (const s of SHAPES) {
      const S = s.offset + s.T;
      const q = randomF32(s.T * s.H * s.D);
      const k32 = randomF32(S * s.Hkv * s.D);
      const v32 = randomF32(S * s.Hkv * s.D);
      const bits = (x: Float32Array) => Uint16Array.from(new Uint32Array(x.buffer), (b) => b >>> 16);
      const k = s.bf16 ? bits(k32) : k32;
      const v = s.bf16 ? bits(v32) : v32;
      const runs = [1, 2, 3].map((threads) => {
        addon!.setThreads(threads);
        return run(s, q, k, v);
      });
      assert.ok(runs[0].out.some((x) => x !== 0));
      for (const r of runs.slice(1)) {
        assert.deepEqual(r.out, runs[0].out);
        assert.deepEqual(r.lse, runs[0].lse);
      }
      // Query t alone at offset + t (what a decode step computes) gives the same row.
      addon!.setThreads(2);
      const row = s.H * s.D;
      for (const t of [0, s.T >> 1, s.T - 1]) {
        const one = { ...s, T: 1, offset: s.offset + t };
        const r = run(one, q.slice(t * row, (t + 1) * row), k, v);
        assert.deepEqual(r.out, runs[0].out.slice(t * row, (t + 1) * row), `${JSON.stringify(s)}: row ${t}`);
      }
    }
  } finally {
    addon!.setThreads(before);
  }
});
