// The row and element-wise kernels on the wasm module (c/ops.c) for Float32Array operands,
// with Float64Array calls going to the reference. Each call copies its inputs in and its
// outputs out; buffers shorter than the sizes need are a RangeError, and cross-entropy
// targets are checked here, with the reference's message, before the module sees them.
import type { FloatArray } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import { checkTarget } from "../ref/nn.js";
import type { WasmArena } from "./arena.js";
import type { KernelCalls } from "./calls.js";

/** Whether every operand is a Float32Array (null: an output not wanted); else the call is the reference's. */
export function allF32(arrays: readonly (FloatArray | null)[]): arrays is readonly (Float32Array | null)[] {
  return arrays.every((a) => a === null || a instanceof Float32Array);
}

function sameLength(kernel: string, n: number, arrays: Record<string, FloatArray | null>): void {
  for (const [name, a] of Object.entries(arrays))
    if (a !== null && a.length < n)
      throw new RangeError(`${kernel}: ${name} holds ${a.length} elements, gate holds ${n}`);
}

export function wasmSiluMul(
  ex: KernelCalls,
  arena: WasmArena,
  gate: FloatArray,
  up: FloatArray,
  out: FloatArray,
): void {
  if (!allF32([gate, up, out])) {
    refBackend.siluMul(gate, up, out);
    return;
  }
  const n = gate.length;
  sameLength("siluMul", n, { up, out });
  arena.reset();
  try {
    const g = arena.copyIn(gate as Float32Array, 0, n);
    const u = arena.copyIn(up as Float32Array, 0, n);
    const o = arena.alloc(n * 4);
    ex.wasm_silu_mul(g, u, o, n);
    out.set(arena.view(out as Float32Array, o, n));
  } finally {
    arena.reset();
  }
}

export function wasmSiluMulBackward(
  ex: KernelCalls,
  arena: WasmArena,
  gate: FloatArray,
  up: FloatArray,
  dy: FloatArray,
  dgate: FloatArray | null,
  dup: FloatArray | null,
  accumulate: boolean,
): void {
  if (!allF32([gate, up, dy, dgate, dup])) {
    refBackend.siluMulBackward(gate, up, dy, dgate, dup, accumulate);
    return;
  }
  const n = gate.length;
  sameLength("siluMulBackward", n, { up, dy, dgate, dup });
  if (!dgate && !dup) return;
  arena.reset();
  try {
    const g = arena.copyIn(gate as Float32Array, 0, n);
    const u = arena.copyIn(up as Float32Array, 0, n);
    const d = arena.copyIn(dy as Float32Array, 0, n);
    // Gradients come in only when they are added into.
    const at = (x: FloatArray | null) =>
      x === null ? 0 : accumulate ? arena.copyIn(x as Float32Array, 0, n) : arena.alloc(n * 4);
    const dg = at(dgate);
    const du = at(dup);
    ex.wasm_silu_mul_backward(g, u, d, dg, du, n, accumulate ? 1 : 0);
    if (dgate) dgate.set(arena.view(dgate as Float32Array, dg, n));
    if (dup) dup.set(arena.view(dup as Float32Array, du, n));
  } finally {
    arena.reset();
  }
}

/** RangeError when an operand holds fewer elements than the sizes need. */
export function needLength(
  kernel: string,
  arrays: Record<string, { length: number } | null>,
  need: Record<string, number>,
): void {
  for (const [name, a] of Object.entries(arrays))
    if (a !== null && a.length < need[name])
      throw new RangeError(`${kernel}: ${name} holds ${a.length} elements, the sizes need ${need[name]}`);
}

function checkTargets(targets: Int32Array, N: number, V: number, ignoreIndex: number): void {
  for (let r = 0; r < N; r++) checkTarget(targets[r], V, ignoreIndex, r);
}

export function wasmCrossEntropy(
  ex: KernelCalls,
  arena: WasmArena,
  logits: FloatArray,
  targets: Int32Array,
  N: number,
  V: number,
  ignoreIndex: number,
  loss: FloatArray,
  lse: FloatArray,
): void {
  if (!allF32([logits, loss, lse])) {
    refBackend.crossEntropy(logits, targets, N, V, ignoreIndex, loss, lse);
    return;
  }
  needLength("crossEntropy", { logits, targets, loss, lse }, { logits: N * V, targets: N, loss: N, lse: N });
  checkTargets(targets, N, V, ignoreIndex);
  arena.reset();
  try {
    const x = arena.copyIn(logits as Float32Array, 0, N * V);
    const mx = arena.alloc(N * 4);
    const sm = arena.alloc(N * 4);
    ex.wasm_row_max_sumexp(x, N, V, mx, sm);
    const max = arena.view(logits as Float32Array, mx, N);
    const sum = arena.view(logits as Float32Array, sm, N);
    for (let r = 0; r < N; r++) {
      const l = max[r] + Math.log(sum[r]);
      lse[r] = l;
      const t = targets[r];
      loss[r] = t === ignoreIndex ? 0 : l - logits[r * V + t];
    }
  } finally {
    arena.reset();
  }
}

