// Data movement: broadcastTo, permute, copyAxis, gather, scatterAdd, where.
import type { FloatArray } from "../../core/backend.js";
import { broadcastStrides, contiguousStrides, RowIter } from "./strided.js";

// x: xShape -> out: outShape (equal rank; each x dim 1 or equal).
export function broadcastTo(
  x: FloatArray,
  xShape: readonly number[],
  out: FloatArray,
  outShape: readonly number[],
): void {
  const it = new RowIter(outShape, [contiguousStrides(outShape), broadcastStrides(xShape, outShape)]);
  const n = it.inner;
  const sx = it.innerStride[1];
  const off = it.off;
  for (let r = 0; r < it.rows; r++, it.next()) {
    const oo = off[0];
    const xo = off[1];
    if (sx === 0) out.fill(x[xo], oo, oo + n);
    else for (let i = 0; i < n; i++) out[oo + i] = x[xo + i];
  }
}

// x: shape -> out: [shape[perm[0]], shape[perm[1]], ...].
export function permute(
  x: FloatArray,
  shape: readonly number[],
  perm: readonly number[],
  out: FloatArray,
): void {
  const rank = shape.length;
  if (perm.length !== rank) throw new RangeError(`permute: perm [${perm}] does not match shape [${shape}]`);
  const seen = new Array<boolean>(rank).fill(false);
  for (const p of perm) {
    if (!Number.isInteger(p) || p < 0 || p >= rank || seen[p]) {
      throw new RangeError(`permute: perm [${perm}] is not a permutation of 0..${rank - 1}`);
    }
    seen[p] = true;
  }
  const xs = contiguousStrides(shape);
  const outShape = perm.map((p) => shape[p]);
  const xStrides = perm.map((p) => xs[p]);
  const it = new RowIter(outShape, [contiguousStrides(outShape), xStrides]);
  const n = it.inner;
  const sx = it.innerStride[1];
  const off = it.off;
  if (sx === 1) {
    for (let r = 0; r < it.rows; r++, it.next()) out.set(x.subarray(off[1], off[1] + n), off[0]);
    return;
  }
  for (let r = 0; r < it.rows; r++, it.next()) {
    const oo = off[0];
    const xo = off[1];
    for (let i = 0; i < n; i++) out[oo + i] = x[xo + i * sx];
  }
}

// x: (outer, srcAxis, inner), out: (outer, dstAxis, inner); rows [srcStart, +len) of x
// go to rows [dstStart, +len) of out, added when `accumulate`.
export function copyAxis(
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
  if (srcStart < 0 || srcStart + len > srcAxis || dstStart < 0 || dstStart + len > dstAxis) {
    throw new RangeError(
      `copyAxis: rows [${srcStart}, ${srcStart + len}) of ${srcAxis} to [${dstStart}, ${dstStart + len}) of ${dstAxis} are out of range`,
    );
  }
  const run = len * inner;
  for (let o = 0; o < outer; o++) {
    const xo = (o * srcAxis + srcStart) * inner;
    const oo = (o * dstAxis + dstStart) * inner;
    if (accumulate) for (let i = 0; i < run; i++) out[oo + i] += x[xo + i];
    else out.set(x.subarray(xo, xo + run), oo);
  }
}

// table: (V,C), idx: (N) -> out: (N,C).
export function gather(table: FloatArray, idx: Int32Array, C: number, out: FloatArray): void {
  const N = idx.length;
  for (let i = 0; i < N; i++) {
    const t = idx[i] * C;
    out.set(table.subarray(t, t + C), i * C);
  }
}

// dOut: (N,C), idx: (N) -> dTable: (V,C) added into.
export function scatterAdd(dOut: FloatArray, idx: Int32Array, C: number, dTable: FloatArray): void {
  const N = idx.length;
  for (let i = 0; i < N; i++) {
    const t = idx[i] * C;
    const s = i * C;
    for (let c = 0; c < C; c++) dTable[t + c] += dOut[s + c];
  }
}

// All of length n.
export function where(cond: Uint8Array, a: FloatArray, b: FloatArray, out: FloatArray): void {
  const n = out.length;
  for (let i = 0; i < n; i++) out[i] = cond[i] ? a[i] : b[i];
}
