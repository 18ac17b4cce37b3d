// Loading in bounded memory: shape-only placeholders, the resident dtype of each tensor,
// metadata from headers alone, and clear errors before anything large is allocated.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { tensorBytes } from "../../src/core/memory.js";
import { tensor } from "../../src/core/tensor.js";
import { planSafetensorsLayout } from "../../src/io/safetensors.js";
import { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { describeCheckpoint, loadModel, residentWeightBytes, saveModel } from "../../src/models/node/load.js";
import { countBaseParams } from "../../src/peft/params.js";
import { tinyConfig, tinyModel } from "../util/tiny-model.js";

const main = join(process.cwd(), "dist/src/cli/main.js");

describe("loading in bounded memory", () => {
  test("a meta model has every shape and no memory; reading a placeholder says so", () => {
    const before = tensorBytes().live;
    const m = new LlamaForCausalLM(
      tinyConfig({
        hidden_size: 4096,
        intermediate_size: 11008,
        num_hidden_layers: 32,
        vocab_size: 32000,
        num_attention_heads: 32,
        num_key_value_heads: 32,
      }),
      { meta: true },
    );
    assert.equal(tensorBytes().live, before);
    let n = 0;
    for (const p of m.parameters()) n += p.size;
    assert.equal(n, 6_738_415_616);
    assert.throws(() => m.model.norm.weight.data, /shape-only placeholder/);
  });

  test("--dtype auto keeps a bf16 checkpoint in bf16 (embeddings and head too) with logits equal to f32", () => {
    const dir = mkdtempSync(join(tmpdir(), "lorakit-bf16-"));
    saveModel(tinyModel(3, { tie_word_embeddings: false }), dir, { dtype: "bf16" });
    const { model: auto } = loadModel(dir);
    const { model: f32 } = loadModel(dir, { dtype: "f32" });
    for (const [path, p] of auto.namedParameters()) {
      const matrix =
        path.endsWith("_proj.weight") || path.endsWith("embed_tokens.weight") || path === "lm_head.weight";
      assert.equal(p.dtype, matrix ? "bf16" : "f32", path);
    }
    for (const [, p] of f32.namedParameters()) assert.equal(p.dtype, "f32");
    // bf16 → f32 widening is exact and compute is f32 either way: identical logits.
    const ids = tensor([3, 1, 4, 1, 5, 9, 2, 6], [2, 4], "i32");
    assert.deepEqual(auto.forward(ids).data, f32.forward(ids).data);
    const sum = describeCheckpoint(dir);
    let bytes = 0;
    for (const [, p] of auto.namedParameters()) bytes += p.size * (p.dtype === "bf16" ? 2 : 4);
    assert.equal(residentWeightBytes(sum), bytes);
  });

  test("an f32 checkpoint stays f32 under auto; --dtype bf16 narrows the matrices", () => {
    const dir = mkdtempSync(join(tmpdir(), "lorakit-f32-"));
    saveModel(tinyModel(4), dir);
    const { model } = loadModel(dir);
    for (const [, p] of model.namedParameters()) assert.equal(p.dtype, "f32");
    const { model: b } = loadModel(dir, { dtype: "bf16" });
    assert.equal(b.model.layers.items[0].self_attn.q_proj.param("weight")!.dtype, "bf16");
    assert.equal(b.model.norm.weight.dtype, "f32");
  });

  test("info and memory read headers only: a sparse 7B-shaped checkpoint answers without reading a weight", () => {
    // Headers of LLaMA-2-7B's shapes over a sparse file: 13.5 GB that take no disk and hold
    // zeros. Reading the weights would take minutes and all of memory; headers take nothing.
    const dir = mkdtempSync(join(tmpdir(), "lorakit-sparse-"));
    const cfg = {
      model_type: "llama",
      hidden_size: 4096,
      intermediate_size: 11008,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 32,
      vocab_size: 32000,
      max_position_embeddings: 4096,
      torch_dtype: "bfloat16",
    };
    writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
    const m = new LlamaForCausalLM(tinyConfig(cfg), { meta: true });
    const specs = [...m.namedParameters()].map(([name, p]) => ({
      name,
      dtype: "BF16" as const,
      shape: p.shape,
    }));
    const layout = planSafetensorsLayout(specs, { format: "pt" });
    const fd = openSync(join(dir, "model.safetensors"), "w");
    writeSync(fd, layout.head);
    closeSync(fd);
    spawnSync("truncate", ["-s", String(layout.fileSize), join(dir, "model.safetensors")]);
    const info = spawnSync(process.execPath, [main, "info", "--model", dir, "--json"], { encoding: "utf8" });
    assert.equal(info.status, 0, info.stderr);
    const j = JSON.parse(info.stdout);
    assert.equal(j.parameters, countBaseParams(m.config));
    // Matrices stay bf16; the 65 norm weights are held in f32.
    assert.equal(j.resident_bytes, 2 * 6_738_415_616 + 65 * 4096 * 2);
    const mem = spawnSync(
      process.execPath,
      [
        main,
        "memory",
        "--model",
        dir,
        "--method",
        "qlora",
        "--batch-size",
        "1",
        "--seq-len",
        "512",
        "--max-memory",
        "6GiB",
        "--json",
      ],
      { encoding: "utf8" },
    );
    assert.equal(mem.status, 0, mem.stderr);
    const e = JSON.parse(mem.stdout);
    assert.equal(e.fits, true);
    assert.ok(e.weights > 3.4 * 2 ** 30 && e.weights < 3.8 * 2 ** 30, `NF4 weights ${e.weights}`);
    rmSync(dir, { recursive: true, force: true });
  });

  test("eval refuses a model whose weights exceed the memory available, before reading any", () => {
    // 44 B parameters of bf16 over a sparse file: 88 GB on paper, nothing on disk.
    const dir = mkdtempSync(join(tmpdir(), "lorakit-huge-"));
    const cfg = {
      model_type: "llama",
      hidden_size: 16384,
      intermediate_size: 65536,
      num_hidden_layers: 10,
      num_attention_heads: 128,
      num_key_value_heads: 128,
      vocab_size: 32000,
      max_position_embeddings: 4096,
      torch_dtype: "bfloat16",
    };
    writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
    const m = new LlamaForCausalLM(tinyConfig(cfg), { meta: true });
    const layout = planSafetensorsLayout(
      [...m.namedParameters()].map(([name, p]) => ({ name, dtype: "BF16" as const, shape: p.shape })),
      { format: "pt" },
    );
    const fd = openSync(join(dir, "model.safetensors"), "w");
    writeSync(fd, layout.head);
    closeSync(fd);
    spawnSync("truncate", ["-s", String(layout.fileSize), join(dir, "model.safetensors")]);
    writeFileSync(join(dir, "text.txt"), "some text to score");
    const r = spawnSync(process.execPath, [main, "eval", "--model", dir, "--text", join(dir, "text.txt")], {
      encoding: "utf8",
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /its weights take \d+\.\d+ GiB in memory but only .* is available/);
    rmSync(dir, { recursive: true, force: true });
  });

  test("a shard missing from the index fails before any weight is read, naming it", () => {
    const dir = mkdtempSync(join(tmpdir(), "lorakit-shards-"));
    saveModel(tinyModel(5), dir, { maxShardBytes: 4000 });
    const shard = readdirSync(dir).filter((f) => /^model-00002-of-\d{5}\.safetensors$/.test(f))[0];
    rmSync(join(dir, shard), { force: true });
    const named = new RegExp(shard.replace(/\./g, "\\."));
    assert.throws(() => loadModel(dir), named);
    assert.throws(() => describeCheckpoint(dir), named);
  });

  test("a config that does not match the weights fails naming the tensor", () => {
    const dir = mkdtempSync(join(tmpdir(), "lorakit-mismatch-"));
    saveModel(tinyModel(6), dir);
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        model_type: "llama",
        vocab_size: 48,
        hidden_size: 32,
        intermediate_size: 44,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 128,
      }),
    );
    assert.throws(
      () => loadModel(dir),
      /gate_proj\.weight: the checkpoint has shape \[40, 32\] but the model expects \[44, 32\]/,
    );
    assert.throws(
      () => loadModel(dir, { quantize: "nf4" }),
      /gate_proj\.weight: the checkpoint has shape \[40, 32\]/,
    );
  });
});
