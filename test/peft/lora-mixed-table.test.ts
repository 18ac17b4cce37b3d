// A mixed-adapter batch runs through the layer's table of adapters (LoraLinear.adapterTable):
// the adapters' A and B arrays, kept between calls (by address on the native backend) and
// rebuilt when arraysGeneration() moves. Every way an adapter's weights can change must show
// in the next batch: a replaced parameter, an in-place write, a deleted and re-added adapter,
// a weight packed and unpacked, another backend; and the rows' grouping, shared by the layers
// of one forward, must follow a names array refilled in place.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { backend, noGrad, setBackend } from "../../src/core/engine.js";
import { arraysGeneration, tidy } from "../../src/core/memory.js";
import { Rng, randNormal } from "../../src/core/rng.js";
import type { Tensor } from "../../src/core/tensor.js";
import { tensor } from "../../src/core/tensor.js";
import { availableBackends } from "../../src/kernels/select.js";
import { Linear } from "../../src/nn/layers.js";
import { DoraVariant } from "../../src/peft/lora/dora.js";
import { BASE_ROW, LoraLinear } from "../../src/peft/lora/layer.js";

const [IN, OUT, R] = [24, 20, 4];
const rng = new Rng(71);
const backends = await availableBackends();

function adapterSpec(scale = 0.3) {
  return {
    r: R,
    alpha: 8,
    dropout: 0,
    useRslora: false,
    loraBias: false,
    A: randNormal(rng, [R, IN], 0, scale),
    B: randNormal(rng, [OUT, R], 0, scale),
  };
}

function layer(): LoraLinear {
  const l = new LoraLinear(new Linear(IN, OUT, { rng }));
  for (const n of ["a0", "a1", "a2"]) l.addAdapter(n, adapterSpec());
  return l;
}

/** The values of a forward, run without a graph, its temporaries released. */
function values(fn: () => Tensor): Float32Array {
  let out = new Float32Array(0);
  noGrad(() =>
    tidy(() => {
      out = Float32Array.from(fn().data as Float32Array);
    }),
  );
  return out;
}

/** The batch through the mixed path (rows' adapters), as values. */
function mixed(l: LoraLinear, x: Tensor, rows: readonly string[]): Float32Array {
  l.rowAdapters = rows;
  try {
    return values(() => l.forward(x));
  } finally {
    l.rowAdapters = null;
  }
}

/** Each row through the single-adapter path (no table), as values. */
function perRow(l: LoraLinear, x: Tensor, rows: readonly string[]): Float32Array {
  const out = new Float32Array(rows.length * OUT);
  const xd = x.data as Float32Array;
  rows.forEach((n, i) => {
    l.activeAdapters = n === BASE_ROW ? [] : [n];
    const xi = tensor(xd.slice(i * IN, (i + 1) * IN), [1, IN]);
    out.set(
      values(() => l.forward(xi)),
      i * OUT,
    );
  });
  l.activeAdapters = [];
  return out;
}

function assertClose(got: Float32Array, want: Float32Array, what: string): void {
  for (let i = 0; i < want.length; i++)
    assert.ok(
      Math.abs(got[i] - want[i]) <= 1e-5 * (1 + Math.abs(want[i])),
      `${what}: y[${i}] ${got[i]} vs ${want[i]}`,
    );
}

