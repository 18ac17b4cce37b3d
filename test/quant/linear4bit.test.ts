// Linear4bit: the fused native NF4 GEMM and the TypeScript panel path both equal
// dequantise-then-GEMM (forward and dx); QLoRA training steps run and learn; merging into
// an NF4 base re-quantises with a warning; `lorakit quantize` writes the bitsandbytes
// layout and the written model loads back with near-base logits.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { backward } from "../../src/core/autograd.js";
import { setBackend } from "../../src/core/engine.js";
import { crossEntropy, linear, reshape } from "../../src/core/ops/index.js";
import { Rng, randNormal } from "../../src/core/rng.js";
import { fromArray, tensor } from "../../src/core/tensor.js";
import { openCheckpoint } from "../../src/io/node/index.js";
import { availableBackends } from "../../src/kernels/select.js";
import { loadModel, saveModel } from "../../src/models/node/load.js";
import { AdamW } from "../../src/optim/adamw.js";
import { loraConfig } from "../../src/peft/config.js";
import { LoraLinear } from "../../src/peft/lora/layer.js";
import { getPeftModel } from "../../src/peft/model.js";
import { Linear4bit, nf4ComputePath } from "../../src/quant/linear4bit.js";
import { linear4bitModules, quantizeModel } from "../../src/quant/model.js";
import { tinyModel } from "../util/tiny-model.js";

const backends = await availableBackends();
const native = backends.find((b) => b.name === "native");

function maxRel(a: Float32Array, b: Float32Array): number {
  let m = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return m / (s || 1);
}

describe("Linear4bit = dequantise-then-GEMM", () => {
  for (const [N, C, O] of [
    [7, 64, 40],
    [33, 192, 70],
    [130, 320, 96],
    [5, 37, 9],
  ]) {
    for (const be of backends) {
      test(`${be.name} backend, N=${N} C=${C} O=${O}`, () => {
        setBackend(be);
        const rng = new Rng(N + C + O);
        const w = randNormal(rng, [O, C], 0, 0.05);
        const bias = randNormal(rng, [O], 0, 0.1);
        const l4 = Linear4bit.fromWeight(w, bias);
        const wd = l4.dequantizedWeight();
        const x = randNormal(rng, [N, C]);
        x.requiresGrad = true;
        const y = l4.forward(x);
        const yRef = linear(x, wd, bias);
        assert.ok(maxRel(y.data as Float32Array, yRef.data as Float32Array) < 1e-5);
        const dy = randNormal(rng, y.shape as number[]);
        backward(y, dy);
        const gx = Float32Array.from(x.grad!.data as Float32Array);
        x.grad = null;
        backward(yRef, dy);
        assert.ok(maxRel(gx, x.grad!.data as Float32Array) < 1e-5);
        assert.equal(nf4ComputePath(), be.name === "native" ? "native" : "panel");
      });
    }
  }
  test("resident bytes per weight ≤ 0.52 with double quantisation", () => {
    const l4 = Linear4bit.fromWeight(randNormal(new Rng(1), [1024, 1024], 0, 0.02));
    assert.ok(l4.residentBytes() / (1024 * 1024) <= 0.52);
  });
});

