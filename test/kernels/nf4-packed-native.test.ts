// Prepacked NF4 weights on the native addon (native/src/nf4_packed.cc): unpacking gives the
// bitsandbytes bytes back exactly, and nf4GemmPacked gives every element exactly nf4Gemm's
// bits for any number of rows (the ≤ 8-row decode kernel and the panel GEMM alike), forward and
// backward, beta 0 and 1, ragged out-features, several block sizes and thread counts: a row is
// the same alone or in a batch, and the same as before packing.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { loadAddon } from "../../src/kernels/native/loader.js";
import { type Nf4Addon, nf4AddonOf, nf4Packable } from "../../src/kernels/native/nf4.js";
import { NF4_CODE } from "../../src/quant/nf4.js";
import { passesOnForcedPath } from "../util/forced-path.js";

const loaded = loadAddon();
const raw =
  "addon" in loaded ? (loaded.addon as object & { setThreads(n: number): void; getThreads(): number }) : null;
const nf4 = raw ? nf4AddonOf(raw) : null;
const packedOk = nf4?.nf4PackedLayout?.() != null;
const skip = packedOk ? false : "no native addon with packed NF4 kernels on this CPU";

let seed = 4242;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
}
const randomF32 = (n: number) => Float32Array.from({ length: n }, () => rand() * 2);

/** A random NF4 weight: codes and positive absmax per block. */
function weight(out: number, inF: number, bs: number) {
  const packed = Uint8Array.from({ length: (out * inF) / 2 }, () => Math.floor((rand() + 0.5) * 256));
  const scales = Float32Array.from({ length: (out * inF) / bs }, () => 0.01 + (rand() + 0.5) * 0.1);
  return { packed, scales };
}

function pack(
  ad: Required<Nf4Addon>,
  packed: Uint8Array,
  scales: Float32Array,
  bs: number,
  out: number,
  inF: number,
) {
  const padded = Math.ceil(out / 16) * 16;
  const codes = new Uint8Array((padded * inF) / 2);
  const pscales = new Float32Array((padded * inF) / bs);
  ad.nf4Pack(packed, scales, bs, out, inF, codes, pscales);
  return { codes, pscales };
}

/** Index of the first element whose bits differ, or -1. */
function firstDiff(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

describe("packed NF4 weights (native)", { skip }, () => {
  const ad = nf4 as Required<Nf4Addon>;

  test("the layout: 16-column panels; unpacking restores the bitsandbytes bytes", () => {
    assert.deepEqual(ad.nf4PackedLayout(), { panel: 16 });
    for (const [out, inF, bs] of [
      [1, 64, 64],
      [17, 128, 32],
      [40, 256, 64],
      [33, 2048, 2048],
    ]) {
      const { packed, scales } = weight(out, inF, bs);
      const { codes } = pack(ad, packed, scales, bs, out, inF);
      const back = new Uint8Array(packed.length);
      ad.nf4Unpack(codes, out, inF, back);
      assert.deepEqual(back, packed, `${out}×${inF}`);
    }
  });

  test("nf4GemmPacked = nf4Gemm bit for bit: any rows, forward and backward, beta 0 and 1, 1 and 2 threads", () => {
    const before = raw!.getThreads();
    try {
      for (const threads of [1, 2]) {
        raw!.setThreads(threads);
        for (const [out, inF, bs] of [
          [40, 64, 64],
          [17, 128, 32],
          [70, 512, 128],
          [96, 768, 64],
          // AVX-512 runs the forward panel GEMM four panels (64 columns) at a time: a last
          // group of four that ends inside its fourth panel, and groups split over threads.
          [60, 256, 64],
          [200, 320, 64],
          // ... and in the backward (16 input columns a panel): in-features ending inside a
          // group's last panel, and out-features (the reduction) not a multiple of 16.
          [30, 56, 8],
          [50, 136, 8],
        ]) {
          const { packed, scales } = weight(out, inF, bs);
          const { codes, pscales } = pack(ad, packed, scales, bs, out, inF);
          for (const backward of [false, true])
            for (const rows of [1, 2, 3, 4, 5, 6, 7, 8, 9, 14])
              for (const beta of [0, 1]) {
                const K = backward ? out : inF;
                const N = backward ? inF : out;
                const a = randomF32(rows * K);
                const want = randomF32(rows * N);
                const got = want.slice();
                ad.nf4Gemm(backward, rows, inF, out, a, packed, scales, bs, NF4_CODE, want, beta);
                ad.nf4GemmPacked(backward, rows, inF, out, a, codes, pscales, bs, NF4_CODE, got, beta);
                const d = firstDiff(got, want);
                assert.equal(
                  d,
                  -1,
                  `${out}×${inF} bs ${bs} ${backward ? "backward" : "forward"} rows ${rows} beta ${beta} threads ${threads}: element ${d} ${got[d]} ≠ ${want[d]}`,
                );
              }
        }
      }
    } finally {
      raw!.setThreads(before);
    }
  });

  test("a row alone (decode kernel) equals the same row inside a 13-row batch (panel GEMM)", () => {
    const [out, inF, bs] = [50, 320, 64];
    const { packed, scales } = weight(out, inF, bs);
    const { codes, pscales } = pack(ad, packed, scales, bs, out, inF);
    const rows = 13;
    const a = randomF32(rows * inF);
    const batch = new Float32Array(rows * out);
    ad.nf4GemmPacked(false, rows, inF, out, a, codes, pscales, bs, NF4_CODE, batch, 0);
    for (let r = 0; r < rows; r++) {
      const one = new Float32Array(out);
      ad.nf4GemmPacked(
        false,
        1,
        inF,
        out,
        a.subarray(r * inF, (r + 1) * inF),
        codes,
        pscales,
        bs,
        NF4_CODE,
        one,
        0,
      );
      assert.equal(firstDiff(one, batch.subarray(r * out, (r + 1) * out)), -1, `row ${r}`);
    }
  });

  test("shapes the layout cannot hold are refused", () => {
    assert.equal(nf4Packable(37, 64), false);
    assert.equal(nf4Packable(96, 64), false); // not a whole number of blocks per row
    assert.equal(nf4Packable(896, 64), true);
    const { packed, scales } = weight(16, 96, 32);
    assert.throws(
      () => ad.nf4Pack(packed, scales, 64, 16, 96, new Uint8Array(768), new Float32Array(48)),
      RangeError,
    );
    assert.throws(
      () =>
        ad.nf4GemmPacked(
          false,
          1,
          64,
          16,
          new Float32Array(64),
          new Uint8Array(8),
          new Float32Array(16),
          64,
          NF4_CODE,
          new Float32Array(16),
          0,
        ),
      /too short/,
    );
  });
});

// The kernels a lower path runs, each in a child process (the path is chosen once per
// process): LORAKIT_CPU=avx512 keeps a VBMI host to the AVX-512 kernels without VBMI, and
// avx2 to the AVX2 ones, so one host checks every decode kernel's bits.
const features = raw
  ? (raw as unknown as { cpuFeatures(): { best: string; vbmi: boolean } }).cpuFeatures()
  : null;
const lower =
  !packedOk || process.env.LORAKIT_CPU || features === null
    ? []
    : [...(features.vbmi ? ["avx512"] : []), ...(features.best === "avx512" ? ["avx2"] : [])];
for (const path of lower)
  test(`packed NF4 on the forced ${path} path`, () => {
    passesOnForcedPath(import.meta.url, path);
  });
