// Sum / max over a set of axes, accumulating sums in f64.
import type { FloatArray, ReduceOp } from "../../core/backend.js";
import { SLOT, scratch } from "./scratch.js";
import { contiguousStrides, numel, RowIter } from "./strided.js";

// x: shape -> out: shape with `axes` set to 1.
export function reduce(
  op: ReduceOp,
  x: FloatArray,
  shape: readonly number[],
  axes: readonly number[],
  out: FloatArray,
): void {
  const rank = shape.length;
  const outShape = shape.slice();
  for (const ax of axes) {
    if (!Number.isInteger(ax) || ax < 0 || ax >= rank) {
      throw new RangeError(`reduce: axis ${ax} is out of range for shape [${shape}]`);
    }
    outShape[ax] = 1;
  }
  const outStrides = contiguousStrides(outShape);
  for (const ax of axes) outStrides[ax] = 0;
  const outN = numel(outShape);
  const it = new RowIter(shape, [contiguousStrides(shape), outStrides]);
  const n = it.inner;
  const so = it.innerStride[1];
  const off = it.off;
  if (op === "sum") {
    const acc = scratch(SLOT.acc, outN);
    acc.fill(0, 0, outN);
    for (let r = 0; r < it.rows; r++, it.next()) {
      const xo = off[0];
      const oo = off[1];
      if (so === 0) {
        let s = 0;
        for (let i = 0; i < n; i++) s += x[xo + i];
        acc[oo] += s;
      } else {
        for (let i = 0; i < n; i++) acc[oo + i] += x[xo + i];
      }
    }
    for (let i = 0; i < outN; i++) out[i] = acc[i];
    return;
  }
  if (op === "max") {
    // NaN wins, as torch.amax.
    out.fill(Number.NEGATIVE_INFINITY, 0, outN);
    for (let r = 0; r < it.rows; r++, it.next()) {
      const xo = off[0];
      const oo = off[1];
      if (so === 0) {
        let m = out[oo];
        for (let i = 0; i < n; i++) {
          const v = x[xo + i];
          if (v > m || Number.isNaN(v)) m = v;
          if (Number.isNaN(m)) break;
        }
        out[oo] = m;
      } else {
        for (let i = 0; i < n; i++) {
          const v = x[xo + i];
          const m = out[oo + i];
          if (v > m || Number.isNaN(v)) out[oo + i] = v;
        }
      }
    }
    return;
  }
  throw new RangeError(`reduce: unknown op ${op satisfies never}`);
}
