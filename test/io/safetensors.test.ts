import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { bf16ToF32, f16ToF32 } from "../../src/core/dtype.js";
import { fromArray, tensor } from "../../src/core/tensor.js";
import type { RawTensor, SafetensorsDType } from "../../src/io/index.js";
import {
  encodeTensor,
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
} from "../../src/io/index.js";

const enc = new TextEncoder();

/** 8-byte LE length + header text + data, built by hand. */
function build(header: string, data: number[] | Uint8Array = []): Uint8Array {
  const h = enc.encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function f32Bytes(values: number[]): number[] {
  return [...new Uint8Array(new Float32Array(values).buffer)];
}

function throwsCode(fn: () => unknown, code: string, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  });
}

describe("safetensors: byte layout of the Rust crate", () => {
  // Expected bytes copied from huggingface/safetensors safetensors/src/tensor.rs tests
  // (test_serialization, test_serialization_forced_alignement, test_empty).
  test("test_serialization: attn.0 F32 [1,2,3]", () => {
    const t = tensor([0, 1, 2, 3, 4, 5], [1, 2, 3]);
    const out = serializeSafetensors({ "attn.0": t });
    assert.deepEqual(
      [...out],
      [
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101,
        34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 50, 44, 51, 93, 44,
        34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125,
        0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
      ],
    );
  });

  test("test_serialization_forced_alignement: header padded with spaces", () => {
    const out = serializeSafetensors({ attn0: tensor([0, 1, 2, 3, 4, 5], [1, 1, 2, 3]) });
    assert.deepEqual(
      [...out],
      [
        72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116, 121, 112, 101, 34,
        58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58, 91, 49, 44, 49, 44, 50, 44, 51, 93,
        44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125,
        125, 32, 32, 32, 32, 32, 32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64,
        0, 0, 160, 64,
      ],
    );
  });

  test("test_empty: no tensors, with and without metadata", () => {
    assert.deepEqual(
      [...serializeSafetensors({})],
      [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32],
    );
    assert.deepEqual(
      [...serializeSafetensors({}, { framework: "pt" })],
      [
        40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95, 95, 34, 58, 123,
        34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112, 116, 34, 125, 125, 32, 32, 32, 32,
        32,
      ],
    );
    const v = parseSafetensors(serializeSafetensors({}, { framework: "pt" }));
    assert.deepEqual(v.names(), []);
    assert.deepEqual({ ...v.metadata }, { framework: "pt" });
  });

  test("tensors ordered by dtype (descending enum order) then name; metadata first", () => {
    const i64: RawTensor = { dtype: "I64", shape: [1], data: new Uint8Array([7, 0, 0, 0, 0, 0, 0, 0]) };
    const u8: RawTensor = { dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 3]) };
    const out = serializeSafetensors(
      {
        b: tensor([-1], [1], "i32"),
        d: u8,
        a: tensor([1.5, 2], [2]),
        c: tensor([1], [1], "bf16"),
        z: i64,
        y: tensor([0.25], [1], "f64"),
        aa: tensor([3], [1]),
      },
      { format: "pt", a: 'x"y' },
    );
    const header =
      '{"__metadata__":{"a":"x\\"y","format":"pt"},' +
      '"z":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},' +
      '"y":{"dtype":"F64","shape":[1],"data_offsets":[8,16]},' +
      '"a":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},' +
      '"aa":{"dtype":"F32","shape":[1],"data_offsets":[24,28]},' +
      '"b":{"dtype":"I32","shape":[1],"data_offsets":[28,32]},' +
      '"c":{"dtype":"BF16","shape":[1],"data_offsets":[32,34]},' +
      '"d":{"dtype":"U8","shape":[3],"data_offsets":[34,37]}}';
    const padded = header + " ".repeat((8 - (header.length % 8)) % 8);
    const data = [
      7,
      0,
      0,
      0,
      0,
      0,
      0,
      0, // z: I64 7
      0,
      0,
      0,
      0,
      0,
      0,
      0xd0,
      0x3f, // y: f64 0.25
      ...f32Bytes([1.5, 2]), // a
      ...f32Bytes([3]), // aa
      0xff,
      0xff,
      0xff,
      0xff, // b: i32 -1
      0x80,
      0x3f, // c: bf16 1.0
      1,
      2,
      3, // d
    ];
    assert.deepEqual([...out], [...build(padded, data)]);
    assert.equal((8 + padded.length) % 8, 0);
  });

  test("names sort by UTF-8 bytes (code points), as Rust's String::cmp", () => {
    // U+FF5E (3 UTF-8 bytes, EF BD 9E) sorts before U+1F600 (4 bytes, F0 ...), though its
    // UTF-16 code unit is larger than the surrogate D83D.
    const out = serializeSafetensors({ "\u{1F600}": tensor([1], [1]), "\uFF5E": tensor([2], [1]) });
    const v = parseSafetensors(out);
    assert.deepEqual(v.names(), ["\uFF5E", "\u{1F600}"]);
  });
});

