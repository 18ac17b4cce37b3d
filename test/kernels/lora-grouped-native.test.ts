// The native loraGrouped (native/src/lora_grouped.cc) with many adapters in one call, as a
// serving step with 50 distinct adapters makes it: single-row groups run side by side over
// the thread pool, larger groups one at a time. The bits of every row must not depend on the
// thread count (a served request gets the same tokens alone or in any batch), rows of no
// group keep their values, and the values match the reference backend.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Backend, LoraGroupedParams } from "../../src/core/backend.js";
import { Rng } from "../../src/core/rng.js";
import { loadAddon } from "../../src/kernels/native/loader.js";
import { refBackend } from "../../src/kernels/ref/index.js";
import { availableBackends } from "../../src/kernels/select.js";

const native = (await availableBackends()).find((b) => b.name === "native") as Backend | undefined;
const loaded = loadAddon();
const threads =
  "addon" in loaded ? (loaded.addon as { setThreads(n: number): void; getThreads(): number }) : null;
const skip = native?.loraGrouped && threads ? false : "no native addon here";

const [N, inF, outF] = [70, 96, 80];
const rng = new Rng(5);
const f32 = (n: number, s = 1) => Float32Array.from({ length: n }, () => (rng.uniform() * 2 - 1) * s);

/** 48 single-row groups (rows scattered), one contiguous 12-row group, one scattered 5-row group. */
function params(y: Float32Array): LoraGroupedParams {
  const order = Array.from({ length: N }, (_, i) => i).sort(() => rng.uniform() - 0.5);
  const big = Array.from({ length: 12 }, (_, i) => 30 + i);
  const rest = order.filter((i) => !big.includes(i));
  const singles = rest.slice(0, 48);
  const scattered = rest.slice(48, 53); // the other rows (5 of them) belong to no group
  const groups = [...singles.map((i) => [i]), big, scattered];
  const rows = Int32Array.from(groups.flat());
  const starts = Int32Array.from([0, ...groups.map((_, g) => groups.slice(0, g + 1).flat().length)]);
  const ranks = Int32Array.from(groups, (_, g) => 1 + (g % 16));
  return {
    x: f32(N * inF),
    y,
    inFeatures: inF,
    outFeatures: outF,
    rows,
    starts,
    A: [...ranks].map((r) => f32(r * inF, 0.2)),
    B: [...ranks].map((r) => f32(outF * r, 0.2)),
    ranks,
    scales: Float64Array.from(ranks, (r) => 16 / r),
  };
}

describe("native loraGrouped with many adapters", { skip }, () => {
  test("bit-identical on 1 and 2 threads, rows of no group untouched, values as the reference's", () => {
    const be = native!;
    const t = threads!;
    const before = t.getThreads();
    const y0 = f32(N * outF);
    const p = params(y0.slice());
    const run = (n: number) => {
      t.setThreads(n);
      const y = y0.slice();
      be.loraGrouped({ ...p, y });
      return y;
    };
    try {
      const one = run(1);
      const two = run(2);
      for (let i = 0; i < one.length; i++)
        assert.ok(Object.is(one[i], two[i]), `y[${i}]: ${one[i]} vs ${two[i]}`);
      const grouped = new Set(p.rows);
      for (let r = 0; r < N; r++)
        if (!grouped.has(r))
          for (let c = 0; c < outF; c++)
            assert.equal(two[r * outF + c], y0[r * outF + c], `row ${r} changed`);
      const want = y0.slice();
      refBackend.loraGrouped({ ...p, y: want });
      for (let i = 0; i < want.length; i++)
        assert.ok(
          Math.abs(two[i] - want[i]) <= 1e-5 * (1 + Math.abs(want[i])),
          `y[${i}]: ${two[i]} vs ${want[i]}`,
        );
    } finally {
      t.setThreads(before);
    }
  });
});

