import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { Tensor } from "../../src/core/tensor.js";
import { tensor } from "../../src/core/tensor.js";
import {
  encodeTensor,
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
} from "../../src/io/index.js";
import {
  openCheckpoint,
  openSafetensors,
  pythonJsonDumps,
  saveSafetensors,
  saveShardedSafetensors,
} from "../../src/io/node/index.js";

const root = mkdtempSync(join(tmpdir(), "lorakit-st-"));
after(() => rmSync(root, { recursive: true, force: true }));
let k = 0;
const fresh = (): string => {
  const d = join(root, `d${k++}`);
  return mkdtempSync(`${d}-`);
};

function isCode(code: string) {
  return (e: unknown) => e instanceof SafetensorsError && e.code === code;
}

describe("safetensors files", () => {
  test("saveSafetensors writes the same bytes as serializeSafetensors, atomically", () => {
    const dir = fresh();
    const tensors = { w: tensor([1, 2, 3, 4], [2, 2], "bf16"), b: tensor([0.5], [1]) };
    const p = join(dir, "a.safetensors");
    saveSafetensors(p, tensors);
    assert.deepEqual(new Uint8Array(readFileSync(p)), serializeSafetensors(tensors, { format: "pt" }));
    assert.deepEqual(readdirSync(dir), ["a.safetensors"], "no temp file left behind");
    saveSafetensors(p, { only: tensor([9], [1]) }, null);
    assert.deepEqual(parseSafetensors(new Uint8Array(readFileSync(p))).names(), ["only"]);
    assert.equal(parseSafetensors(new Uint8Array(readFileSync(p))).metadata, null);
  });

  test("a failed write leaves the old file and no temp file", () => {
    const dir = fresh();
    const p = join(dir, "a.safetensors");
    saveSafetensors(p, { x: tensor([1], [1]) });
    const before = readFileSync(p);
    assert.throws(
      () => saveSafetensors(p, { y: { dtype: "F32", shape: [2], data: new Uint8Array(3) } }),
      isCode("bad_input"),
    );
    assert.deepEqual(readFileSync(p), before);
    assert.deepEqual(readdirSync(dir), ["a.safetensors"]);
  });

  test("lazy read: header at open, one tensor at a time, in any order", () => {
    const dir = fresh();
    const p = join(dir, "m.safetensors");
    const big = new Float32Array(1 << 16).map((_, i) => i);
    saveSafetensors(p, {
      big: tensor(big, [256, 256]),
      ids: encodeTensor(tensor([5, 6], [2], "i32"), "I64"),
      h: tensor([1, 2], [2], "f16"),
    });
    const f = openSafetensors(p);
    try {
      assert.deepEqual(f.names(), ["ids", "big", "h"]);
      assert.deepEqual(f.info("big").shape, [256, 256]);
      assert.deepEqual(f.tensor("h", { dtype: "f32" }).toArray(), [1, 2]);
      assert.deepEqual(f.tensor("ids").toArray(), [5, 6]);
      const t = f.tensor("big");
      assert.equal(t.data[65535], 65535);
      assert.deepEqual([...f.raw("h")], [0x00, 0x3c, 0x00, 0x40]);
      assert.throws(() => f.tensor("nope"), isCode("tensor_not_found"));
    } finally {
      f.close();
    }
    assert.throws(() => f.tensor("h"), isCode("io"));
  });

  test("a file truncated after open is an io error, not a short tensor", () => {
    const dir = fresh();
    const p = join(dir, "m.safetensors");
    saveSafetensors(p, { a: tensor([1, 2, 3, 4], [4]) });
    const f = openSafetensors(p);
    try {
      truncateSync(p, 40);
      assert.throws(() => f.tensor("a"), isCode("io"));
    } finally {
      f.close();
    }
  });

  test("malformed files name the path", () => {
    const dir = fresh();
    const p = join(dir, "bad.safetensors");
    writeFileSync(p, new Uint8Array([1, 2, 3]));
    assert.throws(
      () => openSafetensors(p),
      (e: unknown) => isCode("too_short")(e) && (e as Error).message.includes(p),
    );
    writeFileSync(p, new Uint8Array([255, 0, 0, 0, 0, 0, 0, 0, 123]));
    assert.throws(() => openSafetensors(p), isCode("header_beyond_file"));
    assert.throws(() => openSafetensors(join(dir, "missing.safetensors")), isCode("io"));
  });
});

