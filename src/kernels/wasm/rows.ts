// Rotary embedding and the softmax family on the wasm module (c/rows.c) for Float32Array
// operands; a Float64Array operand sends the call to the reference. Each call copies its
// inputs in and its outputs out (so `out` may alias `x`); buffers shorter than the sizes
// need are a RangeError.
import type { FloatArray } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import type { WasmArena } from "./arena.js";
import type { KernelCalls } from "./calls.js";
import { allF32, needLength } from "./ops.js";

export function wasmRope(
  ex: KernelCalls,
  arena: WasmArena,
  x: FloatArray,
  cos: FloatArray,
  sin: FloatArray,
  B: number,
  T: number,
  H: number,
  D: number,
  inverse: boolean,
  out: FloatArray,
): void {
  if (!allF32([x, cos, sin, out])) {
    refBackend.rope(x, cos, sin, B, T, H, D, inverse, out);
    return;
  }
  if (D % 2 !== 0) throw new RangeError(`rope: head dim D=${D} must be even`);
  const n = B * T * H * D;
  const tab = (T * D) / 2;
  needLength("rope", { x, cos, sin, out }, { x: n, cos: tab, sin: tab, out: n });
  arena.reset();
  try {
    const xa = arena.copyIn(x as Float32Array, 0, n);
    const ca = arena.copyIn(cos as Float32Array, 0, tab);
    const sa = arena.copyIn(sin as Float32Array, 0, tab);
    const oa = arena.alloc(n * 4);
    ex.wasm_rope(xa, ca, sa, B, T, H, D, inverse ? 1 : 0, oa);
    out.set(arena.view(out as Float32Array, oa, n));
  } finally {
    arena.reset();
  }
}

export function wasmSoftmax(
  ex: KernelCalls,
  arena: WasmArena,
  x: FloatArray,
  N: number,
  C: number,
  out: FloatArray,
): void {
  if (!allF32([x, out])) {
    refBackend.softmax(x, N, C, out);
    return;
  }
  needLength("softmax", { x, out }, { x: N * C, out: N * C });
  arena.reset();
  try {
    const xa = arena.copyIn(x as Float32Array, 0, N * C);
    const oa = arena.alloc(N * C * 4);
    ex.wasm_softmax(xa, N, C, oa);
    out.set(arena.view(out as Float32Array, oa, N * C));
  } finally {
    arena.reset();
  }
}

/** out = x − lse per row; lse = max + log Σ e^(x − max) (the logarithm taken here, in f64). */
export function wasmLogSoftmax(
  ex: KernelCalls,
  arena: WasmArena,
  x: FloatArray,
  N: number,
  C: number,
  out: FloatArray,
): void {
  if (!allF32([x, out])) {
    refBackend.logSoftmax(x, N, C, out);
    return;
  }
  needLength("logSoftmax", { x, out }, { x: N * C, out: N * C });
  arena.reset();
  try {
    const xa = arena.copyIn(x as Float32Array, 0, N * C);
    const mx = arena.alloc(N * 4);
    const sm = arena.alloc(N * 4);
    const la = arena.alloc(N * 4);
    const oa = arena.alloc(N * C * 4);
    // A row whose max is ±∞ gets sum 1, so its lse is that max (as the reference's).
    ex.wasm_row_max_sumexp(xa, N, C, mx, sm);
    const like = x as Float32Array;
    const max = arena.view(like, mx, N);
    const sum = arena.view(like, sm, N);
    const lse = arena.view(like, la, N);
    for (let r = 0; r < N; r++) lse[r] = max[r] + Math.log(sum[r]);
    ex.wasm_row_sub(xa, la, N, C, oa);
    out.set(arena.view(like, oa, N * C));
  } finally {
    arena.reset();
  }
}

/** softmaxBackward (log false) or logSoftmaxBackward (log true): dx (+)= … from y and dy (N,C). */
export function wasmSoftmaxBackward(
  ex: KernelCalls,
  arena: WasmArena,
  log: boolean,
  y: FloatArray,
  dy: FloatArray,
  N: number,
  C: number,
  dx: FloatArray,
  acc: boolean,
): void {
  if (!allF32([y, dy, dx])) {
    if (log) refBackend.logSoftmaxBackward(y, dy, N, C, dx, acc);
    else refBackend.softmaxBackward(y, dy, N, C, dx, acc);
    return;
  }
  const n = N * C;
  needLength(log ? "logSoftmaxBackward" : "softmaxBackward", { y, dy, dx }, { y: n, dy: n, dx: n });
  arena.reset();
  try {
    const ya = arena.copyIn(y as Float32Array, 0, n);
    const ga = arena.copyIn(dy as Float32Array, 0, n);
    // dx comes in only when added into.
    const da = acc ? arena.copyIn(dx as Float32Array, 0, n) : arena.alloc(n * 4);
    ex.wasm_softmax_backward(ya, ga, N, C, da, acc ? 1 : 0, log ? 1 : 0);
    dx.set(arena.view(dx as Float32Array, da, n));
  } finally {
    arena.reset();
  }
}
