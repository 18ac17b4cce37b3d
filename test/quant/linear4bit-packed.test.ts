// Linear4bit on the native backend's packed NF4 layout (Backend.nf4Pack): the first inference
// product packs W and drops the bitsandbytes codes; products give the same bits as the unpacked path
// (forward and the input gradient, one row or many), greedy generation picks the same ids,
// reading `q` restores the codes byte for byte, and another backend still computes from them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { backward } from "../../src/core/autograd.js";
import { noGrad, setBackend, setWeightPacking } from "../../src/core/engine.js";
import { Rng, randNormal } from "../../src/core/rng.js";
import type { Tensor } from "../../src/core/tensor.js";
import { tensor } from "../../src/core/tensor.js";
import { refBackend } from "../../src/kernels/ref/index.js";
import { availableBackends } from "../../src/kernels/select.js";
import { generate } from "../../src/models/generate.js";
import { Linear4bit } from "../../src/quant/linear4bit.js";
import { linear4bitModules, quantizeModel } from "../../src/quant/model.js";
import { tinyModel } from "../util/tiny-model.js";

const native = (await availableBackends()).find((b) => b.name === "native");
const skip = native?.nf4Pack ? false : "no native backend with packed NF4 kernels on this CPU";

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ua.length === ub.length && ua.every((v, i) => v === ub[i]);
}

/** Runs fn with weight packing on or off, restoring the setting. */
function withPacking<T>(on: boolean, fn: () => T): T {
  const prev = setWeightPacking(on);
  try {
    return fn();
  } finally {
    setWeightPacking(prev);
  }
}

// In-features 128 and 192: whole blocks of 64 per row, so the layout holds every projection.
const SHAPE = {
  hidden_size: 128,
  intermediate_size: 192,
  vocab_size: 64,
  num_attention_heads: 4,
  num_key_value_heads: 2,
};

describe("Linear4bit on packed NF4 (native)", { skip }, () => {
  test("packs on the first inference product; forward and dx equal the unpacked path bit for bit; q restores the codes", () => {
    setBackend(native!);
    const w = randNormal(new Rng(3), [72, 192], 0, 0.05);
    const bias = randNormal(new Rng(4), [72], 0, 0.1);
    const plain = Linear4bit.fromWeight(w, bias);
    const packed = Linear4bit.fromWeight(w, bias);
    const codes = plain.q.packed.slice();
    // A training step (forward recording a graph, then backward) does not pack; inference does.
    withPacking(true, () => {
      const x = randNormal(new Rng(0), [2, 192]);
      x.requiresGrad = true;
      backward(packed.forward(x), randNormal(new Rng(1), [2, 72]));
      assert.equal(packed.isPacked, false);
      noGrad(() => packed.forward(x));
      assert.equal(packed.isPacked, true);
    });
    for (const rows of [1, 3, 8, 11]) {
      const dy = randNormal(new Rng(rows + 100), [rows, 72]);
      const run = (l: Linear4bit, pack: boolean) =>
        withPacking(pack, () => {
          const xi = randNormal(new Rng(rows), [rows, 192]);
          xi.requiresGrad = true;
          const y = l.forward(xi);
          backward(y, dy);
          return [
            Float32Array.from(y.data as Float32Array),
            Float32Array.from(xi.grad!.data as Float32Array),
          ];
        });
      const [y0, g0] = run(plain, false);
      const [y1, g1] = run(packed, true);
      assert.equal(plain.isPacked, false);
      assert.equal(packed.isPacked, true);
      assert.ok(sameBits(y0, y1), `forward, ${rows} rows`);
      assert.ok(sameBits(g0, g1), `dx, ${rows} rows`);
    }
    // Packed: no codes besides the packed form; q gives them back exactly (and unpacks).
    assert.ok(packed.residentBytes() > (72 * 192) / 2);
    assert.deepEqual(packed.q.packed, codes);
    assert.equal(packed.isPacked, false);
  });

  test("greedy ids and logits are the same as before packing", () => {
    setBackend(native!);
    const ids = [5, 17, 2, 40, 9, 33];
    const run = (pack: boolean) =>
      withPacking(pack, () => {
        const m = tinyModel(11, SHAPE);
        quantizeModel(m);
        const logits = noGrad(() => {
          const out = m.forward(tensor([ids], [1, ids.length], "i32")) as Tensor;
          return Float32Array.from(out.data as Float32Array);
        });
        const gen = generate(m, ids, { maxNewTokens: 12 });
        const mods = linear4bitModules(m);
        return { logits, gen, packed: mods.filter(([, l]) => l.isPacked).length, all: mods.length };
      });
    const before = run(false);
    const after = run(true);
    assert.equal(before.packed, 0);
    assert.equal(after.packed, after.all, "every NF4 projection was packed");
    assert.ok(sameBits(before.logits, after.logits));
    assert.deepEqual(after.gen, before.gen);
  });

  test("another backend computes from the restored codes", () => {
    setBackend(native!);
    const l = Linear4bit.fromWeight(randNormal(new Rng(9), [32, 128], 0, 0.05));
    const x = randNormal(new Rng(10), [2, 128]);
    const yNative = Float32Array.from(noGrad(() => l.forward(x)).data as Float32Array);
    assert.equal(l.isPacked, true);
    try {
      setBackend(refBackend);
      const yRef = noGrad(() => l.forward(x)).data as Float32Array;
      assert.equal(l.isPacked, false);
      for (let i = 0; i < yRef.length; i++)
        assert.ok(Math.abs(yRef[i] - yNative[i]) <= 1e-5 * (1 + Math.abs(yRef[i])));
    } finally {
      setBackend(native!);
    }
  });
});