for (const be of backends)
  describe(`a mixed batch follows its adapters' weights (${be.name})`, () => {
    const rows = ["a1", "a0", BASE_ROW, "a2", "a1", "a0"];
    const x = randNormal(rng, [rows.length, IN]);
    const withBackend = (fn: () => void) => {
      const prev = setBackend(be);
      try {
        fn();
      } finally {
        setBackend(prev);
      }
    };

    test("equals each row run alone, and the same bits as the row alone in a mixed batch", () =>
      withBackend(() => {
        const l = layer();
        const y = mixed(l, x, rows);
        assertClose(y, perRow(l, x, rows), "batch vs rows");
        rows.forEach((n, i) => {
          const xi = tensor((x.data as Float32Array).slice(i * IN, (i + 1) * IN), [1, IN]);
          const alone = mixed(l, xi, [n]);
          for (let c = 0; c < OUT; c++)
            assert.ok(Object.is(alone[c], y[i * OUT + c]), `row ${i} (${n}) column ${c}`);
        });
      }));

    test("a replaced parameter, an in-place write, a re-added adapter", () =>
      withBackend(() => {
        const l = layer();
        mixed(l, x, rows); // builds the table
        l.lora_A.get("a1")!.setParam("weight", randNormal(rng, [R, IN], 0, 0.5));
        assertClose(mixed(l, x, rows), perRow(l, x, rows), "after setParam");
        const b2 = l.lora_B.get("a2")!.weight.data as Float32Array;
        for (let i = 0; i < b2.length; i++) b2[i] = -2 * b2[i] + 0.1;
        assertClose(mixed(l, x, rows), perRow(l, x, rows), "after an in-place write");
        l.deleteAdapter("a0");
        l.addAdapter("a0", adapterSpec(0.6));
        assertClose(mixed(l, x, rows), perRow(l, x, rows), "after delete and add");
        l.deleteAdapter("a2");
        const left = rows.map((n) => (n === "a2" ? BASE_ROW : n));
        assertClose(
          mixed(l, x, rows),
          perRow(l, x, left),
          "a deleted adapter's rows get the base layer alone",
        );
      }));

    test("a weight packed and then unpacked into a new array", () =>
      withBackend(() => {
        const l = layer();
        mixed(l, x, rows);
        const a = l.lora_A.get("a0")!.weight;
        const values = Float32Array.from(a.data as Float32Array);
        const packed = a.packWith(() => ({
          backend: "test",
          dtype: "f32",
          rows: R,
          cols: IN,
          byteLength: values.byteLength,
          unpack: (out: Float32Array | Uint16Array) => (out as Float32Array).set(values),
          gatherRows: () => {
            throw new Error("not an embedding");
          },
        }));
        assert.ok(packed);
        // The next batch reads a copy of the packed values (the weight stays packed); a write
        // through data unpacks it into a new array, which must show in the batch after.
        assertClose(mixed(l, x, rows), perRow(l, x, rows), "after packing");
        const d = a.data as Float32Array;
        for (let i = 0; i < d.length; i++) d[i] += 0.25;
        assertClose(mixed(l, x, rows), perRow(l, x, rows), "a write after unpacking");
      }));

    test("a DoRA adapter beside plain ones: its rows right, and no table rebuilt per batch", () =>
      withBackend(() => {
        const l = layer();
        l.addAdapter("d", { ...adapterSpec(), variant: new DoraVariant() });
        const withDora = ["d", "a1", "a0", "d", BASE_ROW, "a2"];
        const y = mixed(l, x, withDora);
        assertClose(y, perRow(l, x, withDora), "batch vs rows");
        // The variant packs its own frozen factors in its forward; the table never reads or
        // watches them, so repeated batches leave the count (and every layer's table) alone.
        mixed(l, x, withDora);
        const before = arraysGeneration();
        const again = mixed(l, x, withDora);
        assert.equal(arraysGeneration(), before);
        assert.deepEqual(again, y);
      }));

    test("a names array refilled in place regroups its rows", () =>
      withBackend(() => {
        const l = layer();
        const names = [...rows];
        const first = mixed(l, x, names);
        names.reverse();
        const second = mixed(l, x, names);
        assertClose(second, perRow(l, x, names), "refilled names");
        assert.notDeepEqual(first, second);
      }));
  });

describe("a layer's table follows the backend", {
  skip: backends.length < 2 ? "one backend here" : false,
}, () => {
  test("each backend gets its own preparation", () => {
    const l = layer();
    const rows = ["a0", "a2", "a1"];
    const x = randNormal(rng, [rows.length, IN]);
    const results = backends.map((be) => {
      const prev = setBackend(be);
      try {
        assert.equal(backend(), be);
        return mixed(l, x, rows);
      } finally {
        setBackend(prev);
      }
    });
    for (const y of results.slice(1)) assertClose(y, results[0], "backends agree");
  });
});
