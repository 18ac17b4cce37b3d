// permute, broadcastTo, copyAxis (accumulating), where and reduce on the wasm module (c/layout.c) for
// Float32Array operands; Float64Array calls, and the calls measured faster in the reference
// (see ROUTING in README's wasm section), go to the reference. The shapes are collapsed here
// (size-1 dims dropped, neighbours merged where every operand allows) so the module walks
// few dims. permute, broadcastTo and copyAxis are exact copies or f32 sums; reduce sums in
// f64, bit for bit the reference's when the innermost dim is kept (see c/layout.c).
import type { FloatArray, ReduceOp } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import { broadcastStrides, contiguousStrides, numel } from "../ref/strided.js";
import type { WasmArena } from "./arena.js";
import type { KernelCalls } from "./calls.js";
import { allF32, needLength } from "./ops.js";

/** c/layout.c's MAX_RANK: collapsed dims beyond it go to the reference. */
const MAX_RANK = 16;
/**
 * Runs at least this long are TypedArray.set (permute, copyAxis) or TypedArray.fill
 * (broadcastTo of one value) in the reference, faster than copying in and out here.
 */
const ROW_COPY_MIN = 64;

/** dims with strides (one list per operand), size-1 dims dropped and d−1, d merged where each operand's stride allows. */
function collapse(
  dims: readonly number[],
  strides: readonly (readonly number[])[],
): { dims: number[]; strides: number[][] } {
  const outDims: number[] = [];
  const outStr: number[][] = strides.map(() => []);
  for (let d = 0; d < dims.length; d++) {
    if (dims[d] === 1) continue;
    const last = outDims.length - 1;
    if (last >= 0 && strides.every((s, k) => outStr[k][last] === s[d] * dims[d])) {
      outDims[last] *= dims[d];
      for (let k = 0; k < strides.length; k++) outStr[k][last] = strides[k][d];
    } else {
      outDims.push(dims[d]);
      for (let k = 0; k < strides.length; k++) outStr[k].push(strides[k][d]);
    }
  }
  if (outDims.length === 0) {
    outDims.push(1);
    for (const s of outStr) s.push(0);
  }
  return { dims: outDims, strides: outStr };
}

/** out (contiguous, `dims`) = x read at strides `xstr`: the module's strided gather. */
function stridedCopy(
  ex: KernelCalls,
  arena: WasmArena,
  x: Float32Array,
  nx: number,
  out: Float32Array,
  dims: number[],
  xstr: number[],
): void {
  const n = numel(dims);
  arena.reset();
  try {
    const xa = arena.copyIn(x, 0, nx);
    const oa = arena.alloc(n * 4);
    const da = arena.copyIn(Int32Array.from(dims));
    const sa = arena.copyIn(Int32Array.from(xstr));
    ex.wasm_strided_copy(xa, oa, da, sa, dims.length, n);
    out.set(arena.view(out, oa, n));
  } finally {
    arena.reset();
  }
}

export function wasmPermute(
  ex: KernelCalls,
  arena: WasmArena,
  x: FloatArray,
  shape: readonly number[],
  perm: readonly number[],
  out: FloatArray,
): void {
  const rank = shape.length;
  const valid =
    perm.length === rank &&
    new Set(perm).size === rank &&
    perm.every((p) => Number.isInteger(p) && p >= 0 && p < rank);
  const n = numel(shape);
  if (!allF32([x, out]) || !valid || n === 0) {
    refBackend.permute(x, shape, perm, out); // also its RangeError for a bad perm
    return;
  }
  needLength("permute", { x, out }, { x: n, out: n });
  const xs = contiguousStrides(shape);
  const c = collapse(
    perm.map((p) => shape[p]),
    [perm.map((p) => xs[p])],
  );
  // A permutation that leaves whole rows in place (the innermost run contiguous in x) is
  // row copies, which the reference does with TypedArray.set: faster than copying in and out.
  if (
    c.dims.length > MAX_RANK ||
    (c.strides[0][c.dims.length - 1] === 1 && c.dims[c.dims.length - 1] >= ROW_COPY_MIN)
  ) {
    refBackend.permute(x, shape, perm, out);
    return;
  }
  stridedCopy(ex, arena, x as Float32Array, n, out as Float32Array, c.dims, c.strides[0]);
}

export function wasmBroadcastTo(
  ex: KernelCalls,
  arena: WasmArena,
  x: FloatArray,
  xShape: readonly number[],
  out: FloatArray,
  outShape: readonly number[],
): void {
  const n = numel(outShape);
  if (!allF32([x, out]) || n === 0) {
    refBackend.broadcastTo(x, xShape, out, outShape);
    return;
  }
  const xstr = broadcastStrides(xShape, outShape); // its RangeError for shapes that do not broadcast
  const nx = numel(xShape);
  needLength("broadcastTo", { x, out }, { x: nx, out: n });
  const c = collapse(outShape, [xstr]);
  // One value repeated along a long innermost run is TypedArray.fill in the reference.
  const last = c.dims.length - 1;
  if (c.dims.length > MAX_RANK || (c.strides[0][last] === 0 && c.dims[last] >= ROW_COPY_MIN)) {
    refBackend.broadcastTo(x, xShape, out, outShape);
    return;
  }
  stridedCopy(ex, arena, x as Float32Array, nx, out as Float32Array, c.dims, c.strides[0]);
}

