// Shape ops: reshape, permute / transpose, slice, concat.
import { backend } from "../engine.js";
import { fmtShape, ShapeError } from "../errors.js";
import type { Tensor } from "../tensor.js";
import { asFloat, empty, numel, zeros } from "../tensor.js";
import type { T } from "./util.js";
import { commonFloat, floatData, maybeRecord, normAxis } from "./util.js";

/** Same data, new shape; one dimension may be -1. Shares storage (no copy). */
export function reshape(x: Tensor, shape: readonly number[]): T {
  const t = asFloat(x, "reshape");
  const s = [...shape];
  const unknown = s.indexOf(-1);
  if (unknown >= 0) {
    if (s.indexOf(-1, unknown + 1) >= 0)
      throw new ShapeError(`reshape: only one -1 allowed in ${fmtShape(shape)}`);
    const rest = numel(s.filter((_, i) => i !== unknown));
    if (rest === 0 || t.size % rest !== 0)
      throw new ShapeError(
        `reshape: cannot reshape ${fmtShape(t.shape)} (${t.size} elements) into ${fmtShape(shape)}`,
      );
    s[unknown] = t.size / rest;
  }
  if (numel(s) !== t.size)
    throw new ShapeError(
      `reshape: cannot reshape ${fmtShape(t.shape)} (${t.size} elements) into ${fmtShape(shape)}`,
    );
  const out = t.view(s);
  return maybeRecord(out, "reshape", [t], (dy) => [dy.view(t.shape)]);
}

/** Reorders dimensions: out.shape[i] = x.shape[perm[i]]. */
export function permute(x: Tensor, perm: readonly number[]): T {
  const t = asFloat(x, "permute");
  const p = perm.map((a) => normAxis("permute", a, t.rank));
  if (p.length !== t.rank || new Set(p).size !== p.length)
    throw new ShapeError(
      `permute: ${JSON.stringify(perm)} is not a permutation of the ${t.rank} dims of ${fmtShape(t.shape)}`,
    );
  const outShape = p.map((a) => t.shape[a]);
  const out = empty(outShape, t.dtype);
  backend().permute(floatData(t), t.shape, p, floatData(out));
  const inv = new Array<number>(p.length);
  for (let i = 0; i < p.length; i++) inv[p[i]] = i;
  return maybeRecord(out, "permute", [t], (dy) => {
    const dx = empty(t.shape, t.dtype);
    backend().permute(floatData(dy), outShape, inv, floatData(dx));
    return [dx];
  });
}

/** Swaps two dimensions (last two by default). */
export function transpose(x: Tensor, dim0 = -2, dim1 = -1): T {
  const a = normAxis("transpose", dim0, x.rank);
  const b = normAxis("transpose", dim1, x.rank);
  const perm = x.shape.map((_, i) => i);
  perm[a] = b;
  perm[b] = a;
  return permute(x, perm);
}

function axisView(shape: readonly number[], axis: number): [number, number, number] {
  let outer = 1;
  let inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return [outer, shape[axis], inner];
}

/** Elements [start, end) along `axis` (negative indices count from the end). */
export function slice(x: Tensor, axis: number, start: number, end?: number): T {
  const t = asFloat(x, "slice");
  const ax = normAxis("slice", axis, t.rank);
  const len = t.shape[ax];
  const s = start < 0 ? start + len : start;
  const e = end === undefined ? len : end < 0 ? end + len : end;
  if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e > len || s > e)
    throw new ShapeError(
      `slice: range [${start}, ${end ?? len}) is out of bounds for axis ${axis} of size ${len} in ${fmtShape(t.shape)}`,
    );
  const [outer, , inner] = axisView(t.shape, ax);
  const outShape = [...t.shape];
  outShape[ax] = e - s;
  const out = empty(outShape, t.dtype);
  backend().copyAxis(floatData(t), outer, len, inner, s, floatData(out), e - s, 0, e - s, false);
  return maybeRecord(out, "slice", [t], (dy) => {
    const dx = zeros(t.shape, t.dtype);
    backend().copyAxis(floatData(dy), outer, e - s, inner, 0, floatData(dx), len, s, e - s, true);
    return [dx];
  });
}

/** Joins tensors along `axis`; all other dimensions must match. */
export function concat(xs: readonly Tensor[], axis = 0): T {
  if (xs.length === 0) throw new ShapeError("concat: needs at least one tensor");
  const dtype = commonFloat("concat", ...xs);
  const first = xs[0];
  const ax = normAxis("concat", axis, first.rank);
  let total = 0;
  for (const x of xs) {
    if (x.rank !== first.rank || x.shape.some((d, i) => i !== ax && d !== first.shape[i]))
      throw new ShapeError(
        `concat: ${fmtShape(x.shape)} does not match ${fmtShape(first.shape)} outside axis ${axis}`,
      );
    total += x.shape[ax];
  }
  const outShape = [...first.shape];
  outShape[ax] = total;
  const out = empty(outShape, dtype);
  const [outer, , inner] = axisView(outShape, ax);
  let at = 0;
  const starts: number[] = [];
  for (const x of xs) {
    starts.push(at);
    const n = x.shape[ax];
    backend().copyAxis(floatData(x as T), outer, n, inner, 0, floatData(out), total, at, n, false);
    at += n;
  }
  return maybeRecord(out, "concat", xs, (dy, needs) =>
    xs.map((x, i) => {
      if (!needs[i]) return null;
      const n = x.shape[ax];
      const dx = empty(x.shape, dtype);
      backend().copyAxis(floatData(dy), outer, total, inner, starts[i], floatData(dx), n, 0, n, false);
      return dx;
    }),
  );
}
