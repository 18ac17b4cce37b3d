// Corrupts a valid file thousands of ways and checks the one promise the parser makes:
// it either returns tensors whose bytes lie inside the file and match their shape, or it
// throws SafetensorsError. Never a RangeError, a TypeError, a hang, or a wrong-sized tensor.
import assert from "node:assert/strict";
import { test } from "node:test";
import { tensor } from "../../src/core/tensor.js";
import {
  encodeTensor,
  parseSafetensors,
  SAFETENSORS_BITS,
  SafetensorsError,
  serializeSafetensors,
} from "../../src/io/index.js";

/** mulberry32: a small seeded generator so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const valid = serializeSafetensors(
  {
    "model.embed_tokens.weight": tensor([1, 2, 3, 4, 5, 6], [3, 2], "bf16"),
    "model.norm.weight": tensor([1, 1], [2]),
    ids: encodeTensor(tensor([1, 2, 3], [3], "i32"), "I64"),
    mask: encodeTensor(tensor([1, 0], [2], "u8"), "BOOL"),
    scalar: tensor([7], [], "f64"),
  },
  { format: "pt" },
);
const headerLen = Number(new DataView(valid.buffer).getBigUint64(0, true));
const headerText = new TextDecoder().decode(valid.subarray(8, 8 + headerLen));

function withHeader(text: string, data: Uint8Array, lieLength?: number): Uint8Array {
  const h = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(lieLength ?? h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function mutate(r: () => number, i: number): Uint8Array {
  const int = (n: number) => Math.floor(r() * n);
  const data = valid.subarray(8 + headerLen);
  switch (i % 9) {
    case 0: // truncate anywhere
      return valid.slice(0, int(valid.length));
    case 1: {
      // flip random bytes anywhere (header mostly)
      const b = valid.slice();
      const k = 1 + int(4);
      for (let j = 0; j < k; j++) b[int(8 + headerLen)] ^= 1 << int(8);
      return b;
    }
    case 2: {
      // random bytes in the header
      const b = valid.slice();
      for (let j = 0; j < 1 + int(3); j++) b[8 + int(headerLen)] = int(256);
      return b;
    }
    case 3: {
      // lying offsets: replace one number in the header by another
      const nums = [...headerText.matchAll(/\d+/g)];
      const m = nums[int(nums.length)];
      const choices = [
        "0",
        "1",
        "7",
        "8",
        "9",
        "-1",
        "18446744073709551615",
        "9007199254740993",
        "1e3",
        "2.5",
        String(int(100)),
      ];
      const text =
        headerText.slice(0, m.index) +
        choices[int(choices.length)] +
        headerText.slice(m.index! + m[0].length);
      return withHeader(text, data);
    }
    case 4: {
      // lying header length
      const b = valid.slice();
      const choices = [
        0,
        1,
        7,
        headerLen - 1,
        headerLen + 1,
        headerLen + 8,
        valid.length,
        2 ** 32,
        2 ** 53,
        100_000_001,
      ];
      new DataView(b.buffer).setBigUint64(0, BigInt(choices[int(choices.length)]), true);
      return b;
    }
    case 5: {
      // huge shapes
      const shapes = [
        "[4294967296,4294967296]",
        "[9007199254740991]",
        "[0]",
        "[1,1,1,1,1,1]",
        "[]",
        "[3,2,0]",
        "[100000000000]",
      ];
      const text = headerText.replace(/"shape":\[[^\]]*\]/, () => `"shape":${shapes[int(shapes.length)]}`);
      return withHeader(text, data);
    }
    case 6: {
      // structural edits: delete or duplicate a slice of the header text
      const a = int(headerText.length);
      const b = a + int(20);
      const text =
        r() < 0.5
          ? headerText.slice(0, a) + headerText.slice(b)
          : headerText.slice(0, b) + headerText.slice(a, b) + headerText.slice(b);
      return withHeader(text, data);
    }
    case 7: {
      // change a dtype
      const names = ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "F4", "C64", "F8_E4M3", "X", ""];
      let k = int(5);
      const text = headerText.replace(/"dtype":"[A-Z0-9_]+"/g, (s) =>
        k-- === 0 ? `"dtype":"${names[int(names.length)]}"` : s,
      );
      return withHeader(text, data);
    }
    default: {
      // extra or missing data bytes
      const extra = int(17) - 8;
      const d =
        extra >= 0 ? new Uint8Array([...data, ...new Uint8Array(extra)]) : data.slice(0, data.length + extra);
      return withHeader(headerText, d);
    }
  }
}

test("3000 corrupted files: parse succeeds with in-bounds tensors or throws SafetensorsError", () => {
  const r = rng(1234);
  const codes = new Map<string, number>();
  let parsed = 0;
  for (let i = 0; i < 3000; i++) {
    const bytes = mutate(r, i);
    try {
      const v = parseSafetensors(bytes);
      parsed++;
      let end = v.header.dataStart;
      for (const name of v.names()) {
        const info = v.info(name);
        assert.ok(
          info.fileOffset >= v.header.dataStart && info.fileOffset + info.byteLength <= bytes.length,
          name,
        );
        assert.equal(info.fileOffset, end, "contiguous");
        end += info.byteLength;
        const n = info.shape.reduce((a, b) => a * b, 1);
        assert.equal((n * SAFETENSORS_BITS[info.dtype]) / 8, info.byteLength);
        try {
          const t = v.tensor(name);
          assert.equal(t.size, n);
        } catch (e) {
          if (!(e instanceof SafetensorsError)) throw e;
          codes.set(`tensor:${e.code}`, (codes.get(`tensor:${e.code}`) ?? 0) + 1);
        }
      }
      assert.equal(end, bytes.length);
    } catch (e) {
      if (!(e instanceof SafetensorsError)) {
        assert.fail(`case ${i}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      }
      assert.ok(e.message.length > 10);
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
  }
  // the corpus must exercise both outcomes and many error kinds
  assert.ok(parsed > 50, `parsed ${parsed}`);
  assert.ok(codes.size >= 12, [...codes.keys()].join(","));
});
