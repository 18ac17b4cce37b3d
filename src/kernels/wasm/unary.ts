// The unary ops needing eˣ, ln x, tanh, erf or a power, forward and backward, on the wasm
// module (c/unary.c) for Float32Array operands; Float64Array calls go to the reference. The
// results are within a few f32 ulp of the reference's (vmath.h), the same on any thread count.
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
  const [odd, frac] = powKind(param);
  arena.reset();
  try {
    const xa = arena.copyIn(x, 0, n);
    const oa = arena.alloc(n * 4);
    ex.wasm_unary_math(UNARY_OPS.indexOf(op), xa, oa, n, param, odd, frac);
    out.set(arena.view(out, oa, n));
  } finally {
    arena.reset();
  }
}

/**
 * The ops whose backward runs here; the others' are plain arithmetic on x, y and dy, which the
 * reference does in one pass faster than the copies in and out cost (bench/wasm-ops.ts).
 */
export const WASM_UNARY_BACKWARD: readonly UnaryOp[] = ["silu", "gelu_tanh", "gelu_erf", "pow"];

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
  if (!allF32([x, y, dy, dx]) || !WASM_UNARY_BACKWARD.includes(op)) {
    refBackend.unaryBackward(op, x, y, dy, dx, param, accumulate);
    return;
  }
  const n = dy.length;
  needLength("unaryBackward", { x, dx }, { x: n, dx: n });
  const [odd, frac] = powKind(param - 1);
  arena.reset();
  try {
    const xa = arena.copyIn(x as Float32Array, 0, n);
    const ga = arena.copyIn(dy as Float32Array, 0, n);
    const da = accumulate ? arena.copyIn(dx as Float32Array, 0, n) : arena.alloc(n * 4);
    ex.wasm_unary_backward(UNARY_OPS.indexOf(op), xa, ga, da, n, param, odd, frac, accumulate ? 1 : 0);
    dx.set(arena.view(dx as Float32Array, da, n));
  } finally {
    arena.reset();
  }
}
