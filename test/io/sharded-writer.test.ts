// The streaming sharded writer: the same files as saveShardedSafetensors byte for byte,
// produce() called once per tensor in disk order, and failures that leave the folder as it was.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Tensor, tensor } from "../../src/core/tensor.js";
import type { RawTensor, SafetensorsEntry } from "../../src/io/index.js";
import { encodeTensor, SafetensorsError, serializeSafetensors } from "../../src/io/index.js";
import {
  openCheckpoint,
  planShards,
  saveShardedSafetensors,
  streamShardedSafetensors,
} from "../../src/io/node/index.js";

const root = mkdtempSync(join(tmpdir(), "lorakit-sw-"));
after(() => rmSync(root, { recursive: true, force: true }));
let k = 0;
const fresh = (): string => mkdtempSync(join(root, `d${k++}-`));

/** Every file of a folder with its bytes, for before/after comparisons. */
function snapshot(dir: string): Map<string, Buffer> {
  return new Map(
    readdirSync(dir)
      .sort()
      .map((f) => [f, readFileSync(join(dir, f))]),
  );
}

function isBadInputNaming(name: string) {
  return (e: unknown) =>
    e instanceof SafetensorsError && e.code === "bad_input" && e.message.includes(JSON.stringify(name));
}

// Mixed dtypes, so the data order inside a shard (dtype, then name) differs from the given
// order; names whose string order differs from their numeric order (layers.10 < layers.2).
const entries = (): Map<string, SafetensorsEntry> =>
  new Map<string, SafetensorsEntry>([
    ["model.layers.2.self_attn.q_proj.weight", tensor(new Float32Array(16).fill(2), [4, 4], "bf16")], // 32 B
    ["model.layers.10.self_attn.q_proj.weight", tensor(new Float32Array(16).fill(3), [4, 4], "bf16")], // 32 B
    ["model.layers.2.mask", { dtype: "U8", shape: [3], data: new Uint8Array([1, 0, 1]) }], // 3 B
    ["model.norm.weight", tensor([1, 2, 3, 4], [4], "bf16")], // 8 B
    [
      "model.embed_tokens.weight",
      tensor(
        Float32Array.from({ length: 64 }, (_, i) => i),
        [16, 4],
      ),
    ], // 256 B
    [
      "lm_head.weight",
      tensor(
        Float32Array.from({ length: 128 }, (_, i) => -i),
        [32, 4],
      ),
    ], // 512 B
  ]);

const rawsOf = (m: Map<string, SafetensorsEntry>): Map<string, RawTensor> =>
  new Map([...m].map(([n, t]) => [n, t instanceof Tensor ? encodeTensor(t) : t]));

const specsOf = (raws: Map<string, RawTensor>) =>
  [...raws].map(([name, r]) => ({ name, dtype: r.dtype, shape: r.shape }));

describe("planShards", () => {
  test("huggingface_hub's greedy split: an oversized tensor gets its own shard at once", () => {
    assert.deepEqual(planShards([256, 64, 128, 8, 512], 300), [[0], [4], [1, 2, 3]]);
    assert.deepEqual(planShards([100, 100, 100], 300), [[0, 1, 2]]);
    assert.deepEqual(planShards([100, 100, 101], 300), [[0, 1], [2]]);
    assert.deepEqual(planShards([], 300), [[]]);
  });
});

