// Element-wise ops with broadcasting, forward and backward side by side.
import type { BinaryOp, UnaryOp } from "../backend.js";
import { backend } from "../engine.js";
import { fmtShape, ShapeError } from "../errors.js";
import type { Tensor } from "../tensor.js";
import { asFloat, empty } from "../tensor.js";
import type { T, TensorLike } from "./util.js";
import {
  broadcastShapes,
  commonFloat,
  floatData,
  maybeRecord,
  padShape,
  sameShape,
  sumToShape,
  toTensor,
} from "./util.js";

function rawBinary(op: BinaryOp, a: T, b: T, opName: string): T {
  const shape = broadcastShapes(opName, a.shape, b.shape);
  const out = empty(shape, a.dtype);
  backend().binary(
    op,
    floatData(a),
    padShape(a.shape, shape.length),
    floatData(b),
    padShape(b.shape, shape.length),
    floatData(out),
    shape,
  );
  return out;
}

function operands(op: string, a: TensorLike, b: TensorLike): [T, T] {
  const dtype =
    typeof a !== "number" ? asFloat(a, op).dtype : typeof b !== "number" ? asFloat(b, op).dtype : "f32";
  const ta = toTensor(a, dtype);
  const tb = toTensor(b, dtype);
  commonFloat(op, ta, tb);
  return [ta, tb];
}

/** a + b with broadcasting. */
export function add(a: TensorLike, b: TensorLike): T {
  const [x, y] = operands("add", a, b);
  const out = rawBinary("add", x, y, "add");
  return maybeRecord(out, "add", [x, y], (dy, needs) => [
    needs[0] ? sumToShape(dy, x.shape) : null,
    needs[1] ? sumToShape(dy, y.shape) : null,
  ]);
}

/** a − b with broadcasting. */
export function sub(a: TensorLike, b: TensorLike): T {
  const [x, y] = operands("sub", a, b);
  const out = rawBinary("sub", x, y, "sub");
  return maybeRecord(out, "sub", [x, y], (dy, needs) => [
    needs[0] ? sumToShape(dy, x.shape) : null,
    needs[1] ? sumToShape(rawUnary("neg", dy, 0), y.shape) : null,
  ]);
}

/** a ⊙ b with broadcasting. */
export function mul(a: TensorLike, b: TensorLike): T {
  const [x, y] = operands("mul", a, b);
  const out = rawBinary("mul", x, y, "mul");
  return maybeRecord(out, "mul", [x, y], (dy, needs) => [
    needs[0] ? sumToShape(rawBinary("mul", dy, y, "mul"), x.shape) : null,
    needs[1] ? sumToShape(rawBinary("mul", dy, x, "mul"), y.shape) : null,
  ]);
}

/** a / b with broadcasting. */
export function div(a: TensorLike, b: TensorLike): T {
  const [x, y] = operands("div", a, b);
  const out = rawBinary("div", x, y, "div");
  return maybeRecord(out, "div", [x, y], (dy, needs) => {
    const gdiv = rawBinary("div", dy, y, "div");
    // d(a/b)/db = −a/b² = −(a/b)/b, so db = −(dy/b)·out.
    const gb = needs[1] ? sumToShape(rawUnary("neg", rawBinary("mul", gdiv, out, "mul"), 0), y.shape) : null;
    return [needs[0] ? sumToShape(gdiv, x.shape) : null, gb];
  });
}

/** Element-wise maximum with broadcasting; the gradient goes to a where a ≥ b. */
export function maximum(a: TensorLike, b: TensorLike): T {
  const [x, y] = operands("maximum", a, b);
  const out = rawBinary("maximum", x, y, "maximum");
  return maybeRecord(out, "maximum", [x, y], (dy, needs) => {
    // PyTorch's maximum backward gives each side half of the gradient at ties.
    const mx = rawBinary("eq", out, x, "maximum");
    const my = rawBinary("eq", out, y, "maximum");
    const both = rawBinary("mul", mx, my, "maximum");
    const half = rawUnary("scale", both, 0.5);
    const wa = rawBinary("sub", mx, half, "maximum");
    const wb = rawBinary("sub", my, half, "maximum");
    return [
      needs[0] ? sumToShape(rawBinary("mul", dy, wa, "maximum"), x.shape) : null,
      needs[1] ? sumToShape(rawBinary("mul", dy, wb, "maximum"), y.shape) : null,
    ];
  });
}

export function rawUnary(op: UnaryOp, x: T, param: number): T {
  const out = empty(x.shape, x.dtype);
  backend().unary(op, floatData(x), floatData(out), param);
  return out;
}

function unaryOp(op: UnaryOp, x: Tensor, param = 0): T {
  const t = asFloat(x, op);
  const out = rawUnary(op, t, param);
  return maybeRecord(out, op, [t], (dy) => {
    const dx = empty(t.shape, t.dtype);
    backend().unaryBackward(op, floatData(t), floatData(out), floatData(dy), floatData(dx), param, false);
    return [dx];
  });
}

export const neg = (x: Tensor): T => unaryOp("neg", x);
export const exp = (x: Tensor): T => unaryOp("exp", x);
export const log = (x: Tensor): T => unaryOp("log", x);
export const sqrt = (x: Tensor): T => unaryOp("sqrt", x);
export const rsqrt = (x: Tensor): T => unaryOp("rsqrt", x);
export const tanh = (x: Tensor): T => unaryOp("tanh", x);
export const sigmoid = (x: Tensor): T => unaryOp("sigmoid", x);
export const silu = (x: Tensor): T => unaryOp("silu", x);
export const relu = (x: Tensor): T => unaryOp("relu", x);
export const abs = (x: Tensor): T => unaryOp("abs", x);
export const square = (x: Tensor): T => unaryOp("square", x);
/** x^p for a constant exponent p. */
export const pow = (x: Tensor, p: number): T => unaryOp("pow", x, p);
/** x·s for a constant s. */
export const scale = (x: Tensor, s: number): T => unaryOp("scale", x, s);

/** GELU; `approximate: "tanh"` is PyTorch's gelu(approximate="tanh"), the default is the exact erf form. */
export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): T {
  return unaryOp(approximate === "tanh" ? "gelu_tanh" : "gelu_erf", x);
}

/** 1 where a == b, else 0 (no gradient). */
export function equal(a: TensorLike, b: TensorLike): T {
  const [x, y] = operands("equal", a, b);
  return rawBinary("eq", x, y, "equal");
}

export function broadcastTo(x: Tensor, shape: readonly number[]): T {
  const t = asFloat(x, "broadcastTo");
  const full = broadcastShapes("broadcastTo", t.shape, shape);
  if (!sameShape(full, shape))
    throw new ShapeError(`broadcastTo: cannot broadcast ${fmtShape(t.shape)} to ${fmtShape(shape)}`);
  const out = empty(shape, t.dtype);
  backend().broadcastTo(floatData(t), padShape(t.shape, shape.length), floatData(out), shape);
  return maybeRecord(out, "broadcastTo", [t], (dy) => [sumToShape(dy, t.shape)]);
}
