// Prepacked frozen weights on the native addon (native/src/prepack.cc): W is copied once into
// the panel layout the addon's GEMM kernels read (16 output columns × 256-deep k slices, in
// W's own dtype), and gemmPacked streams those panels. The row-major array is dropped by the
// tensor that owns the weight (core/memory.ts Storage.pack), so memory does not double; the
// panels go back to row-major bit for bit when anything reads the tensor's data.
import type { Backend, PackedGemmParams, PackedWeight } from "../../core/backend.js";
import { BackendError } from "../../core/errors.js";
import { alignedArrays } from "./aligned.js";

export interface PrepackAddon {
  /** The layout on this CPU ({ panel, slice }), or null where the addon has no prepacked kernels. */
  prepackLayout(): { panel: number; slice: number } | null;
  packedElements(rows: number, cols: number): number;
  prepackWeight(
    w: Float32Array | Uint16Array,
    rows: number,
    cols: number,
    out: Float32Array | Uint16Array,
  ): void;
  unpackWeight(
    packed: Float32Array | Uint16Array,
    rows: number,
    cols: number,
    out: Float32Array | Uint16Array,
  ): void;
  gatherPackedRows(
    packed: Float32Array | Uint16Array,
    rows: number,
    cols: number,
    ids: Int32Array,
    out: Float32Array,
  ): void;
  gemmPacked(
    m: number,
    n: number,
    k: number,
    a: Float32Array,
    packed: Float32Array | Uint16Array,
    c: Float32Array,
    alpha: number,
    beta: number,
  ): void;
  /** Products of one input a (m × k) by several packed weights (ws[i]: ns[i] × k), in one call. */
  gemmPackedShared(
    m: number,
    k: number,
    a: Float32Array,
    ws: (Float32Array | Uint16Array)[],
    ns: number[],
    cs: Float32Array[],
    alphas: number[],
    betas: number[],
  ): void;
}

/** The addon's prepack functions when it has them and this CPU has the kernels, else null. */
export function prepackAddonOf(addon: object): PrepackAddon | null {
  const a = addon as Partial<PrepackAddon>;
  if (
    typeof a.prepackLayout !== "function" ||
    typeof a.gemmPacked !== "function" ||
    typeof a.gemmPackedShared !== "function"
  )
    return null;
  return a.prepackLayout() ? (a as PrepackAddon) : null;
}

class NativePackedWeight implements PackedWeight {
  readonly backend = "native";
  readonly byteLength: number;
  constructor(
    private readonly addon: PrepackAddon,
    readonly panels: Float32Array | Uint16Array,
    readonly dtype: "f32" | "bf16",
    readonly rows: number,
    readonly cols: number,
  ) {
    this.byteLength = panels.byteLength;
  }
  unpack(out: Float32Array | Uint16Array): void {
    this.addon.unpackWeight(this.panels, this.rows, this.cols, out);
  }
  gatherRows(ids: Int32Array, out: Float32Array): void {
    this.addon.gatherPackedRows(this.panels, this.rows, this.cols, ids, out);
  }
}

function nativePanels(w: PackedWeight): NativePackedWeight {
  if (!(w instanceof NativePackedWeight))
    throw new BackendError(`native gemmPacked: the weight was packed by the ${w.backend} backend`);
  return w;
}

/** Backend.packWeight, gemmPacked and gemmPackedShared on the addon, or nothing where it has none. */
export function prepackKernels(
  addon: PrepackAddon | null,
): Pick<Backend, "packWeight" | "gemmPacked" | "gemmPackedShared"> {
  if (!addon) return {};
  // The kernels read the panels in place, a 64-byte vector at a time.
  const arrays = alignedArrays(addon);
  return {
    packWeight(w, rows, cols) {
      const n = addon.packedElements(rows, cols);
      const panels = w instanceof Uint16Array ? arrays.u16(n) : arrays.f32(n);
      addon.prepackWeight(w, rows, cols, panels);
      return new NativePackedWeight(addon, panels, w instanceof Uint16Array ? "bf16" : "f32", rows, cols);
    },
    gemmPacked(p: PackedGemmParams) {
      const w = nativePanels(p.w);
      addon.gemmPacked(p.m, w.rows, w.cols, p.a, w.panels, p.c, p.alpha, p.beta);
    },
    gemmPackedShared(ps: readonly PackedGemmParams[]) {
      if (ps.length === 0) return;
      const { m, a } = ps[0];
      const ws = ps.map((p) => nativePanels(p.w));
      const k = ws[0].cols;
      for (const [i, p] of ps.entries())
        if (p.a !== a || p.m !== m || ws[i].cols !== k)
          throw new BackendError("native gemmPackedShared: every product must have the same input (a, m, k)");
      addon.gemmPackedShared(
        m,
        k,
        a,
        ws.map((w) => w.panels),
        ws.map((w) => w.rows),
        ps.map((p) => p.c),
        ps.map((p) => p.alpha),
        ps.map((p) => p.beta),
      );
    },
  };
}
