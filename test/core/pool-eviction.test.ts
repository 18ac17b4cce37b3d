// The buffer pool under a byte limit: when it is full, a released buffer takes the place of
// the least recently used size classes' idle buffers, so the sizes in use now keep hitting the
// pool after a burst of other sizes filled it (a server's prefill burst, then decoding).
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import { allocUninit, clearPool, poolStats, releaseArray, setPoolLimitBytes } from "../../src/core/memory.js";

const LIMIT = 1 << 20;
/** Elements of one buffer of each class used below: 64 KiB of f32 each. */
const A = 16384;
const B = 20480;

function cycle(n: number, count = 1): void {
  const held = Array.from({ length: count }, () => allocUninit("f32", n));
  for (const a of held) releaseArray("f32", a);
}

describe("pool eviction", () => {
  afterEach(() => {
    setPoolLimitBytes(1 << 30);
    clearPool();
  });

  test("a full pool drops the least recently used class for the one released now", () => {
    clearPool();
    setPoolLimitBytes(LIMIT);
    // Fill the pool with class A: 16 × 64 KiB = the whole limit.
    cycle(A, 16);
    assert.equal(poolStats().pooledBytes, LIMIT);
    // Class B is released into the full pool; it must stay there, so the next B hits.
    cycle(B);
    const hits = poolStats().hits;
    cycle(B);
    assert.equal(poolStats().hits, hits + 1);
    assert.ok(poolStats().pooledBytes <= LIMIT);
  });

  test("a class used since keeps its buffers; the idle one goes first", () => {
    clearPool();
    setPoolLimitBytes(LIMIT);
    cycle(A, 8); // 512 KiB of A, used first
    cycle(B, 6); // 480 KiB of B
    cycle(A, 8); // A used again: now B is the least recently used
    const C = 24576; // 96 KiB: needs room, taken from B
    cycle(C);
    const hits = poolStats().hits;
    cycle(A, 8);
    assert.equal(poolStats().hits, hits + 8, "every A still pooled");
    cycle(C);
    assert.equal(poolStats().hits, hits + 9, "C pooled");
  });

  test("a buffer larger than the whole limit is not pooled", () => {
    clearPool();
    setPoolLimitBytes(LIMIT);
    cycle(A, 4);
    cycle((LIMIT / 4) * 2);
    assert.equal(poolStats().pooledBytes, 4 * A * 4);
  });
});
