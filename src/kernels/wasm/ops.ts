// The element-wise kernels on the wasm module (c/ops.c) for Float32Array operands, with
// Float64Array calls going to the reference. Each call copies its inputs in and its outputs
// out; buffers shorter than the gate are a RangeError.
import type { FloatArray } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import type { WasmArena } from "./arena.js";
import type { WasmExports } from "./module.js";

function allF32(arrays: readonly (FloatArray | null)[]): arrays is readonly (Float32Array | null)[] {
  return arrays.every((a) => a === null || a instanceof Float32Array);
}

function sameLength(kernel: string, n: number, arrays: Record<string, FloatArray | null>): void {
  for (const [name, a] of Object.entries(arrays))
    if (a !== null && a.length < n)
      throw new RangeError(`${kernel}: ${name} holds ${a.length} elements, gate holds ${n}`);
}

export function wasmSiluMul(
  ex: WasmExports,
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
  ex: WasmExports,
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
