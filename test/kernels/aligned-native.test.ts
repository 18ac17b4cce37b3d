// alignedArray (native/src/aligned_array.cc) and the 64-byte aligned panels the backend packs
// weights into (prepack.ts, nf4.ts): the arrays are zero-filled views at an offset of less
// than 64 bytes into a buffer 64 bytes longer, bad arguments are refused, and products on
// aligned panels give the bits products on plain (16-byte aligned) panels give.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type AlignedArrayAddon, alignedArrays } from "../../src/kernels/native/aligned.js";
import { loadAddon } from "../../src/kernels/native/loader.js";
import { prepackAddonOf } from "../../src/kernels/native/prepack.js";

const loaded = loadAddon();
const raw = "addon" in loaded ? (loaded.addon as unknown as AlignedArrayAddon & object) : null;
const skip = raw === null ? "no native addon" : false;

let seed = 99;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
}

describe("alignedArray (native)", { skip }, () => {
  test("zero-filled typed arrays of each kind, a view less than 64 bytes into a buffer 64 bytes longer", () => {
    const ad = raw!;
    for (const n of [0, 1, 15, 4096, 1 << 20]) {
      for (const [kind, Ctor, size] of [
        ["f32", Float32Array, 4],
        ["u16", Uint16Array, 2],
        ["u8", Uint8Array, 1],
      ] as const) {
        const a = ad.alignedArray(kind as "f32", n) as unknown as Float32Array | Uint16Array | Uint8Array;
        assert.ok(a instanceof Ctor, `${kind} is a ${Ctor.name}`);
        assert.equal(a.length, n);
        assert.equal(a.buffer.byteLength, n * size + 64);
        assert.ok(a.byteOffset < 64 && a.byteOffset % size === 0, `offset ${a.byteOffset}`);
        assert.ok(a.every((x) => x === 0));
        if (n > 0) {
          a[n - 1] = 7;
          assert.equal(a[n - 1], 7);
        }
      }
    }
  });

  test("refuses an unknown kind and a count that is not a non-negative integer", () => {
    const ad = raw as unknown as { alignedArray(kind: string, n: number): unknown };
    assert.throws(() => ad.alignedArray("f64", 4), /kind must be "f32", "u16" or "u8"/);
    for (const n of [-1, 1.5, Number.NaN])
      assert.throws(() => ad.alignedArray("f32", n), /non-negative integer/);
    assert.throws(() => (ad.alignedArray as (...a: unknown[]) => unknown)(3), TypeError);
  });

  test("products on aligned panels have the bits of products on plain panels", (t) => {
    const pack = prepackAddonOf(raw!);
    if (!pack) {
      t.skip("no prepacked kernels on this CPU");
      return;
    }
    const arrays = alignedArrays(raw!);
    const n = 200;
    const k = 513;
    for (const bf16 of [false, true]) {
      const f = Float32Array.from({ length: n * k }, rand);
      const w = bf16 ? Uint16Array.from(new Uint32Array(f.buffer), (u) => u >>> 16) : f;
      const len: number = pack.packedElements(n, k);
      const plain: Float32Array | Uint16Array = bf16 ? new Uint16Array(len) : new Float32Array(len);
      const aligned = bf16 ? arrays.u16(len) : arrays.f32(len);
      pack.prepackWeight(w, n, k, plain);
      pack.prepackWeight(w, n, k, aligned);
      assert.deepEqual(aligned, plain);
      for (const m of [1, 5, 128]) {
        const a = Float32Array.from({ length: m * k }, rand);
        const want = new Float32Array(m * n);
        const got = new Float32Array(m * n);
        pack.gemmPacked(m, n, k, a, plain, want, 1, 0);
        pack.gemmPacked(m, n, k, a, aligned, got, 1, 0);
        assert.deepEqual(
          new Uint32Array(got.buffer),
          new Uint32Array(want.buffer),
          `bf16 ${bf16}, ${m} rows`,
        );
      }
    }
  });
});

describe("alignedArrays", () => {
  test("an addon without alignedArray gets plain zero-filled arrays", () => {
    const arrays = alignedArrays({});
    assert.ok(arrays.f32(5) instanceof Float32Array);
    assert.ok(arrays.u16(5) instanceof Uint16Array);
    assert.deepEqual(arrays.u8(3), new Uint8Array(3));
  });
});
