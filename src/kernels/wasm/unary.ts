// The unary ops needing eˣ, ln x, tanh, erf or a power, and every unary op's backward, on the
// wasm module (c/unary.c) for Float32Array operands; Float64Array calls go to the reference.
// The forward results are within a few f32 ulp of the reference's (vmath.h); the backward is
// bit for bit the reference's where its formula is plain arithmetic (see c/unary.c).
import { type FloatArray, UNARY_OPS, type UnaryOp } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import type { WasmArena } from "./arena.js";
import type { KernelCalls } from "./calls.js";
import { allF32, needLength } from "./ops.js";

/** The forward ops c/unary.c's wasm_unary_math computes. */
export const WASM_UNARY_MATH: readonly UnaryOp[] = [
  "exp",
  "log",
  "tanh",
  "sigmoid",
  "silu",
  "gelu_tanh",
  "gelu_erf",
  "pow",
];

/** [odd, frac] for c/unary.c's vpow: p is an odd integer; p is finite and not an integer. */
function powKind(p: number): [number, number] {
  const odd = Number.isInteger(p) && Math.abs(p % 2) === 1 ? 1 : 0;
  const frac = Number.isFinite(p) && !Number.isInteger(p) ? 1 : 0;
  return [odd, frac];
}

/** out = f(x) for the WASM_UNARY_MATH ops (the caller checked op and types). */
export function wasmUnaryMath(
  ex: KernelCalls,
  arena: WasmArena,
  op: UnaryOp,
  x: Float32Array,
  out: Float32Array,
  param: number,
): void {
  const n = x.length;
  needLength("unary", { out }, { out: n });
  // The power is taken with the exponent rounded to f32; odd/frac describe that exponent.
  const p = Math.fround(param);
  const [odd, frac] = powKind(p);
  arena.reset();
  try {
    const xa = arena.copyIn(x, 0, n);
    const oa = arena.alloc(n * 4);
    ex.wasm_unary_math(UNARY_OPS.indexOf(op), xa, oa, n, p, odd, frac);
    out.set(arena.view(out, oa, n));
  } finally {
    arena.reset();
  }
}

/** The ops whose backward reads y, the forward output (the rest need only x and dy). */
const READS_Y: readonly UnaryOp[] = ["exp", "sqrt", "rsqrt", "tanh", "sigmoid"];
/** The ops whose backward needs x. */
const NO_X: readonly UnaryOp[] = ["neg", "scale"];

export function wasmUnaryBackward(
  ex: KernelCalls,
  arena: WasmArena,
  op: UnaryOp,
  x: FloatArray,
  y: FloatArray,
  dy: FloatArray,
  dx: FloatArray,
  param: number,
  accumulate: boolean,
): void {
  const code = UNARY_OPS.indexOf(op);
  if (!allF32([x, y, dy, dx]) || code < 0) {
    refBackend.unaryBackward(op, x, y, dy, dx, param, accumulate);
    return;
  }
  const n = dy.length;
  const readsY = READS_Y.includes(op);
  const readsX = !NO_X.includes(op);
  needLength("unaryBackward", { x: readsX ? x : null, y: readsY ? y : null, dx }, { x: n, y: n, dx: n });
  // pow's x^(p − 1) is taken with p − 1 rounded to f32 (c/unary.c's vpow).
  const [odd, frac] = powKind(Math.fround(param - 1));
  arena.reset();
  try {
    const xa = readsX ? arena.copyIn(x as Float32Array, 0, n) : 0;
    const ya = readsY ? arena.copyIn(y as Float32Array, 0, n) : 0;
    const ga = arena.copyIn(dy as Float32Array, 0, n);
    const da = accumulate ? arena.copyIn(dx as Float32Array, 0, n) : arena.alloc(n * 4);
    ex.wasm_unary_backward(code, xa, ya, ga, da, n, param, odd, frac, accumulate ? 1 : 0);
    dx.set(arena.view(dx as Float32Array, da, n));
  } finally {
    arena.reset();
  }
}
