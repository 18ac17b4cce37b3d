// Reductions over axes: sum, mean, max.
import { backend } from "../engine.js";
import { fmtShape, ShapeError } from "../errors.js";
import type { Tensor } from "../tensor.js";
import { asFloat, empty } from "../tensor.js";
import { rawUnary } from "./elementwise.js";
import type { T } from "./util.js";
import { floatData, maybeRecord, normAxis } from "./util.js";

function resolveAxes(op: string, x: Tensor, axes?: number | readonly number[]): number[] {
  if (axes === undefined) return x.shape.map((_, i) => i);
  const list = typeof axes === "number" ? [axes] : [...axes];
  const norm = [...new Set(list.map((a) => normAxis(op, a, x.rank)))].sort((a, b) => a - b);
  if (norm.length !== list.length) throw new ShapeError(`${op}: repeated axis in ${JSON.stringify(list)}`);
  return norm;
}

function keptShape(shape: readonly number[], axes: number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

function finalShape(shape: readonly number[], axes: number[], keepDims: boolean): number[] {
  return keepDims ? keptShape(shape, axes) : shape.filter((_, i) => !axes.includes(i));
}

function rawReduce(op: "sum" | "max", x: T, axes: number[]): T {
  const out = empty(keptShape(x.shape, axes), x.dtype);
  backend().reduce(op, floatData(x), x.shape, axes, floatData(out));
  return out;
}

function expandBack(g: T, x: T, axes: number[]): T {
  const kept = g.view(keptShape(x.shape, axes));
  const out = empty(x.shape, x.dtype);
  backend().broadcastTo(floatData(kept), kept.shape, floatData(out), x.shape);
  return out;
}

/** Sum over `axes` (all when omitted). */
export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): T {
  const t = asFloat(x, "sum");
  const ax = resolveAxes("sum", t, axes);
  const out = rawReduce("sum", t, ax).view(finalShape(t.shape, ax, keepDims));
  return maybeRecord(out, "sum", [t], (dy) => [expandBack(dy, t, ax)]);
}

/** Mean over `axes` (all when omitted). */
export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): T {
  const t = asFloat(x, "mean");
  const ax = resolveAxes("mean", t, axes);
  let count = 1;
  for (const a of ax) count *= t.shape[a];
  if (count === 0) throw new ShapeError(`mean: reducing over an empty axis of ${fmtShape(t.shape)}`);
  const s = rawReduce("sum", t, ax);
  const out = rawUnary("scale", s, 1 / count).view(finalShape(t.shape, ax, keepDims));
  return maybeRecord(out, "mean", [t], (dy) => [rawUnary("scale", expandBack(dy, t, ax), 1 / count)]);
}

/**
 * Maximum over `axes` (all when omitted). Like torch.amax, tied maxima share the
 * gradient equally.
 */
export function max(x: Tensor, axes?: number | readonly number[], keepDims = false): T {
  const t = asFloat(x, "max");
  const ax = resolveAxes("max", t, axes);
  const kept = rawReduce("max", t, ax);
  const out = kept.view(finalShape(t.shape, ax, keepDims));
  return maybeRecord(out, "max", [t], (dy) => {
    const b = backend();
    const mask = empty(t.shape, t.dtype);
    b.binary("eq", floatData(t), t.shape, floatData(kept), kept.shape, floatData(mask), t.shape);
    const count = rawReduce("sum", mask, ax);
    const share = empty(kept.shape, t.dtype);
    b.binary("div", floatData(dy), kept.shape, floatData(count), kept.shape, floatData(share), kept.shape);
    const dx = empty(t.shape, t.dtype);
    b.binary("mul", floatData(mask), t.shape, floatData(share), kept.shape, floatData(dx), t.shape);
    return [dx];
  });
}