describe("sharded checkpoints", () => {
  const entries = () =>
    new Map<string, Tensor>([
      ["model.embed_tokens.weight", tensor(new Float32Array(64).fill(1), [16, 4])], // 256 B
      ["model.layers.0.self_attn.q_proj.weight", tensor(new Float32Array(16).fill(2), [4, 4])], // 64 B
      ["model.layers.0.mlp.up_proj.weight", tensor(new Float32Array(32).fill(3), [8, 4])], // 128 B
      ["model.norm.weight", tensor([1, 2, 3, 4], [4], "bf16")], // 8 B
      ["lm_head.weight", tensor(new Float32Array(128).fill(5), [32, 4])], // 512 B
    ]);

  test("write shards like transformers, read them back lazily", () => {
    const dir = fresh();
    const res = saveShardedSafetensors(dir, entries(), { maxShardSize: 300 });
    // huggingface_hub's split_state_dict_into_shards_factory, greedy in order: [embed 256];
    // q 64 starts a new shard [q, up 128, norm 8 = 200]; lm_head 512 > max gets its own shard,
    // appended at once, so it comes before the still-open [q, up, norm].
    assert.deepEqual(readdirSync(dir).sort(), [
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
      "model.safetensors.index.json",
    ]);
    const indexText = readFileSync(join(dir, "model.safetensors.index.json"), "utf8");
    assert.equal(
      indexText,
      `{
  "metadata": {
    "total_size": 968
  },
  "weight_map": {
    "lm_head.weight": "model-00002-of-00003.safetensors",
    "model.embed_tokens.weight": "model-00001-of-00003.safetensors",
    "model.layers.0.mlp.up_proj.weight": "model-00003-of-00003.safetensors",
    "model.layers.0.self_attn.q_proj.weight": "model-00003-of-00003.safetensors",
    "model.norm.weight": "model-00003-of-00003.safetensors"
  }
}
`,
    );
    assert.equal(res.files.length, 3);
    const ck = openCheckpoint(dir);
    try {
      assert.equal(ck.names().length, 5);
      assert.equal(ck.indexMetadata?.total_size, 968);
      assert.match(ck.info("model.norm.weight").file, /model-00003-of-00003/);
      assert.deepEqual(ck.tensor("model.norm.weight", { dtype: "f32" }).toArray(), [1, 2, 3, 4]);
      for (const [name, t] of entries()) assert.deepEqual(ck.tensor(name).toArray(), t.toArray());
      assert.deepEqual({ ...ck.fileMetadata("lm_head.weight") }, { format: "pt" });
    } finally {
      ck.close();
    }
    // saving again into one file removes the stale shards and index
    saveShardedSafetensors(dir, entries());
    assert.deepEqual(readdirSync(dir), ["model.safetensors"]);
    const single = openCheckpoint(dir);
    assert.equal(single.names().length, 5);
    assert.equal(single.indexMetadata, null);
    single.close();
  });

  test("index problems are bad_index errors", () => {
    const dir = fresh();
    saveShardedSafetensors(dir, entries(), { maxShardSize: 300 });
    const ip = join(dir, "model.safetensors.index.json");
    const index = JSON.parse(readFileSync(ip, "utf8"));
    index.weight_map["ghost.weight"] = "model-00001-of-00003.safetensors";
    writeFileSync(ip, JSON.stringify(index));
    assert.throws(
      () => openCheckpoint(dir),
      (e: unknown) => isCode("bad_index")(e) && /ghost/.test((e as Error).message),
    );
    index.weight_map = { "a.weight": "../../etc/passwd" };
    writeFileSync(ip, JSON.stringify(index));
    assert.throws(() => openCheckpoint(ip), isCode("bad_index"));
    writeFileSync(ip, "{not json");
    assert.throws(() => openCheckpoint(ip), isCode("bad_index"));
    index.weight_map = { "a.weight": "missing.safetensors" };
    writeFileSync(ip, JSON.stringify(index));
    assert.throws(() => openCheckpoint(ip), isCode("io"));
  });

  test("a folder without a checkpoint says what it found", () => {
    const dir = fresh();
    saveSafetensors(join(dir, "adapter_model.safetensors"), { a: tensor([1], [1]) });
    assert.throws(
      () => openCheckpoint(dir),
      (e: unknown) => isCode("io")(e) && /adapter_model/.test((e as Error).message),
    );
  });

  test("pythonJsonDumps matches json.dumps(indent=2, sort_keys=True)", () => {
    assert.equal(
      pythonJsonDumps({ b: 1, a: { é: "x" } }),
      '{\n  "a": {\n    "\\u00e9": "x"\n  },\n  "b": 1\n}',
    );
  });
});
