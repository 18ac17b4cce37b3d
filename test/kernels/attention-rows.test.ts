// Backend.attentionRows (a continuous batch's attention in one call) against its definition,
// one `attention` call per sequence (attentionRowsByCalls): bit for bit, for f32 and bf16
// caches, decode rows and prompt chunks mixed, on every backend that has the kernel; and
// its argument errors.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { AttentionRowsParams } from "../../src/core/backend.js";
import { loadAddon } from "../../src/kernels/native/loader.js";
import type { OpsAddon } from "../../src/kernels/native/ops.js";
import { attentionRowsByCalls } from "../../src/kernels/ref/attention-rows.js";
import { availableBackends } from "../../src/kernels/select.js";

let seed = 777;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
}
const randomF32 = (n: number) => Float32Array.from({ length: n }, () => rand() * 2);
const toBf16 = (x: Float32Array) => {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(u, (b) => b >>> 16);
};

/** Sequences with (tokens this call, keys already cached, capacity); H=6 over Hkv=2, D=40. */
function batch(rows: [number, number, number][], bf16: boolean): AttentionRowsParams {
  const H = 6;
  const Hkv = 2;
  const D = 40;
  const total = rows.reduce((s, r) => s + r[0], 0);
  const kv = (cap: number) => (bf16 ? toBf16(randomF32(cap * Hkv * D)) : randomF32(cap * Hkv * D));
  return {
    q: randomF32(total * H * D),
    k: rows.map((r) => kv(r[2])),
    v: rows.map((r) => kv(r[2])),
    tokens: rows.map((r) => r[0]),
    offsets: rows.map((r) => r[1]),
    capacities: rows.map((r) => r[2]),
    H,
    Hkv,
    D,
    scale: 1 / Math.sqrt(D),
  };
}

const SMALL: [number, number, number][] = [
  [1, 5, 8],
  [7, 0, 12],
  [1, 0, 1],
  [3, 60, 70],
];
// Enough work to be split over threads: long caches and a 100-token chunk.
const LARGE: [number, number, number][] = [
  [1, 700, 800],
  [100, 40, 200],
  [1, 300, 301],
  [33, 0, 40],
];

for (const be of await availableBackends()) {
  const rowsKernel = be.attentionRows?.bind(be);
  describe(`attentionRows (${be.name} backend)`, { skip: rowsKernel ? false : "no attentionRows" }, () => {
    for (const bf16 of [false, true])
      for (const [name, rows] of [
        ["small", SMALL],
        ["large", LARGE],
      ] as const)
        test(`${name} batch, ${bf16 ? "bf16" : "f32"} caches: bit for bit one attention call per sequence`, () => {
          const p = batch(rows, bf16);
          const got = new Float32Array(p.q.length);
          rowsKernel!(p, got);
          const want = new Float32Array(p.q.length);
          attentionRowsByCalls(be.attention.bind(be), p, want);
          assert.ok(want.some((x) => x !== 0));
          assert.deepEqual(got, want);
        });

    test("a query past its cache's capacity is refused", () => {
      const p = batch(SMALL, false);
      assert.throws(() => rowsKernel!({ ...p, capacities: [4, 12, 1, 70] }, new Float32Array(p.q.length)));
    });
  });
}

const loaded = loadAddon();
const ops = "addon" in loaded ? (loaded.addon as unknown as OpsAddon) : null;
test("the addon's attentionRows refuses mixed k/v types, short caches and bad row sizes", {
  skip: ops ? false : "native addon not built",
}, () => {
  const p = batch(SMALL, false);
  const rows = Int32Array.from(SMALL.flat());
  const out = new Float32Array(p.q.length);
  const call = (over: Partial<{ k: typeof p.k; v: typeof p.v; rows: Int32Array; out: Float32Array }>) =>
    ops!.attentionRows(
      p.q as Float32Array,
      (over.k ?? p.k) as Float32Array[],
      (over.v ?? p.v) as Float32Array[],
      over.rows ?? rows,
      p.H,
      p.Hkv,
      p.D,
      p.scale,
      over.out ?? out,
    );
  call({});
  assert.throws(
    () => call({ v: [toBf16(p.v[0] as Float32Array), ...p.v.slice(1)] }),
    /must both be Float32Arrays or both Uint16Arrays/,
  );
  assert.throws(() => call({ k: [new Float32Array(3), ...p.k.slice(1)] }), /need \d+ elements/);
  assert.throws(
    () => call({ rows: Int32Array.from([1, 8, 8, ...SMALL.slice(1).flat()]) }),
    /offset \+ tokens <= capacity/,
  );
  assert.throws(() => call({ out: new Float32Array(5) }), /out has 5 elements/);
  assert.throws(() => call({ v: p.v.slice(1) }), /one buffer per sequence/);
});
