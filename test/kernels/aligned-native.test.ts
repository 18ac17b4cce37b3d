// alignOffset (native/src/aligned_array.cc) and the 64-byte aligned arrays the backend packs
// weights into (aligned.ts, used by prepack.ts and nf4.ts): the arrays are zero-filled views at
// the offset the addon reports, less than 64 bytes into a buffer 64 bytes longer; bad arguments
// are refused; products on aligned panels give the bits products on plain (16-byte aligned)
// panels give.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type AlignOffsetAddon, alignedArrays } from "../../src/kernels/native/aligned.js";
import { loadAddon } from "../../src/kernels/native/loader.js";
import { prepackAddonOf } from "../../src/kernels/native/prepack.js";

const loaded = loadAddon();
const raw = "addon" in loaded ? (loaded.addon as unknown as AlignOffsetAddon & object) : null;
const skip = raw === null ? "no native addon" : false;

let seed = 99;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
}

describe("aligned arrays (native)", { skip }, () => {
  test("alignOffset: the bytes to the buffer's first 64-byte boundary, a multiple of 16", () => {
    for (const bytes of [0, 1, 100, 1 << 20]) {
      const off = raw!.alignOffset(new ArrayBuffer(bytes));
      assert.ok(Number.isInteger(off) && off >= 0 && off < 64 && off % 16 === 0, `offset ${off}`);
    }
    const ad = raw as unknown as { alignOffset(b: unknown): number };
    assert.throws(() => ad.alignOffset(new Float32Array(4)), /must be an ArrayBuffer/);
    assert.throws(() => ad.alignOffset(undefined), /must be an ArrayBuffer/);
  });

  test("zero-filled typed arrays of each kind, viewed from the aligned offset of a buffer 64 bytes longer", () => {
    const arrays = alignedArrays(raw!);
    for (const n of [0, 1, 15, 4096, 1 << 20]) {
      for (const [a, Ctor, size] of [
        [arrays.f32(n), Float32Array, 4],
        [arrays.u16(n), Uint16Array, 2],
        [arrays.u8(n), Uint8Array, 1],
      ] as const) {
        assert.ok(a instanceof Ctor, `a ${Ctor.name}`);
        assert.equal(a.length, n);
        assert.equal(a.buffer.byteLength, n * size + 64);
        assert.equal(a.byteOffset, raw!.alignOffset(a.buffer as ArrayBuffer));
        assert.ok(a.every((x) => x === 0));
        if (n > 0) {
          a[n - 1] = 7;
          assert.equal(a[n - 1], 7);
        }
      }
    }
  });

  test("an invalid length is a RangeError, as for any typed array", () => {
    const arrays = alignedArrays(raw!);
    for (const n of [-1, 1.5, Number.NaN]) assert.throws(() => arrays.f32(n), RangeError);
    assert.throws(() => arrays.f32(2 ** 50), RangeError);
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
  test("an addon without alignOffset gets plain zero-filled arrays", () => {
    const arrays = alignedArrays({});
    assert.ok(arrays.f32(5) instanceof Float32Array);
    assert.ok(arrays.u16(5) instanceof Uint16Array);
    assert.deepEqual(arrays.u8(3), new Uint8Array(3));
  });
});