describe("streamShardedSafetensors", () => {
  for (const maxShardSize of [300, 5e9]) {
    test(`writes exactly what saveShardedSafetensors writes (maxShardSize ${maxShardSize})`, () => {
      const a = fresh();
      const b = fresh();
      const resA = saveShardedSafetensors(a, entries(), { maxShardSize });
      const raws = rawsOf(entries());
      const calls: { name: string; file: string; byteLength: number }[] = [];
      const resB = streamShardedSafetensors(
        b,
        specsOf(raws),
        (name, info) => {
          calls.push({ name, file: info.file, byteLength: info.byteLength });
          return raws.get(name)!.data;
        },
        { maxShardSize },
      );
      const sa = snapshot(a);
      const sb = snapshot(b);
      assert.deepEqual([...sb.keys()], [...sa.keys()]);
      for (const [f, bytes] of sa) assert.ok(bytes.equals(sb.get(f)!), `${f} differs`);
      assert.deepEqual(resB.index, resA.index);
      assert.deepEqual(
        resB.files.map((f) => f.slice(b.length)),
        resA.files.map((f) => f.slice(a.length)),
      );
      // Each tensor once, in disk order: shard by shard ([q2, q10, mask, norm] = 75 B, then
      // lm_head > max on its own at once, then embed), inside a shard by dtype then name.
      assert.equal(calls.length, raws.size);
      assert.equal(new Set(calls.map((c) => c.name)).size, raws.size);
      if (maxShardSize === 300) {
        assert.equal(sa.size, 4); // 3 shards + index
        assert.deepEqual(
          calls.map((c) => c.name),
          [
            "model.layers.10.self_attn.q_proj.weight",
            "model.layers.2.self_attn.q_proj.weight",
            "model.norm.weight",
            "model.layers.2.mask",
            "lm_head.weight",
            "model.embed_tokens.weight",
          ],
        );
        assert.deepEqual(
          calls.map((c) => c.file),
          [
            ...Array(4).fill("model-00001-of-00003.safetensors"),
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors",
          ],
        );
      } else assert.deepEqual([...sa.keys()], ["model.safetensors"]);
      for (const c of calls) assert.equal(c.byteLength, raws.get(c.name)!.data.length);
    });
  }

  test("each shard is what the in-memory serializer makes of its tensors; it reads back", () => {
    const dir = fresh();
    const raws = rawsOf(entries());
    const res = streamShardedSafetensors(dir, specsOf(raws), (n) => raws.get(n)!.data, { maxShardSize: 300 });
    const byShard = new Map<string, Map<string, RawTensor>>();
    for (const [name, shard] of Object.entries(res.index!.weight_map)) {
      if (!byShard.has(shard)) byShard.set(shard, new Map());
      byShard.get(shard)!.set(name, raws.get(name)!);
    }
    for (const [shard, m] of byShard)
      assert.deepEqual(
        new Uint8Array(readFileSync(join(dir, shard))),
        serializeSafetensors(m, { format: "pt" }),
        shard,
      );
    assert.equal(res.index!.metadata.total_size, 32 + 32 + 3 + 8 + 256 + 512);
    using ck = openCheckpoint(dir);
    assert.deepEqual(
      ck.tensor("lm_head.weight").toArray(),
      (entries().get("lm_head.weight") as Tensor).toArray(),
    );
    assert.deepEqual(ck.tensor("model.layers.2.mask").toArray(), [1, 0, 1]);
  });

  test("one reused buffer is enough: bytes are written before the next produce()", () => {
    const dir = fresh();
    const ref = fresh();
    const raws = rawsOf(entries());
    saveShardedSafetensors(ref, raws, { maxShardSize: 300 });
    const buf = new Uint8Array(512);
    streamShardedSafetensors(
      dir,
      specsOf(raws),
      (name, info) => {
        buf.fill(0xee); // anything left from the previous tensor would show
        buf.set(raws.get(name)!.data);
        return buf.subarray(0, info.byteLength);
      },
      { maxShardSize: 300 },
    );
    const a = snapshot(ref);
    const b = snapshot(dir);
    for (const [f, bytes] of a) assert.ok(bytes.equals(b.get(f)!), f);
  });

  test("a produce() with the wrong byte count names the tensor and leaves the folder as it was", () => {
    const dir = fresh();
    const raws = rawsOf(entries());
    saveShardedSafetensors(dir, raws, { maxShardSize: 300 }); // an earlier checkpoint
    const before = snapshot(dir);
    // The bad tensor is in the last shard: the first two shards are complete by then.
    const bad = "model.embed_tokens.weight";
    for (const wrong of [
      () => new Uint8Array(7),
      () => new Uint8Array(9),
      () => new Uint16Array(4) as unknown as Uint8Array,
    ])
      assert.throws(
        () =>
          streamShardedSafetensors(dir, specsOf(raws), (n) => (n === bad ? wrong() : raws.get(n)!.data), {
            maxShardSize: 300,
          }),
        isBadInputNaming(bad),
      );
    // Also into a fresh layout (one file) over the sharded one: nothing may change either.
    assert.throws(
      () =>
        streamShardedSafetensors(dir, specsOf(raws), (n) =>
          n === bad ? new Uint8Array(1) : raws.get(n)!.data,
        ),
      isBadInputNaming(bad),
    );
    const after = snapshot(dir);
    assert.deepEqual([...after.keys()], [...before.keys()], "no temporary or new files left");
    for (const [f, bytes] of before) assert.ok(bytes.equals(after.get(f)!), `${f} changed`);
  });

  test("an error thrown by produce() comes back unchanged; nothing is left", () => {
    const dir = fresh();
    const raws = rawsOf(entries());
    const boom = new RangeError("source tensor unreadable");
    assert.throws(
      () =>
        streamShardedSafetensors(
          dir,
          specsOf(raws),
          (n) => {
            if (n === "lm_head.weight") throw boom;
            return raws.get(n)!.data;
          },
          { maxShardSize: 300 },
        ),
      (e: unknown) => e === boom,
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  test("bad specs are refused before anything is written or produced", () => {
    const dir = fresh();
    let produced = 0;
    const produce = (): Uint8Array => {
      produced++;
      return new Uint8Array(4);
    };
    const ok = { name: "a", dtype: "F32" as const, shape: [1] };
    assert.throws(
      () => streamShardedSafetensors(dir, [ok, { ...ok }], produce, { maxShardSize: 1 }),
      isBadInputNaming("a"),
    );
    assert.throws(
      () => streamShardedSafetensors(dir, [ok, { name: "b", dtype: "F99" as never, shape: [1] }], produce),
      isBadInputNaming("b"),
    );
    assert.throws(
      () => streamShardedSafetensors(dir, [{ name: "c", dtype: "F32", shape: [-1] }], produce),
      isBadInputNaming("c"),
    );
    assert.throws(
      () => streamShardedSafetensors(dir, [ok], produce, { maxShardSize: 0 }),
      (e: unknown) => e instanceof SafetensorsError && e.code === "bad_input",
    );
    assert.equal(produced, 0);
    assert.deepEqual(readdirSync(dir), []);
  });

  test("a later save with fewer shards removes the stale shards and index", () => {
    const dir = fresh();
    const raws = rawsOf(entries());
    streamShardedSafetensors(dir, specsOf(raws), (n) => raws.get(n)!.data, { maxShardSize: 300 });
    assert.equal(readdirSync(dir).length, 4);
    streamShardedSafetensors(dir, specsOf(raws), (n) => raws.get(n)!.data);
    assert.deepEqual(readdirSync(dir), ["model.safetensors"]);
    streamShardedSafetensors(dir, [], () => new Uint8Array(0));
    assert.deepEqual(readdirSync(dir), ["model.safetensors"]);
    assert.deepEqual(
      new Uint8Array(readFileSync(join(dir, "model.safetensors"))),
      serializeSafetensors({}, { format: "pt" }),
    );
  });
});
