// Frozen weights packed into the native backend's kernel layout in inference (core/ops/weight.ts):
// results stay bit-identical to the row-major path, the packed form replaces the row-major
// storage (no doubled memory), and every reader of `data` (merge, save, training, another
// backend) gets the plain weight back, bit for bit.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { checkpoint } from "../../src/core/activation-checkpoint.js";
import { backward } from "../../src/core/autograd.js";
import type { Backend, PackedWeight } from "../../src/core/backend.js";
import { noGrad, setBackend, setWeightPacking } from "../../src/core/engine.js";
import { tensorBytes, tidy } from "../../src/core/memory.js";
import { embedding, linear, linearShared, sum } from "../../src/core/ops/index.js";
import { Rng, randNormal } from "../../src/core/rng.js";
import { type Tensor, tensor } from "../../src/core/tensor.js";
import { serializeSafetensors } from "../../src/io/safetensors.js";
import { refBackend } from "../../src/kernels/ref/index.js";
import { availableBackends } from "../../src/kernels/select.js";
import { generate } from "../../src/models/generate.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { Linear } from "../../src/nn/layers.js";
import { LoraLinear } from "../../src/peft/lora/layer.js";
import { getPeftModel } from "../../src/peft/model.js";
import type { Batch } from "../../src/train/data.js";
import { evaluateBatches } from "../../src/train/trainer.js";
import { tinyModel } from "../util/tiny-model.js";

const native = (await availableBackends()).find((b) => b.name === "native") as Backend | undefined;
const skip =
  native?.packWeight && native.gemmPacked ? false : "no native backend with prepacked kernels here";

function bitsOf(a: ArrayLike<number>): string {
  return Buffer.from(new Float32Array(Array.from(a)).buffer).toString("hex");
}

/** Greedy ids and the prompt's logits, with packing on or off. */
function run(model: LlamaForCausalLM, packing: boolean): { ids: number[]; logits: string } {
  const prev = setWeightPacking(packing);
  try {
    const prompt = [1, 5, 9, 33, 7, 20, 3];
    const ids = generate(model, prompt, { maxNewTokens: 12 });
    const logits = noGrad(() =>
      bitsOf(model.forward(tensor([prompt], [1, prompt.length], "i32")).data as Float32Array),
    );
    return { ids, logits };
  } finally {
    setWeightPacking(prev);
  }
}

/** The tensor's packed form, read through a call (assertions on the property narrow its type). */
function packedOf(t: Tensor): PackedWeight | null {
  return t.packedWeight;
}

function stateBytes(model: LlamaForCausalLM): Uint8Array {
  return serializeSafetensors(Object.fromEntries(model.namedParameters()));
}

