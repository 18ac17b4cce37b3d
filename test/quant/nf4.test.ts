// NF4 quantisation against the committed NumPy re-implementation of bitsandbytes
// (scripts/fixtures/make_nf4_fixtures.py → test/fixtures/nf4/nf4.json), bit for bit, on
// random weights (with thresholds, ties, a zero block and a partial block) and on the
// decoder weights of the fixture models; and the quant_state JSON byte for byte.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { openCheckpoint } from "../../src/io/node/index.js";
import {
  DYNAMIC_MAP,
  dequantizeNestedAbsmax,
  dequantizeNf4Tensor,
  doubleQuantize,
  meanF32,
  NF4_CODE,
  pyFloatRepr,
  quantizeNf4,
  quantizeNf4Tensor,
  quantStateJson,
} from "../../src/quant/nf4.js";
import { repoRoot } from "../util/repo.js";

const ROOT = repoRoot();

interface Case {
  name: string;
  shape: number[];
  offset_bits: number;
  offset64_bits: number;
  quant_state_json: string;
  weight_b64?: string;
  packed_b64?: string;
  absmax_b64?: string;
  qabsmax_b64?: string;
  nested_absmax_b64: string;
  dequant_sha256: string;
  dequant_plain_sha256: string;
  packed_sha256?: string;
  absmax_sha256?: string;
  qabsmax_sha256?: string;
  model?: string;
  key?: string;
}
const fx: { nf4_bits: number[]; dynamic_map_bits: number[]; cases: Case[] } = JSON.parse(
  readFileSync(join(ROOT, "test/fixtures/nf4/nf4.json"), "utf8"),
);

const b64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));
const f32of = (s: string) => new Float32Array(b64(s).slice().buffer);
const bitsOf = (x: number) => new Uint32Array(Float32Array.of(x).buffer)[0];
const sha = (a: ArrayBufferView) =>
  createHash("sha256")
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest("hex");
const sameBytes = (a: ArrayBufferView, b: ArrayBufferView, what: string) =>
  assert.equal(sha(a), sha(b), `${what} differs`);

function weightsOf(c: Case): Float32Array {
  if (c.weight_b64) return f32of(c.weight_b64);
  const ck = openCheckpoint(join(ROOT, "test/fixtures/models", c.model!, "model.safetensors"));
  try {
    return Float32Array.from(ck.tensor(c.key!, { dtype: "f32" }).data as Float32Array);
  } finally {
    ck.close();
  }
}

describe("NF4 = bitsandbytes, bit for bit", () => {
  test("codebook and dynamic map", () => {
    assert.deepEqual([...NF4_CODE].map(bitsOf), fx.nf4_bits);
    assert.deepEqual([...DYNAMIC_MAP].map(bitsOf), fx.dynamic_map_bits);
  });

  for (const c of fx.cases) {
    test(c.name, () => {
      const w = weightsOf(c);
      const { packed, absmax } = quantizeNf4(w, 64);
      if (c.packed_b64) sameBytes(packed, b64(c.packed_b64), "packed codes");
      else assert.equal(sha(packed), c.packed_sha256, "packed codes");
      if (c.absmax_b64) sameBytes(absmax, b64(c.absmax_b64), "absmax");
      else assert.equal(sha(absmax), c.absmax_sha256, "absmax");
      // plain dequantisation
      const plain = dequantizeNf4Tensor({
        shape: c.shape,
        blocksize: 64,
        packed,
        quantMap: NF4_CODE,
        absmax,
        nested: null,
        dtype: "float32",
      });
      assert.equal(sha(plain), c.dequant_plain_sha256, "dequantize_4bit (no double quant)");
      // the mean: lorakit sums in f64; torch's f32 mean may differ in the last bit
      const mine = bitsOf(meanF32(absmax));
      assert.equal(mine, c.offset64_bits);
      assert.ok(Math.abs(mine - c.offset_bits) <= 2, "offset within 2 ulp of torch's mean");
      // double quantisation with bitsandbytes' offset: bit for bit
      const offset = new Float32Array(new Uint32Array([c.offset_bits]).buffer)[0];
      const nested = doubleQuantize(absmax, { offset });
      if (c.qabsmax_b64) sameBytes(nested.q, b64(c.qabsmax_b64), "nested codes");
      else assert.equal(sha(nested.q), c.qabsmax_sha256, "nested codes");
      sameBytes(nested.absmax, b64(c.nested_absmax_b64), "nested absmax");
      const q = quantizeNf4Tensor(w, c.shape, { nestedOffset: offset });
      assert.equal(sha(dequantizeNf4Tensor(q)), c.dequant_sha256, "dequantize_4bit (double quant)");
      assert.equal(quantStateJson(q), c.quant_state_json);
      assert.equal(dequantizeNestedAbsmax(nested).length, absmax.length);
    });
  }

  test("Python float repr", () => {
    const cases: [number, string][] = [
      [1, "1.0"],
      [0.1, "0.1"],
      [1e-5, "1e-05"],
      [0.0001, "0.0001"],
      [123.5, "123.5"],
      [1e16, "1e+16"],
      [1.5e-7, "1.5e-07"],
      [Math.fround(0.0988774374127388), "0.0988774374127388"],
      [-2.25, "-2.25"],
    ];
    for (const [x, s] of cases) assert.equal(pyFloatRepr(x), s);
  });
});
