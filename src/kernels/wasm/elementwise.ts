// Broadcast binary ops, axpy, dropout and the exact unary ops on the wasm module (c/elementwise.c;
// the other unary ops are unary.ts's) for Float32Array
// operands, bit for bit the reference's results; a Float64Array operand sends the call to
// the reference. The reference's row iterator (dims of size 1 dropped, contiguous
// neighbours merged) turns a broadcast into runs of one inner length; the host passes each
// run's operand offsets. Operands shorter than their shapes are a RangeError.
import type { BinaryOp, FloatArray, UnaryOp } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import { broadcastStrides, contiguousStrides, numel, RowIter } from "../ref/strided.js";
import type { WasmArena } from "./arena.js";
import type { KernelCalls } from "./calls.js";
import { allF32, needLength } from "./ops.js";
import { WASM_UNARY_BACKWARD, WASM_UNARY_MATH, wasmUnaryMath } from "./unary.js";

/** The binary ops in c/elementwise.c's order (its OP_* codes). */
const WASM_BINARY: readonly BinaryOp[] = ["add", "sub", "mul", "div", "eq", "maximum"];

export function wasmBinary(
  ex: KernelCalls,
  arena: WasmArena,
  op: BinaryOp,
  a: FloatArray,
  aShape: readonly number[],
  b: FloatArray,
  bShape: readonly number[],
  out: FloatArray,
  outShape: readonly number[],
): void {
  const code = WASM_BINARY.indexOf(op);
  if (!allF32([a, b, out]) || code < 0) {
    refBackend.binary(op, a, aShape, b, bShape, out, outShape);
    return;
  }
  const [na, nb, n] = [numel(aShape), numel(bShape), numel(outShape)];
  needLength("binary", { a, b, out }, { a: na, b: nb, out: n });
  const it = new RowIter(outShape, [
    contiguousStrides(outShape),
    broadcastStrides(aShape, outShape),
    broadcastStrides(bShape, outShape),
  ]);
  const [, sa, sb] = it.innerStride;
  // The innermost run of an operand is contiguous or one broadcast value; anything else
  // (never produced by equal-rank broadcasting) stays with the reference.
  if (n === 0 || sa > 1 || sb > 1) {
    refBackend.binary(op, a, aShape, b, bShape, out, outShape);
    return;
  }
  arena.reset();
  try {
    const aa = arena.copyIn(a as Float32Array, 0, na);
    const ba = arena.copyIn(b as Float32Array, 0, nb);
    const offA = arena.alloc(it.rows * 4);
    const offB = arena.alloc(it.rows * 4);
    const oa = arena.alloc(n * 4);
    const idx = new Int32Array(0);
    const va = arena.view(idx, offA, it.rows);
    const vb = arena.view(idx, offB, it.rows);
    for (let r = 0; r < it.rows; r++, it.next()) {
      va[r] = it.off[1];
      vb[r] = it.off[2];
    }
    ex.wasm_binary(code, aa, offA, sa, ba, offB, sb, oa, it.rows, it.inner);
    out.set(arena.view(out as Float32Array, oa, n));
  } finally {
    arena.reset();
  }
}

export function wasmAxpy(
  ex: KernelCalls,
  arena: WasmArena,
  alpha: number,
  x: FloatArray,
  y: FloatArray,
): void {
  if (!allF32([x, y])) {
    refBackend.axpy(alpha, x, y);
    return;
  }
  const n = x.length;
  needLength("axpy", { y }, { y: n });
  arena.reset();
  try {
    const xa = arena.copyIn(x as Float32Array, 0, n);
    const ya = arena.copyIn(y as Float32Array, 0, n);
    ex.wasm_axpy(alpha, xa, ya, n);
    y.set(arena.view(y as Float32Array, ya, n));
  } finally {
    arena.reset();
  }
}

/** 2²⁴: dropoutUniform's draws are k / 2²⁴ for a 24-bit k. */
const DRAWS = 16777216;

/**
 * Inverted dropout with core's mask, bit for bit: uniform = k/2²⁴ ≥ p exactly when
 * k ≥ ⌈p·2²⁴⌉ (p·2²⁴ is exact in f64), so the module compares integers; kept values are
 * x·(1/(1−p)) in f64 as the reference's.
 */
export function wasmDropout(
  ex: KernelCalls,
  arena: WasmArena,
  x: FloatArray,
  out: FloatArray,
  p: number,
  seed: number,
  offset: number,
): void {
  if (!allF32([x, out])) {
    refBackend.dropout(x, out, p, seed, offset);
    return;
  }
  const n = x.length;
  needLength("dropout", { out }, { out: n });
  const scale = p < 1 ? 1 / (1 - p) : 0;
  // NaN p keeps nothing (uniform ≥ NaN is false); p ≤ 0 keeps everything.
  const threshold = Number.isNaN(p) ? DRAWS + 1 : Math.min(DRAWS + 1, Math.max(0, Math.ceil(p * DRAWS)));
  arena.reset();
  try {
    const xa = arena.copyIn(x as Float32Array, 0, n);
    const oa = arena.alloc(n * 4);
    ex.wasm_dropout(xa, oa, n, scale, threshold, seed, offset);
    out.set(arena.view(out as Float32Array, oa, n));
  } finally {
    arena.reset();
  }
}

/** The unary ops c/elementwise.c computes, in its order (the ones needing exp, log, tanh, erf or pow are c/unary.c's). */
const WASM_UNARY: readonly UnaryOp[] = ["neg", "abs", "square", "sqrt", "rsqrt", "scale", "relu"];

/** The unary ops whose forward runs in WebAssembly: the exact ones here, the rest in unary.ts. */
export const WASM_UNARY_OPS: readonly UnaryOp[] = [...WASM_UNARY, ...WASM_UNARY_MATH];
/** The unary ops whose backward runs in WebAssembly (unary.ts; the rest are the reference's). */
export const WASM_UNARY_BACKWARD_OPS: readonly UnaryOp[] = WASM_UNARY_BACKWARD;

export function wasmUnary(
  ex: KernelCalls,
  arena: WasmArena,
  op: UnaryOp,
  x: FloatArray,
  out: FloatArray,
  param: number,
): void {
  const code = WASM_UNARY.indexOf(op);
  if (!allF32([x, out]) || (code < 0 && !WASM_UNARY_MATH.includes(op))) {
    refBackend.unary(op, x, out, param);
    return;
  }
  if (code < 0) {
    wasmUnaryMath(ex, arena, op, x as Float32Array, out as Float32Array, param);
    return;
  }
  const n = x.length;
  needLength("unary", { out }, { out: n });
  arena.reset();
  try {
    const xa = arena.copyIn(x as Float32Array, 0, n);
    const oa = arena.alloc(n * 4);
    ex.wasm_unary(code, xa, oa, n, param);
    out.set(arena.view(out as Float32Array, oa, n));
  } finally {
    arena.reset();
  }
}