describe("QLoRA", () => {
  test("training steps run and lower the loss; merge re-quantises with a warning", () => {
    setBackend(native ?? backends[0]);
    const model = tinyModel(7);
    const quantised = quantizeModel(model);
    assert.equal(quantised.length, 2 * 7);
    getPeftModel(model, loraConfig({ r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"] }));
    const params = model.trainableParameters();
    assert.ok(params.length > 0);
    const opt = new AdamW(params, { lr: 1e-2 });
    const ids = tensor(
      Array.from({ length: 2 * 17 }, (_, i) => (i * 7) % 48),
      [2, 17],
      "i32",
    );
    const inp = ids;
    let first = 0;
    let last = 0;
    model.train();
    for (let step = 0; step < 8; step++) {
      const logits = model.forward(inp);
      const V = logits.shape[2];
      const l = crossEntropy(
        reshape(logits, [-1, V]),
        fromArray(
          new Int32Array(ids.data as Int32Array).map((_, i, a) => a[(i + 1) % a.length]),
          [34],
          "i32",
        ),
      );
      if (step === 0) first = l.item();
      last = l.item();
      backward(l);
      opt.step();
      opt.zeroGrad();
    }
    assert.ok(last < first, `loss ${first} → ${last}`);
    const warnings: string[] = [];
    for (const [, m] of model.namedModules())
      if (m instanceof LoraLinear) {
        assert.ok(m.base_layer instanceof Linear4bit);
        m.merge(undefined, { warn: (s) => warnings.push(s) });
      }
    assert.ok(warnings.length > 0 && /re-quantises/.test(warnings[0]));
  });
});

describe("lorakit quantize", () => {
  test("writes the bitsandbytes layout; loading it gives near-base logits", () => {
    const dir = mkdtempSync(join(tmpdir(), "lorakit-q-"));
    const base = tinyModel(11, { intermediate_size: 64 });
    saveModel(base, join(dir, "base"));
    const main = join(process.cwd(), "dist/src/cli/main.js");
    const r = spawnSync(
      process.execPath,
      [main, "quantize", "--model", join(dir, "base"), "--out", join(dir, "q"), "--json"],
      {
        encoding: "utf8",
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.quantized_linears, 14);
    const cfg = JSON.parse(readFileSync(join(dir, "q", "config.json"), "utf8"));
    assert.equal(cfg.quantization_config.quant_method, "bitsandbytes");
    assert.equal(cfg.quantization_config.bnb_4bit_quant_type, "nf4");
    assert.equal(cfg.quantization_config.bnb_4bit_use_double_quant, true);
    const ck = openCheckpoint(join(dir, "q", "model.safetensors"));
    const p = "model.layers.0.self_attn.q_proj";
    assert.deepEqual(ck.info(`${p}.weight`).shape, [(32 * 32) / 2, 1]);
    assert.equal(ck.info(`${p}.weight`).dtype, "U8");
    for (const k of [
      "absmax",
      "quant_map",
      "nested_absmax",
      "nested_quant_map",
      "quant_state.bitsandbytes__nf4",
    ])
      assert.ok(ck.has(`${p}.weight.${k}`), k);
    const qs = JSON.parse(
      new TextDecoder().decode(ck.tensor(`${p}.weight.quant_state.bitsandbytes__nf4`).data as Uint8Array),
    );
    assert.deepEqual(Object.keys(qs), [
      "quant_type",
      "blocksize",
      "dtype",
      "shape",
      "nested_blocksize",
      "nested_dtype",
      "nested_offset",
    ]);
    ck.close();
    const { model: q } = loadModel(join(dir, "q"));
    assert.equal(linear4bitModules(q).length, 14);
    const ids = tensor([1, 5, 9, 2, 7, 3], [1, 6], "i32");
    const a = base.forward(ids).data as Float32Array;
    const b = q.forward(ids).data as Float32Array;
    let num = 0;
    let den = 0;
    for (let i = 0; i < a.length; i++) {
      num += (a[i] - b[i]) ** 2;
      den += a[i] ** 2;
    }
    assert.ok(Math.sqrt(num / den) < 0.2, `relative logit error ${Math.sqrt(num / den)}`);
    // re-saving the loaded 4-bit model round-trips the codes exactly
    saveModel(q, join(dir, "q2"));
    const c1 = openCheckpoint(join(dir, "q", "model.safetensors"));
    const c2 = openCheckpoint(join(dir, "q2", "model.safetensors"));
    for (const n of c1.names()) assert.deepEqual(c2.tensor(n).data, c1.tensor(n).data, n);
    c1.close();
    c2.close();
  });

  test("streams: sharded output, the same codes as quantising in memory, and loading with quantize: nf4", () => {
    const dir = mkdtempSync(join(tmpdir(), "lorakit-qs-"));
    const base = tinyModel(12, { intermediate_size: 64 });
    saveModel(base, join(dir, "base"), { dtype: "bf16" });
    const main = join(process.cwd(), "dist/src/cli/main.js");
    const r = spawnSync(
      process.execPath,
      [
        main,
        "quantize",
        "--model",
        join(dir, "base"),
        "--out",
        join(dir, "q"),
        "--max-shard-mb",
        "0.01",
        "--json",
      ],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.ok(JSON.parse(r.stdout).files > 1);
    const index = JSON.parse(readFileSync(join(dir, "q", "model.safetensors.index.json"), "utf8"));
    assert.match(
      index.weight_map["model.layers.0.self_attn.q_proj.weight.absmax"],
      /^model-\d{5}-of-\d{5}\.safetensors$/,
    );
    assert.deepEqual(
      readdirSync(join(dir, "q")).filter((f) => f.startsWith(".")),
      [],
      "no temporary file is left",
    );
    // The same codes as loading the bf16 checkpoint and quantising in memory, and as
    // quantising while loading.
    const { model: mem } = loadModel(join(dir, "base"));
    assert.equal(mem.model.embed_tokens.weight.dtype, "bf16");
    quantizeModel(mem);
    const { model: streamed } = loadModel(join(dir, "q"));
    const { model: onLoad } = loadModel(join(dir, "base"), { quantize: "nf4" });
    const a = linear4bitModules(mem);
    const b = new Map(linear4bitModules(streamed));
    const c = new Map(linear4bitModules(onLoad));
    assert.equal(a.length, 14);
    for (const [path, l] of a) {
      assert.deepEqual(b.get(path)!.q.packed, l.q.packed, path);
      assert.deepEqual(c.get(path)!.q.packed, l.q.packed, path);
      assert.equal(b.get(path)!.q.nested!.offset, l.q.nested!.offset, path);
      assert.equal(c.get(path)!.q.dtype, "bfloat16");
    }
    const ids = tensor([1, 5, 9, 2, 7, 3], [1, 6], "i32");
    assert.deepEqual(streamed.forward(ids).data, mem.forward(ids).data);
  });

  test("refuses a checkpoint whose tensors do not match config.json, writing nothing", () => {
    const dir = mkdtempSync(join(tmpdir(), "lorakit-qbad-"));
    const base = tinyModel(13, { intermediate_size: 64 });
    saveModel(base, join(dir, "base"));
    const cfgPath = join(dir, "base", "config.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
    cfg.intermediate_size = 96;
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const main = join(process.cwd(), "dist/src/cli/main.js");
    const r = spawnSync(
      process.execPath,
      [main, "quantize", "--model", join(dir, "base"), "--out", join(dir, "q")],
      {
        encoding: "utf8",
      },
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /gate_proj\.weight has shape \[64, 32\] but config\.json implies \[96, 32\]/);
    assert.ok(!existsSync(join(dir, "q")) || readdirSync(join(dir, "q")).length === 0);
  });
});