describe("safetensors: round trips", () => {
  const cases: [SafetensorsDType, number[], string][] = [
    ["BOOL", [0, 1, 1, 0], "u8"],
    ["U8", [0, 7, 255], "u8"],
    ["I8", [-128, -1, 0, 127], "i32"],
    ["I16", [-32768, -2, 5, 32767], "i32"],
    ["U16", [0, 1, 65535], "i32"],
    ["I32", [-2147483648, -3, 9, 2147483647], "i32"],
    ["U32", [0, 1, 2147483647], "i32"],
    ["I64", [-2147483648, -1, 0, 2147483647], "i32"],
    ["U64", [0, 1, 2147483647], "i32"],
    ["F16", [0, -2, 0.5, 65504, 1 / 1024], "f16"],
    ["BF16", [0, -2, 0.5, 3.140625, 2 ** 100], "bf16"],
    ["F32", [0, -2.5, Math.fround(Math.PI), 1e-40], "f32"],
    ["F64", [0, -2.5, Math.PI, 1e-300], "f64"],
  ];
  for (const [dt, values, natural] of cases) {
    test(`${dt} → ${natural} and → f32`, () => {
      const src =
        dt === "F64"
          ? tensor(values, [values.length], "f64")
          : dt === "F32"
            ? tensor(values, [values.length])
            : tensor(values, [values.length], dt === "F16" ? "f16" : dt === "BF16" ? "bf16" : "i32");
      const raw = encodeTensor(src, dt);
      const bytes = serializeSafetensors({ t: raw, s: tensor([1, 2, 3, 4, 5, 6], [2, 3]) }, { format: "pt" });
      const v = parseSafetensors(bytes);
      assert.equal(v.info("t").dtype, dt);
      assert.deepEqual(v.info("t").shape, [values.length]);
      const t = v.tensor("t");
      assert.equal(t.dtype, natural);
      const decoded =
        natural === "f16"
          ? t.toArray().map(f16ToF32)
          : natural === "bf16"
            ? t.toArray().map(bf16ToF32)
            : t.toArray();
      const want = dt === "F32" ? values.map(Math.fround) : values;
      assert.deepEqual(decoded, want);
      assert.deepEqual(v.tensor("t", { dtype: "f32" }).toArray(), want.map(Math.fround));
      assert.deepEqual(v.tensor("s").toArray(), [1, 2, 3, 4, 5, 6]);
      assert.deepEqual(v.tensor("s").shape, [2, 3]);
      // raw bytes are what was written
      assert.deepEqual([...v.raw("t")], [...raw.data]);
    });
  }

  test("scalars and empty tensors", () => {
    const bytes = serializeSafetensors({ s: tensor([4], []), e: tensor([], [0, 3]) });
    const v = parseSafetensors(bytes);
    assert.deepEqual(v.tensor("s").shape, []);
    assert.equal(v.tensor("s").item(), 4);
    assert.deepEqual(v.tensor("e").shape, [0, 3]);
    assert.equal(v.tensor("e").size, 0);
  });

  test("bf16/f16 stay 16-bit storage unless f32 is asked", () => {
    const w = tensor([1, -0.5, 3.25], [3], "bf16");
    const v = parseSafetensors(serializeSafetensors({ w }));
    const kept = v.tensor("w");
    assert.equal(kept.dtype, "bf16");
    assert.ok(kept.data instanceof Uint16Array);
    assert.deepEqual(v.tensor("w", { dtype: "f32" }).toArray(), [1, -0.5, 3.25]);
    assert.equal(v.tensor("w", { dtype: "f16" }).dtype, "f16");
  });

  test("f32 written as BF16 rounds to nearest even", () => {
    const t = fromArray(new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8]), [2]);
    const v = parseSafetensors(serializeSafetensors({ t: encodeTensor(t, "BF16") }));
    assert.deepEqual(v.tensor("t", { dtype: "f32" }).toArray(), [1, 1 + 2 ** -6]);
  });

  test("tensors do not alias the file buffer", () => {
    const bytes = serializeSafetensors({ t: tensor([1, 2], [2]) });
    const t = parseSafetensors(bytes).tensor("t");
    bytes.fill(0, bytes.length - 8);
    assert.deepEqual(t.toArray(), [1, 2]);
  });

  test("a header written by another tool in any key order and unaligned still reads", () => {
    const header = `{"b":{"data_offsets":[4,6],"shape":[1],"dtype":"F16"}, "a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"__metadata__":{}}`;
    const v = parseSafetensors(build(header, [...f32Bytes([2]), 0x00, 0x3c]));
    assert.deepEqual(v.names(), ["a", "b"]);
    assert.equal(v.tensor("a").item(), 2);
    assert.deepEqual(v.tensor("b", { dtype: "f32" }).toArray(), [1]);
  });
});