describe("packed frozen weights", { skip }, () => {
  test("linear on a frozen weight packs it in inference, same bits, no extra memory, unpacks on read", () => {
    setBackend(native!);
    const w = randNormal(new Rng(1), [40, 300], 0, 1);
    const original = Float32Array.from(w.data as Float32Array);
    const x = randNormal(new Rng(2), [3, 300], 0, 1);
    const want = bitsOf(linear(x, w).data as Float32Array);
    assert.equal(w.packedWeight, null, "with grad on nothing is packed");
    const before = tensorBytes().live;
    const got = tidy(() => noGrad(() => bitsOf(linear(x, w).data as Float32Array)));
    assert.equal(got, want);
    const p = packedOf(w);
    assert.ok(p, "packed on first use without grad");
    assert.equal(p.backend, "native");
    // 40 rows pad to 48 panel columns: the only extra bytes; the row-major array is gone.
    assert.equal(tensorBytes().live - before, 8 * 300 * 4);
    // Rows of every count, through the packed form, equal the row-major product.
    for (const n of [1, 5, 8, 9, 40]) {
      const xs = randNormal(new Rng(n), [n, 300], 0, 1);
      const packed = noGrad(() => bitsOf(linear(xs, w).data as Float32Array));
      const prev = setWeightPacking(false);
      const copy = tensor(Array.from(original), [40, 300]);
      const plain = noGrad(() => bitsOf(linear(xs, copy).data as Float32Array));
      setWeightPacking(prev);
      assert.equal(packed, plain, `${n} rows`);
    }
    // readValues leaves it packed; data unpacks for good, bit for bit.
    assert.deepEqual(w.readValues(), original);
    assert.ok(packedOf(w));
    const afterPack = tensorBytes().live;
    assert.deepEqual(w.data, original);
    assert.equal(packedOf(w), null);
    assert.equal(tensorBytes().live - afterPack, -8 * 300 * 4, "back to the row-major bytes");
  });

  test("trainable or grad-recording products never pack; requiresGrad = true unpacks", () => {
    setBackend(native!);
    const w = randNormal(new Rng(3), [16, 32], 0, 1).setRequiresGrad();
    const x = randNormal(new Rng(4), [2, 32], 0, 1);
    noGrad(() => linear(x, w));
    assert.equal(w.packedWeight, null);
    const f = randNormal(new Rng(5), [16, 32], 0, 1);
    noGrad(() => linear(x, f));
    assert.ok(packedOf(f));
    f.requiresGrad = true;
    assert.equal(packedOf(f), null);
    backward(sum(linear(x, f)));
    assert.deepEqual(f.grad?.shape, [16, 32]);
  });

  test("activation checkpointing's probe forward and the trainer's evaluation do not pack", () => {
    setBackend(native!);
    const w = randNormal(new Rng(8), [32, 16], 0, 1);
    const x = randNormal(new Rng(9), [2, 16], 0, 1).setRequiresGrad();
    const y = checkpoint((h) => linear(h, w), [x]);
    assert.equal(packedOf(w), null, "the probe forward runs without grad but is not inference");
    backward(sum(y));
    const model = tinyModel(4);
    const batch: Batch = {
      inputs: Int32Array.from([1, 2, 3, 4]),
      targets: Int32Array.from([2, 3, 4, 5]),
      batchSize: 1,
      seqLen: 4,
      lengths: Int32Array.from([4]),
      tokens: 4,
      epoch: 0,
    };
    evaluateBatches(model, [batch]);
    for (const p of model.parameters()) assert.equal(packedOf(p), null);
  });

  test("a weight packed by native is read correctly by another backend (unpacked), and by embedding", () => {
    setBackend(native!);
    const w = randNormal(new Rng(6), [48, 24], 0, 1);
    const x = randNormal(new Rng(7), [2, 24], 0, 1);
    const want = bitsOf(noGrad(() => linear(x, w)).data as Float32Array);
    const rows = noGrad(() => embedding(w, tensor([47, 0, 5], [3], "i32")));
    assert.ok(packedOf(w), "an embedding lookup reads the packed form and keeps it");
    const src = w.readValues() as Float32Array;
    assert.deepEqual(
      rows.data,
      Float32Array.from([
        ...src.subarray(47 * 24, 48 * 24),
        ...src.subarray(0, 24),
        ...src.subarray(5 * 24, 6 * 24),
      ]),
    );
    setBackend(refBackend);
    const ref = noGrad(() => linear(x, w)).data as Float32Array;
    assert.equal(packedOf(w), null, "the reference backend unpacked it to read it");
    setBackend(native!);
    assert.equal(bitsOf(ref).length, want.length);
  });

  for (const tie of [false, true])
    for (const dtype of ["f32", "bf16"] as const)
      test(`greedy generation is bit-identical with and without packing (${dtype}, tied ${tie})`, () => {
        setBackend(native!);
        const model = tinyModel(11, {
          tie_word_embeddings: tie,
          vocab_size: 96,
          hidden_size: 64,
          intermediate_size: 96,
        });
        if (dtype === "bf16")
          for (const [, m] of model.namedModules())
            if (m instanceof Linear) m.setParam("weight", m.weight.to("bf16"));
        model.eval();
        const plain = run(model, false);
        const packed = run(model, true);
        let count = 0;
        for (const p of model.parameters()) if (p.packedWeight) count++;
        assert.ok(count >= 14, `linear weights packed (${count})`);
        assert.deepEqual(packed, plain);
        if (tie)
          assert.ok(
            model.lm_head.weight.packedWeight,
            "the tied head stays packed through embedding lookups",
          );
      });

  test("linearShared: one backend call for a layer's q/k/v and gate/up in decode, the bits of one linear each", () => {
    setBackend(native!);
    const rng = new Rng(21);
    // q/k/v of a GQA layer in bf16 with biases (Qwen2), and f32 gate/up without.
    for (const [dtype, outs, withBias] of [
      ["bf16", [64, 16, 16], true],
      ["f32", [96, 96], false],
    ] as const) {
      const ws = outs.map((o) => {
        const w = randNormal(rng, [o, 64], 0, 1);
        return dtype === "bf16" ? w.to("bf16") : w;
      });
      const bs = outs.map((o) => (withBias ? randNormal(rng, [o], 0, 1) : null));
      for (const rows of [1, 3, 8, 12]) {
        const x = randNormal(rng, [rows, 1, 64], 0, 1);
        const want = ws.map((w, i) => bitsOf(linear(x, w, bs[i]).data as Float32Array));
        const calls = { shared: 0, single: 0 };
        const counting: Backend = {
          ...native!,
          gemmPacked: (p) => {
            calls.single++;
            native!.gemmPacked!(p);
          },
          gemmPackedShared: (ps) => {
            calls.shared++;
            native!.gemmPackedShared!(ps);
          },
        };
        setBackend(counting);
        try {
          const got = noGrad(() => linearShared(x, ws, bs)).map((t) => bitsOf(t.data as Float32Array));
          assert.deepEqual(got, want, `${dtype} rows=${rows}`);
          assert.deepEqual(calls, { shared: 1, single: 0 }, "all products in one call");
          // Under autograd, and on a backend without the shared call, one linear each.
          const graded = linearShared(x, ws, bs).map((t) => bitsOf(t.data as Float32Array));
          assert.deepEqual(graded, want);
          assert.deepEqual(calls, { shared: 1, single: outs.length }, "grad on: one product each");
        } finally {
          setBackend(native!);
        }
        setBackend(refBackend);
        const ref = noGrad(() => linearShared(x, ws, bs)).map((t) => t.shape);
        assert.deepEqual(
          ref,
          outs.map((o) => [rows, 1, o]),
        );
        setBackend(native!);
      }
    }
    assert.throws(
      () => linearShared(randNormal(rng, [1, 8], 0, 1), [randNormal(rng, [4, 8], 0, 1)], []),
      /biases/,
    );
  });

  test("a decode step hands each layer's q/k/v and gate/up to the backend in one call each", () => {
    const model = tinyModel(12, { hidden_size: 64, intermediate_size: 96 });
    model.eval();
    const calls = { shared: 0, single: 0 };
    const counting: Backend = {
      ...native!,
      gemmPacked: (p) => {
        calls.single++;
        native!.gemmPacked!(p);
      },
      gemmPackedShared: (ps) => {
        calls.shared++;
        native!.gemmPackedShared!(ps);
      },
    };
    setBackend(counting);
    try {
      generate(model, [1, 2, 3], { maxNewTokens: 3 });
    } finally {
      setBackend(native!);
    }
    // 3 forwards × 2 layers: q/k/v and gate/up shared; o_proj, down_proj and lm_head alone.
    assert.deepEqual(calls, { shared: 3 * 2 * 2, single: 3 * (2 * 2 + 1) });
  });

  test("DoRA's weight norm in inference reads the packed base weight without unpacking it", () => {
    setBackend(native!);
    const pm = getPeftModel(tinyModel(31, { hidden_size: 64, intermediate_size: 96 }), {
      r: 4,
      loraAlpha: 8,
      targetModules: ["q_proj", "down_proj"],
      useDora: true,
    });
    pm.eval();
    // As an adapter loaded for inference: nothing trainable.
    for (const p of pm.parameters()) p.requiresGrad = false;
    const ids = tensor([[1, 2, 3]], [1, 3], "i32");
    const first = noGrad(() => bitsOf(pm.forward(ids).data as Float32Array));
    const layers = [...pm.baseModel.namedModules()].filter(([, m]) => m instanceof LoraLinear);
    assert.ok(layers.length > 0);
    for (const [, m] of layers) {
      const l = m as LoraLinear;
      assert.ok(packedOf(l.baseWeight), "the base weight is still packed after a DoRA forward");
      // The frozen factors went through linear (packed there) and ΔW read them without unpacking.
      assert.ok(packedOf(l.lora_A.get("default")!.weight), "lora_A still packed");
    }
    assert.equal(
      noGrad(() => bitsOf(pm.forward(ids).data as Float32Array)),
      first,
    );
  });

  test("merge and save after generating give the bytes they give without generating", () => {
    setBackend(native!);
    const make = () => {
      const pm = getPeftModel(tinyModel(21, { hidden_size: 64, intermediate_size: 96 }), {
        r: 4,
        loraAlpha: 8,
        targetModules: "all-linear",
      });
      const rng = new Rng(22);
      for (const [, m] of pm.baseModel.namedModules())
        if (m instanceof LoraLinear) {
          const B = m.lora_B.get("default")!.weight;
          B.data.set(randNormal(rng, B.shape as number[], 0, 0.1).data);
        }
      pm.eval();
      return pm;
    };
    const fresh = make();
    const want = stateBytes(fresh.mergeAndUnload());
    const used = make();
    generate(used.baseModel, [1, 2, 3], { maxNewTokens: 6 });
    let packed = 0;
    for (const p of used.baseModel.parameters()) if (p.packedWeight) packed++;
    assert.ok(packed > 0, "generation packed the frozen base weights");
    const merged = used.mergeAndUnload();
    assert.deepEqual(stateBytes(merged), want);
    // And a merged model generates as a fresh merged one does (repacked after the merge).
    assert.deepEqual(
      generate(merged, [4, 5], { maxNewTokens: 5 }),
      generate(fresh.baseModel, [4, 5], { maxNewTokens: 5 }),
    );
  });
});
