import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { f32ToBf16Into } from "../../src/core/dtype.js";
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  kaimingUniform,
  Rng,
  randNormal,
  ShapeError,
  tensor,
} from "../../src/core/index.js";

describe("dtypes", () => {
  test("f16 round trip and rounding (values checked against torch.tensor(x).half())", () => {
    // 1/3 → 0x3555, 65504 max, 1e-8 underflows to 0, 6e-8 subnormal 0x0001, -2 → 0xc000
    assert.equal(f32ToF16(1 / 3), 0x3555);
    assert.equal(f32ToF16(65504), 0x7bff);
    assert.equal(f32ToF16(70000), 0x7c00);
    assert.equal(f32ToF16(1e-8), 0);
    assert.equal(f32ToF16(6e-8), 0x0001);
    assert.equal(f32ToF16(-2), 0xc000);
    assert.ok(Number.isNaN(f16ToF32(f32ToF16(Number.NaN))));
    for (const v of [0, 1, -1.5, 1024, 2 ** -14, 2 ** -24, 65504]) assert.equal(f16ToF32(f32ToF16(v)), v);
    // ties to even: 2049 is halfway between 2048 and 2050 → 2048
    assert.equal(f16ToF32(f32ToF16(2049)), 2048);
    assert.equal(f16ToF32(f32ToF16(2051)), 2052);
  });

  test("bf16 round to nearest even", () => {
    assert.equal(f32ToBf16(1), 0x3f80);
    assert.equal(bf16ToF32(f32ToBf16(1 + 2 ** -8)), 1); // halfway, even stays
    assert.equal(bf16ToF32(f32ToBf16(1 + 3 * 2 ** -8)), 1 + 2 ** -6); // halfway, rounds up to even
    assert.equal(bf16ToF32(f32ToBf16(-3.140625)), -3.140625);
    assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(Number.NaN))));
  });

  test("f32ToBf16Into rounds each value as f32ToBf16 does (ties, NaN, ±inf, subnormals, -0)", () => {
    const vals = [
      0,
      -0,
      1,
      1 + 2 ** -8,
      1 + 3 * 2 ** -8,
      -3.140625,
      1 / 3,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      3.4e38,
      -3.4e38,
      1e-40,
      -1e-45,
    ];
    const rng = new Rng(5);
    const src = Float32Array.from([...vals, ...randNormal(rng, [200], 0, 10).data]);
    const bitsNaN = new Float32Array(new Uint32Array([0x7fc00001, 0xffbfffff, 0x7f800001]).buffer);
    const all = new Float32Array([...src, ...bitsNaN]);
    all.set(bitsNaN, src.length); // keep the NaN payloads bit for bit
    const dst = new Uint16Array(all.length + 3).fill(0xabcd);
    f32ToBf16Into(all.subarray(0), dst, 2);
    assert.equal(dst[0], 0xabcd);
    assert.equal(dst[dst.length - 1], 0xabcd);
    for (let i = 0; i < all.length; i++) assert.equal(dst[2 + i], f32ToBf16(all[i]), `value ${i}: ${all[i]}`);
    assert.throws(() => f32ToBf16Into(all, dst, 4), /overrun/);
  });

  test("tensor() conversions", () => {
    const t = tensor([
      [1.5, -2],
      [3, 4],
    ]);
    assert.deepEqual(t.shape, [2, 2]);
    assert.deepEqual(t.to("bf16").to("f32").toArray(), [1.5, -2, 3, 4]);
    assert.deepEqual(t.to("i32").toArray(), [1, -2, 3, 4]);
    assert.deepEqual(tensor([1, 2], [2], "f16").to("f64").toArray(), [1, 2]);
    assert.throws(() => tensor([[1, 2], [3]]), ShapeError);
    assert.throws(() => tensor([1, 2, 3], [2, 2]), /3 values do not fill shape \[2, 2\]/);
  });
});

describe("rng", () => {
  test("seeded streams repeat, and state restores", () => {
    const a = new Rng(7);
    const b = new Rng(7);
    assert.deepEqual([a.uniform(), a.normal(), a.nextU32()], [b.uniform(), b.normal(), b.nextU32()]);
    const st = a.getState();
    const x = [a.uniform(), a.normal()];
    a.setState(st);
    assert.deepEqual([a.uniform(), a.normal()], x);
  });

  test("normal has mean 0 and std 1", () => {
    const d = randNormal(new Rng(3), [200000]).data;
    let s = 0;
    let s2 = 0;
    for (const v of d) {
      s += v;
      s2 += v * v;
    }
    const mean = s / d.length;
    assert.ok(Math.abs(mean) < 0.01);
    assert.ok(Math.abs(Math.sqrt(s2 / d.length - mean * mean) - 1) < 0.01);
  });

  test("kaimingUniform(a=√5) is U(±1/√fan_in) as PyTorch's nn.Linear", () => {
    const w = kaimingUniform(new Rng(4), [64, 100]);
    const d = w.data;
    let mx = 0;
    for (const v of d) mx = Math.max(mx, Math.abs(v));
    assert.ok(mx <= 0.1 && mx > 0.099);
  });
});