describe("safetensors: refusals", () => {
  const ok = `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`;
  const data8 = f32Bytes([1, 2]);

  test("file shorter than 8 bytes", () => {
    throwsCode(() => parseSafetensors(new Uint8Array(5)), "too_short", /5 bytes/);
  });
  test("header length beyond the file", () => {
    const b = build(ok, data8);
    new DataView(b.buffer).setUint32(0, 1000, true);
    throwsCode(() => parseSafetensors(b), "header_beyond_file", /1000/);
  });
  test("header over 100 MB", () => {
    const b = build(ok, data8);
    new DataView(b.buffer).setUint32(4, 1, true);
    throwsCode(() => parseSafetensors(b), "header_too_large");
  });
  test("bad UTF-8", () => {
    const b = build(`{"\u00e9":1}`);
    b[10] = 0xff;
    throwsCode(() => parseSafetensors(b), "header_not_utf8");
  });
  test("bad JSON, and trailing garbage", () => {
    throwsCode(() => parseSafetensors(build(`{"a":`)), "header_not_json");
    throwsCode(() => parseSafetensors(build(`{} x`)), "header_not_json", /trailing/);
    throwsCode(() => parseSafetensors(build(`{}\0\0`)), "header_not_json");
    throwsCode(() => parseSafetensors(build(`${"[".repeat(100000)}`)), "header_not_json", /nesting/);
  });
  test("header not an object, entry not an object", () => {
    throwsCode(() => parseSafetensors(build(`[1,2]`)), "header_not_object");
    throwsCode(() => parseSafetensors(build(`{"a":3}`)), "header_not_object", /"a"/);
    throwsCode(
      () => parseSafetensors(build(`{"a":{"dtype":"F32","shape":[]}}`)),
      "header_not_object",
      /data_offsets/,
    );
  });
  test("unknown dtype names the dtype", () => {
    throwsCode(
      () => parseSafetensors(build(`{"a":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}}`, data8)),
      "unknown_dtype",
      /F128/,
    );
  });
  test("shape not a list of non-negative integers", () => {
    for (const s of [`[-1]`, `[1.0]`, `[2e0]`, `"2"`, `[[2]]`, `[null]`, `[99999999999999999999]`]) {
      assert.throws(
        () => parseSafetensors(build(`{"a":{"dtype":"F32","shape":${s},"data_offsets":[0,8]}}`, data8)),
        (e: unknown) =>
          e instanceof SafetensorsError && (e.code === "bad_shape" || e.code === "header_not_json"),
        s,
      );
    }
  });
  test("huge shape overflows", () => {
    throwsCode(
      () =>
        parseSafetensors(
          build(`{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, data8),
        ),
      "bad_shape",
    );
  });
  test("offsets: not two integers, reversed, out of range, overlapping, gaps, not covering", () => {
    const e = (o: string, d = data8) => build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":${o}}}`, d);
    throwsCode(() => parseSafetensors(e(`[0]`)), "bad_offsets");
    throwsCode(() => parseSafetensors(e(`[0,8,9]`)), "bad_offsets");
    throwsCode(() => parseSafetensors(e(`[8,0]`)), "bad_offsets");
    throwsCode(() => parseSafetensors(e(`[0,16]`)), "offsets_out_of_range", /16/);
    throwsCode(() => parseSafetensors(e(`[4,12]`, [...data8, 0, 0, 0, 0])), "offsets_gap", /0\.\.4/);
    throwsCode(() => parseSafetensors(e(`[0,8]`, [...data8, 1])), "data_not_covered", /1 bytes/);
    const two = `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`;
    throwsCode(() => parseSafetensors(build(two, data8)), "offsets_overlap", /"a"/);
  });
  test("shape × dtype size differs from the byte length", () => {
    throwsCode(
      () => parseSafetensors(build(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, data8)),
      "size_mismatch",
      /needs 12 bytes/,
    );
  });
  test("duplicate names", () => {
    const h = `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`;
    throwsCode(() => parseSafetensors(build(h, data8)), "duplicate_name", /"a"/);
  });
  test("metadata must be strings", () => {
    throwsCode(() => parseSafetensors(build(`{"__metadata__":{"n":1}}`)), "bad_metadata", /"n"/);
    throwsCode(() => parseSafetensors(build(`{"__metadata__":[]}`)), "bad_metadata");
  });
  test("__proto__ is just a name", () => {
    const v = parseSafetensors(build(`{"__proto__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, [9]));
    assert.deepEqual(v.tensor("__proto__").toArray(), [9]);
  });
  test("I64 beyond i32 is a range error, but converts to f32 exactly up to 2^53", () => {
    const raw: RawTensor = { dtype: "I64", shape: [1], data: new Uint8Array([0, 0, 0, 0, 1, 0, 0, 0]) };
    const v = parseSafetensors(serializeSafetensors({ t: raw }));
    throwsCode(() => v.tensor("t"), "value_out_of_range", /4294967296/);
    assert.deepEqual(v.tensor("t", { dtype: "f64" }).toArray(), [2 ** 32]);
  });
  test("FP8 parses but does not materialise; floats never truncate to ints", () => {
    const v = parseSafetensors(build(`{"q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}`, [1, 2]));
    assert.equal(v.info("q").byteLength, 2);
    throwsCode(() => v.tensor("q"), "unsupported_dtype", /F8_E4M3/);
    const w = parseSafetensors(serializeSafetensors({ w: tensor([1.5], [1]) }));
    throwsCode(() => w.tensor("w", { dtype: "i32" }), "unsupported_dtype");
  });
  test("missing tensor names similar ones", () => {
    const v = parseSafetensors(serializeSafetensors({ "model.lm_head.weight": tensor([1], [1]) }));
    throwsCode(() => v.tensor("lm_head.weight"), "tensor_not_found", /model\.lm_head\.weight/);
  });
  test("writer refuses bad input", () => {
    throwsCode(() => serializeSafetensors({ __metadata__: tensor([1], [1]) }), "bad_input");
    throwsCode(
      () => serializeSafetensors({ a: { dtype: "F32", shape: [3], data: new Uint8Array(8) } }),
      "bad_input",
    );
    throwsCode(() => encodeTensor(tensor([300], [1], "i32"), "U8"), "bad_input", /300/);
    throwsCode(() => encodeTensor(tensor([1.5], [1]), "I32"), "bad_input");
  });
});

test("a lorakit u8 tensor is written as U8, not mistaken for a raw entry", () => {
  const bytes = serializeSafetensors({ m: tensor([1, 0, 255], [3], "u8") });
  const back = parseSafetensors(bytes);
  assert.equal(back.info("m").dtype, "U8");
  assert.deepEqual(Array.from(back.tensor("m").data as Uint8Array), [1, 0, 255]);
});
