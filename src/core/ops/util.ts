// Helpers shared by the ops: output allocation, graph recording, broadcasting.
import { record } from "../autograd.js";
import type { FloatArray } from "../backend.js";
import type { FloatDType } from "../dtype.js";
import { backend, isGradEnabled, noteUnrecorded } from "../engine.js";
import { DTypeError, fmtShape, IndexError, ShapeError } from "../errors.js";
import type { GradNode, Shape } from "../tensor.js";
import { asFloat, empty, full, numel, Tensor } from "../tensor.js";

export type T = Tensor<FloatDType>;
/** A tensor or a plain number (a scalar of the other operand's dtype). */
export type TensorLike = Tensor | number;

export function floatData(t: Tensor<FloatDType>): FloatArray {
  return t.data as FloatArray;
}

/** Checks that float inputs share one dtype and returns it. */
export function commonFloat(op: string, ...xs: Tensor[]): FloatDType {
  const d = asFloat(xs[0], op).dtype;
  for (const x of xs) {
    asFloat(x, op);
    if (x.dtype !== d)
      throw new DTypeError(
        `${op}: inputs have different dtypes (${d} and ${x.dtype}); convert one with .to()`,
      );
  }
  return d;
}

export function toTensor(v: TensorLike, dtype: FloatDType): T {
  return typeof v === "number" ? full([], v, dtype) : asFloat(v, "op");
}

/** Records a node on `out` when grad mode is on and some input requires grad. */
export function maybeRecord(
  out: T,
  op: string,
  inputs: readonly Tensor[],
  backward: GradNode["backward"],
): T {
  if (inputs.some((x) => x.requiresGrad)) {
    if (isGradEnabled()) record(out, { op, inputs, backward });
    else noteUnrecorded(); // a checkpoint's no-grad forward asks whether it reached a trainable tensor
  }
  return out;
}

export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank)
    throw new ShapeError(`${op}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  return a;
}

export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1;
    const db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1)
      throw new ShapeError(
        `${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together (dimension ${i}: ${da} vs ${db})`,
      );
    out.push(da === 1 ? db : da);
  }
  return out;
}

export function padShape(s: Shape, rank: number): number[] {
  return [...new Array(rank - s.length).fill(1), ...s];
}

/** Sums a broadcast gradient back down to `shape` (the inverse of broadcasting). */
export function sumToShape(g: T, shape: Shape): T {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const padded = padShape(shape, g.shape.length);
  const axes: number[] = [];
  for (let i = 0; i < g.shape.length; i++) if (padded[i] === 1 && g.shape[i] !== 1) axes.push(i);
  let out: T;
  if (axes.length === 0) out = g;
  else {
    out = empty(padded, g.dtype);
    backend().reduce("sum", floatData(g), g.shape, axes, floatData(out));
  }
  return out.view(shape);
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export { empty, full, numel, Tensor };

/**
 * The rows of `targets` that count (not `ignoreIndex`), in order; throws naming `op` when a
 * target is outside [0, V).
 */
export function activeTargetRows(
  op: string,
  targets: Int32Array,
  N: number,
  V: number,
  ignoreIndex: number,
): Int32Array {
  const active = new Int32Array(N);
  let count = 0;
  for (let i = 0; i < N; i++) {
    const c = targets[i];
    if (c === ignoreIndex) continue;
    if (c < 0 || c >= V)
      throw new IndexError(
        `${op}: target ${c} at row ${i} is outside [0, ${V}) (and not ignoreIndex ${ignoreIndex})`,
      );
    active[count++] = i;
  }
  return active.subarray(0, count);
}
