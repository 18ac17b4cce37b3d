// NF4 dequantisation (a range of elements, as nf4Gemm's panels need it) and the nested-absmax
// expansion on the wasm module (c/layout.c): bit for bit the reference's (kernels/ref/nf4.ts).
// Only the bytes and blocks a range touches are copied in.
import type { Nf4Weight } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import type { WasmArena } from "./arena.js";
import type { KernelCalls } from "./calls.js";
import { needLength } from "./ops.js";

export function wasmNf4Dequant(
  ex: KernelCalls,
  arena: WasmArena,
  w: Nf4Weight,
  start: number,
  count: number,
  out: Float32Array,
): void {
  const total = w.outFeatures * w.inFeatures;
  if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > total)
    throw new RangeError(
      `nf4Dequant: elements [${start}, ${start + count}) are outside the weight's ${total}`,
    );
  // A code book shorter than 16 entries is the reference's to read past (NaN).
  if (count === 0 || w.quantMap.length < 16) {
    refBackend.nf4Dequant(w, start, count, out);
    return;
  }
  const bs = w.blocksize;
  const [p0, p1] = [start >> 1, ((start + count - 1) >> 1) + 1];
  const [b0, b1] = [Math.floor(start / bs), Math.floor((start + count - 1) / bs) + 1];
  needLength(
    "nf4Dequant",
    { packed: w.packed, scales: w.scales, out },
    { packed: p1, scales: b1, out: count },
  );
  arena.reset();
  try {
    const pa = arena.copyIn(w.packed, p0, p1 - p0);
    const sa = arena.copyIn(w.scales, b0, b1 - b0);
    const qa = arena.copyIn(w.quantMap, 0, 16);
    const oa = arena.alloc(count * 4);
    ex.wasm_nf4_dequant(pa, sa, bs, qa, start, count, oa);
    out.set(arena.view(out, oa, count));
  } finally {
    arena.reset();
  }
}

export function wasmNf4Scales(
  ex: KernelCalls,
  arena: WasmArena,
  q: Uint8Array,
  code: Float32Array,
  nestedAbsmax: Float32Array,
  nestedBlocksize: number,
  offset: number,
  out: Float32Array,
): void {
  const n = q.length;
  // A code book shorter than 256 entries is the reference's to read past (NaN).
  if (n === 0 || code.length < 256) {
    refBackend.nf4Scales(q, code, nestedAbsmax, nestedBlocksize, offset, out);
    return;
  }
  if (!Number.isInteger(nestedBlocksize) || nestedBlocksize < 1)
    throw new RangeError(`nf4Scales: nestedBlocksize must be a positive integer, got ${nestedBlocksize}`);
  needLength("nf4Scales", { nestedAbsmax, out }, { nestedAbsmax: Math.ceil(n / nestedBlocksize), out: n });
  arena.reset();
  try {
    const qa = arena.copyIn(q, 0, n);
    const ca = arena.copyIn(code, 0, 256);
    const na = arena.copyIn(nestedAbsmax, 0, Math.ceil(n / nestedBlocksize));
    const oa = arena.alloc(n * 4);
    ex.wasm_nf4_scales(qa, ca, na, nestedBlocksize, offset, oa, n);
    out.set(arena.view(out, oa, n));
  } finally {
    arena.reset();
  }
}
