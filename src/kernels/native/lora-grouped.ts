// The grouped LoRA product of the native addon (native/src/lora_grouped.cc), as the native
// backend's loraGrouped and prepareLora call it.
import type { Backend, FloatArray, LoraGroupedParams, PreparedLora } from "../../core/backend.js";

export interface LoraGroupedAddon {
  /**
   * For each group g: h = f32(scales[g])·x[rows]·A_gᵀ, y[rows] += h·B_gᵀ, where the rows of
   * group g are rows[starts[g] .. starts[g+1]); each product is one call of the addon's GEMM.
   * With slots and addresses, group g uses adapter slots[g] (ranks and scales per adapter) and
   * reads its A and B at the addresses arrayAddresses gave; As and Bs are not read.
   */
  loraGroupedNT(
    x: Float32Array,
    y: Float32Array,
    inF: number,
    outF: number,
    rows: Int32Array,
    starts: Int32Array,
    As: Float32Array[],
    Bs: Float32Array[],
    ranks: Int32Array,
    scales: Float64Array,
    slots?: Int32Array,
    addresses?: Float64Array,
  ): void;
  /** Each array's data address and element count, two numbers per array. */
  arrayAddresses?(arrays: Float32Array[]): Float64Array;
}

/**
 * A and B of a layer's adapters by address (four numbers per adapter: A's address and
 * length, B's): a call with slots then reads no array object. It holds the arrays, so they
 * stay alive as long as it does; whoever made it rebuilds it when a tensor's array changes
 * (LoraLinear watches arraysGeneration()).
 */
interface NativePreparedLora extends PreparedLora {
  readonly backend: "native";
  readonly addresses: Float64Array;
  readonly arrays: readonly Float32Array[];
}

const NONE: Float32Array[] = [];

// Preparations this module made: the kernel reads raw addresses, so it takes no other object
// that merely says it is native.
const made = new WeakSet<object>();

function isNativePrepared(p: PreparedLora | null | undefined): p is NativePreparedLora {
  return p != null && made.has(p);
}

/**
 * Whether the arrays of the slots a call uses still have the lengths their addresses were
 * taken with: an ArrayBuffer transferred away (postMessage, structuredClone) leaves its arrays
 * empty, which nothing else would notice before the kernel read the old address.
 */
function stillThere(p: NativePreparedLora, slots: Int32Array): boolean {
  const { arrays, addresses } = p;
  for (const s of slots) {
    const a = arrays[2 * s];
    const b = arrays[2 * s + 1];
    if (a === undefined || b === undefined) return false; // out of range: the kernel says so
    if (a.length !== addresses[4 * s + 1] || b.length !== addresses[4 * s + 3]) return false;
  }
  return true;
}

/** loraGrouped and prepareLora of the native backend; Float64Array operands go to `ref`. */
export function loraKernels(
  ops: LoraGroupedAddon,
  ref: Backend,
): Pick<Backend, "loraGrouped" | "prepareLora"> {
  const arrays = (p: LoraGroupedParams) => {
    // Slots without a native preparation: the groups' own arrays, as the call without slots.
    const s = p.slots;
    if (!s) return { A: p.A, B: p.B, ranks: p.ranks, scales: p.scales };
    for (const a of s)
      if (!(a >= 0 && a < p.A.length))
        throw new RangeError(`loraGrouped: a slot (${a}) is not one of the ${p.A.length} adapters`);
    return {
      A: Array.from(s, (a) => p.A[a]),
      B: Array.from(s, (a) => p.B[a]),
      ranks: Int32Array.from(s, (a) => p.ranks[a]),
      scales: Float64Array.from(s, (a) => p.scales[a]),
    };
  };
  return {
    loraGrouped(p) {
      if (!(p.x instanceof Float32Array && p.y instanceof Float32Array)) return ref.loraGrouped(p);
      const { x, y, inFeatures, outFeatures, rows, starts } = p;
      if (p.slots && isNativePrepared(p.prepared) && stillThere(p.prepared, p.slots)) {
        ops.loraGroupedNT(
          x,
          y,
          inFeatures,
          outFeatures,
          rows,
          starts,
          NONE,
          NONE,
          p.ranks,
          p.scales,
          p.slots,
          p.prepared.addresses,
        );
        return;
      }
      const g = arrays(p);
      const all = (xs: readonly FloatArray[]): xs is Float32Array[] =>
        xs.every((a) => a instanceof Float32Array);
      if (!all(g.A) || !all(g.B)) return ref.loraGrouped(p);
      ops.loraGroupedNT(x, y, inFeatures, outFeatures, rows, starts, g.A, g.B, g.ranks, g.scales);
    },
    prepareLora(A, B) {
      if (!ops.arrayAddresses || A.length !== B.length) return null;
      const list: Float32Array[] = [];
      for (let i = 0; i < A.length; i++) {
        const a = A[i];
        const b = B[i];
        if (!(a instanceof Float32Array && b instanceof Float32Array)) return null;
        list.push(a, b);
      }
      const prepared: NativePreparedLora = {
        backend: "native",
        addresses: ops.arrayAddresses(list),
        arrays: list,
      };
      made.add(prepared);
      return prepared;
    },
  };
}