export function wasmCopyAxis(
  ex: KernelCalls,
  arena: WasmArena,
  x: FloatArray,
  outer: number,
  srcAxis: number,
  inner: number,
  srcStart: number,
  out: FloatArray,
  dstAxis: number,
  dstStart: number,
  len: number,
  accumulate: boolean,
): void {
  const run = len * inner;
  // A plain copy is TypedArray.set per outer row in the reference: nothing to gain here.
  if (!accumulate || !allF32([x, out]) || run < ROW_COPY_MIN || outer * run === 0) {
    refBackend.copyAxis(x, outer, srcAxis, inner, srcStart, out, dstAxis, dstStart, len, accumulate);
    return;
  }
  if (srcStart < 0 || srcStart + len > srcAxis || dstStart < 0 || dstStart + len > dstAxis) {
    refBackend.copyAxis(x, outer, srcAxis, inner, srcStart, out, dstAxis, dstStart, len, accumulate); // its RangeError
    return;
  }
  needLength("copyAxis", { x, out }, { x: outer * srcAxis * inner, out: outer * dstAxis * inner });
  // Only the rows that take part come in, packed as (outer, run).
  arena.reset();
  try {
    const xa = arena.alloc(outer * run * 4);
    const oa = arena.alloc(outer * run * 4);
    const xv = arena.view(x as Float32Array, xa, outer * run);
    const ov = arena.view(out as Float32Array, oa, outer * run);
    for (let o = 0; o < outer; o++) {
      const xo = (o * srcAxis + srcStart) * inner;
      const oo = (o * dstAxis + dstStart) * inner;
      xv.set(x.subarray(xo, xo + run) as Float32Array, o * run);
      ov.set(out.subarray(oo, oo + run) as Float32Array, o * run);
    }
    ex.wasm_add_into(xa, oa, outer * run);
    const done = arena.view(out as Float32Array, oa, outer * run);
    for (let o = 0; o < outer; o++) {
      const oo = (o * dstAxis + dstStart) * inner;
      out.set(done.subarray(o * run, (o + 1) * run), oo);
    }
  } finally {
    arena.reset();
  }
}

export function wasmReduce(
  ex: KernelCalls,
  arena: WasmArena,
  op: ReduceOp,
  x: FloatArray,
  shape: readonly number[],
  axes: readonly number[],
  out: FloatArray,
): void {
  const rank = shape.length;
  const nx = numel(shape);
  const validAxes = axes.every((a) => Number.isInteger(a) && a >= 0 && a < rank);
  if (!allF32([x, out]) || !validAxes || nx === 0 || (op !== "sum" && op !== "max")) {
    refBackend.reduce(op, x, shape, axes, out); // also its RangeError for a bad axis or op
    return;
  }
  // Groups of neighbouring dims that are all reduced or all kept (x is contiguous, so any
  // such neighbours merge), size-1 dims dropped.
  const sizes: number[] = [];
  const reduced: boolean[] = [];
  for (let d = 0; d < rank; d++) {
    if (shape[d] === 1) continue;
    const red = axes.includes(d);
    if (sizes.length > 0 && reduced[reduced.length - 1] === red) sizes[sizes.length - 1] *= shape[d];
    else {
      sizes.push(shape[d]);
      reduced.push(red);
    }
  }
  if (sizes.length === 0) {
    sizes.push(1);
    reduced.push(false);
  }
  const g = sizes.length;
  const strides = new Array<number>(g);
  for (let i = g - 1, s = 1; i >= 0; i--) {
    strides[i] = s;
    s *= sizes[i];
  }
  const ksz = sizes.filter((_, i) => !reduced[i]);
  const kstr = strides.filter((_, i) => !reduced[i]);
  const rsz = sizes.filter((_, i) => reduced[i]);
  const rstr = strides.filter((_, i) => reduced[i]);
  const nout = numel(ksz);
  needLength("reduce", { x, out }, { x: nx, out: nout });
  if (g > MAX_RANK) {
    refBackend.reduce(op, x, shape, axes, out);
    return;
  }
  arena.reset();
  try {
    const xa = arena.copyIn(x as Float32Array, 0, nx);
    const oa = arena.alloc(nout * 4);
    const i32 = (a: number[]) => (a.length === 0 ? 0 : arena.copyIn(Int32Array.from(a)));
    const [ka, kb, ra, rb] = [i32(ksz), i32(kstr), i32(rsz), i32(rstr)];
    ex.wasm_reduce(
      op === "sum" ? 0 : 1,
      xa,
      ka,
      kb,
      ksz.length,
      ra,
      rb,
      rsz.length,
      reduced[g - 1] ? 1 : 0,
      oa,
      nout,
      nx,
    );
    out.set(arena.view(out as Float32Array, oa, nout));
  } finally {
    arena.reset();
  }
}

export function wasmWhere(
  ex: KernelCalls,
  arena: WasmArena,
  cond: Uint8Array,
  a: FloatArray,
  b: FloatArray,
  out: FloatArray,
): void {
  const n = out.length;
  if (!allF32([a, b, out]) || n === 0) {
    refBackend.where(cond, a, b, out);
    return;
  }
  needLength("where", { cond, a, b }, { cond: n, a: n, b: n });
  arena.reset();
  try {
    const ca = arena.copyIn(cond, 0, n);
    const aa = arena.copyIn(a as Float32Array, 0, n);
    const ba = arena.copyIn(b as Float32Array, 0, n);
    const oa = arena.alloc(n * 4);
    ex.wasm_where(ca, aa, ba, oa, n);
    out.set(arena.view(out as Float32Array, oa, n));
  } finally {
    arena.reset();
  }
}