export function wasmCrossEntropyBackward(
  ex: KernelCalls,
  arena: WasmArena,
  logits: FloatArray,
  targets: Int32Array,
  lse: FloatArray,
  gradScale: FloatArray,
  N: number,
  V: number,
  ignoreIndex: number,
  dlogits: FloatArray,
  accumulate: boolean,
): void {
  if (!allF32([logits, lse, gradScale, dlogits])) {
    refBackend.crossEntropyBackward(logits, targets, lse, gradScale, N, V, ignoreIndex, dlogits, accumulate);
    return;
  }
  needLength(
    "crossEntropyBackward",
    { logits, targets, lse, gradScale, dlogits },
    { logits: N * V, targets: N, lse: N, gradScale: N, dlogits: N * V },
  );
  checkTargets(targets, N, V, ignoreIndex);
  arena.reset();
  try {
    const x = arena.copyIn(logits as Float32Array, 0, N * V);
    const t = arena.copyIn(targets, 0, N);
    const l = arena.copyIn(lse as Float32Array, 0, N);
    const s = arena.copyIn(gradScale as Float32Array, 0, N);
    const d = accumulate ? arena.copyIn(dlogits as Float32Array, 0, N * V) : arena.alloc(N * V * 4);
    ex.wasm_cross_entropy_backward(x, t, l, s, N, V, ignoreIndex, d, accumulate ? 1 : 0);
    dlogits.set(arena.view(dlogits as Float32Array, d, N * V));
  } finally {
    arena.reset();
  }
}

export function wasmRmsNorm(
  ex: KernelCalls,
  arena: WasmArena,
  x: FloatArray,
  w: FloatArray,
  N: number,
  C: number,
  eps: number,
  y: FloatArray,
  rstd: FloatArray,
): void {
  if (!allF32([x, w, y, rstd])) {
    refBackend.rmsNorm(x, w, N, C, eps, y, rstd);
    return;
  }
  needLength("rmsNorm", { x, w, y, rstd }, { x: N * C, w: C, y: N * C, rstd: N });
  arena.reset();
  try {
    const xa = arena.copyIn(x as Float32Array, 0, N * C);
    const wa = arena.copyIn(w as Float32Array, 0, C);
    const ya = arena.alloc(N * C * 4);
    const ra = arena.alloc(N * 4);
    ex.wasm_rms_norm(xa, wa, N, C, eps, ya, ra);
    y.set(arena.view(y as Float32Array, ya, N * C));
    rstd.set(arena.view(rstd as Float32Array, ra, N));
  } finally {
    arena.reset();
  }
}

export function wasmRmsNormBackward(
  ex: KernelCalls,
  arena: WasmArena,
  x: FloatArray,
  w: FloatArray,
  rstd: FloatArray,
  dy: FloatArray,
  N: number,
  C: number,
  dx: FloatArray | null,
  dw: FloatArray | null,
  accumulateDx: boolean,
): void {
  if (!allF32([x, w, rstd, dy, dx, dw])) {
    refBackend.rmsNormBackward(x, w, rstd, dy, N, C, dx, dw, accumulateDx);
    return;
  }
  needLength(
    "rmsNormBackward",
    { x, w, rstd, dy, dx, dw },
    { x: N * C, w: C, rstd: N, dy: N * C, dx: N * C, dw: C },
  );
  if (!dx && !dw) return;
  arena.reset();
  try {
    const xa = arena.copyIn(x as Float32Array, 0, N * C);
    const wa = arena.copyIn(w as Float32Array, 0, C);
    const ra = arena.copyIn(rstd as Float32Array, 0, N);
    const ga = arena.copyIn(dy as Float32Array, 0, N * C);
    // dx comes in only when added into; dw is always added into.
    const dxa =
      dx === null ? 0 : accumulateDx ? arena.copyIn(dx as Float32Array, 0, N * C) : arena.alloc(N * C * 4);
    const dwa = dw === null ? 0 : arena.copyIn(dw as Float32Array, 0, C);
    const scratch = arena.alloc(C * 4);
    ex.wasm_rms_norm_backward(xa, wa, ra, ga, N, C, dxa, dwa, accumulateDx ? 1 : 0, scratch);
    if (dx) dx.set(arena.view(dx as Float32Array, dxa, N * C));
    if (dw) dw.set(arena.view(dw as Float32Array, dwa, C));
  } finally {
    arena.reset();
  }
}