describe("native loraGrouped by slot (a layer's table of adapters)", { skip }, () => {
  /** The same groups as params() gives, each on a slot of a shuffled table of their adapters. */
  function bySlot(p: LoraGroupedParams): LoraGroupedParams {
    const G = p.A.length;
    const order = Array.from({ length: G }, (_, i) => i).sort(() => rng.uniform() - 0.5);
    const slotOf = new Int32Array(G);
    order.forEach((g, s) => {
      slotOf[g] = s;
    });
    const A = order.map((g) => p.A[g]);
    const B = order.map((g) => p.B[g]);
    return {
      ...p,
      A,
      B,
      ranks: Int32Array.from(order, (g) => p.ranks[g]),
      scales: Float64Array.from(order, (g) => p.scales[g]),
      slots: slotOf,
      prepared: native!.prepareLora?.(A, B) ?? null,
    };
  }

  test("prepared addresses give the bits of the per-group arrays, on 1 and 2 threads", () => {
    const t = threads!;
    const before = t.getThreads();
    const y0 = f32(N * outF);
    const p = params(y0.slice());
    const s = bySlot(p);
    assert.ok(s.prepared, "the native backend prepares Float32Array adapters");
    try {
      for (const n of [1, 2]) {
        t.setThreads(n);
        const want = y0.slice();
        native!.loraGrouped({ ...p, y: want });
        for (const q of [s, { ...s, prepared: null }]) {
          const got = y0.slice();
          native!.loraGrouped({ ...q, y: got });
          for (let i = 0; i < got.length; i++)
            assert.ok(Object.is(got[i], want[i]), `${n} threads, y[${i}]: ${got[i]} vs ${want[i]}`);
        }
        const ref = y0.slice();
        refBackend.loraGrouped({ ...s, y: ref });
        const direct = y0.slice();
        refBackend.loraGrouped({ ...p, y: direct });
        assert.deepEqual(ref, direct, "the reference backend reads slots the same way");
      }
    } finally {
      t.setThreads(before);
    }
  });

  test("a slot outside the table, or a table of other sizes, is an error, not a read", () => {
    const p = params(f32(N * outF));
    const s = bySlot(p);
    const bad = Int32Array.from(s.slots!);
    bad[3] = s.A.length;
    assert.throws(() => native!.loraGrouped({ ...s, slots: bad }), /slot/);
    assert.throws(() => native!.loraGrouped({ ...s, slots: bad, prepared: null }), /slot/);
    assert.throws(() => refBackend.loraGrouped({ ...s, slots: bad }), /slot/);
    assert.throws(() => native!.loraGrouped({ ...s, ranks: s.ranks.subarray(1) }), /per adapter/);
  });

  test("prepareLora declines what it cannot address", () => {
    const a = f32(8 * inF);
    const b = f32(outF * 8);
    assert.equal(native!.prepareLora?.([new Float64Array(8 * inF)], [b]), null);
    assert.equal(native!.prepareLora?.([a], []), null);
    assert.ok(native!.prepareLora?.([a], [b]));
  });
});

describe("native loraGrouped: what the address path refuses, and scattered rows", { skip }, () => {
  test("a transferred adapter buffer is refused, not read at its old address", () => {
    const p = params(f32(N * outF));
    const A = p.A.map((a) => (a as Float32Array).slice());
    const prepared = native!.prepareLora?.(A, p.B) ?? null;
    assert.ok(prepared);
    structuredClone(A[2].buffer, { transfer: [A[2].buffer] });
    assert.equal(A[2].length, 0);
    const slots = Int32Array.from({ length: p.A.length }, (_, g) => g);
    assert.throws(() => native!.loraGrouped({ ...p, A, slots, prepared }), /A must be/);
  });

  test("an object that only says it is native is not taken for a preparation", () => {
    const y0 = f32(N * outF);
    const p = params(y0.slice());
    const slots = Int32Array.from({ length: p.A.length }, (_, g) => g);
    const forged = { backend: "native", addresses: new Float64Array(4 * p.A.length), arrays: [] };
    const want = y0.slice();
    native!.loraGrouped({ ...p, y: want });
    const got = y0.slice();
    native!.loraGrouped({ ...p, y: got, slots, prepared: forged });
    assert.deepEqual(got, want);
  });

  test("rows of a scattered group get the bits they get alone, for a rank over one k slice", () => {
    const r = 300;
    const [n, i, o] = [6, 40, 24];
    const x = f32(n * i);
    const y0 = f32(n * o);
    const A = [f32(r * i, 0.1)];
    const B = [f32(o * r, 0.1)];
    const common = {
      x,
      inFeatures: i,
      outFeatures: o,
      A,
      B,
      ranks: Int32Array.of(r),
      scales: Float64Array.of(0.5),
    };
    for (const be of [native!, refBackend]) {
      const together = y0.slice();
      be.loraGrouped({ ...common, y: together, rows: Int32Array.of(5, 1, 3), starts: Int32Array.of(0, 3) });
      for (const row of [5, 1, 3]) {
        const alone = y0.slice();
        be.loraGrouped({ ...common, y: alone, rows: Int32Array.of(row), starts: Int32Array.of(0, 1) });
        for (let c = 0; c < o; c++)
          assert.ok(
            Object.is(together[row * o + c], alone[row * o + c]),
            `${be.name} row ${row} column ${c}`,
          );
      }
    }
  });
});
