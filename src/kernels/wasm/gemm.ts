// Backend.gemm on the wasm module: f32 A and C with an f32 or bf16 B run in c/gemm.c
// (packed, SIMD128); anything holding a Float64Array goes to the reference.
import type { GemmParams } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import type { WasmArena } from "./arena.js";
import type { KernelCalls } from "./calls.js";

/** Elements a batched operand spans: `batch` matrices of `size`, `stride` apart (0 = shared). */
function span(batch: number, stride: number, size: number): number {
  return batch <= 1 || stride === 0 ? size : (batch - 1) * stride + size;
}

function checkSize(name: string, arr: { length: number }, need: number, batch: number, stride: number): void {
  if (arr.length < need)
    throw new RangeError(
      `gemm: ${name} holds ${arr.length} elements but batch=${batch} and stride=${stride} need ${need}`,
    );
}

/** c/gemm.c's MR: rows are split between parts in units of this many. */
const MR = 4;

/** The first row of part `part` of `parts` (c/gemm.c's split(m, MR, …)); part = parts gives m. */
function rowSplit(m: number, part: number, parts: number): number {
  const units = Math.ceil(m / MR);
  return Math.min(Math.floor((units * part) / parts) * MR, m);
}

export function wasmGemm(ex: KernelCalls, arena: WasmArena, p: GemmParams): void {
  const { a, b, c, m, n, k, batch } = p;
  if (!(a instanceof Float32Array && c instanceof Float32Array && !(b instanceof Float64Array))) {
    refBackend.gemm(p);
    return;
  }
  // alpha 0 (BLAS: the product is not formed, so Inf/NaN in A or B never reach C) and empty
  // products are the reference's: nothing to compute.
  if (p.alpha === 0 || m <= 0 || n <= 0 || batch <= 0) {
    refBackend.gemm(p);
    return;
  }
  const [spanA, spanB, spanC] = [
    span(batch, p.strideA, m * k),
    span(batch, p.strideB, k * n),
    span(batch, p.strideC, m * n),
  ];
  checkSize("A", a, spanA, batch, p.strideA);
  checkSize("B", b, spanB, batch, p.strideB);
  checkSize("C", c, spanC, batch, p.strideC);
  arena.reset();
  try {
    const aAt = arena.copyIn(a, 0, spanA);
    let bAt = arena.copyIn(b, 0, spanB);
    let bKind = b instanceof Uint16Array ? 1 : 0;
    // A product split by rows: B packed once here, read by every part (c/gemm.c).
    const packedBytes = ex.wasm_gemm_packed_b_bytes(m, n, k, batch);
    if (packedBytes > 0) {
      const packed = arena.alloc(packedBytes);
      ex.wasm_gemm_pack_b(p.transB ? 1 : 0, n, k, bAt, bKind, packed);
      bAt = packed;
      bKind = 2;
    }
    // With beta 0 the old C is never read, so it is not copied in; each product's m×n block
    // is copied out on its own, which leaves any gap between strided blocks untouched.
    const cAt =
      p.beta === 0
        ? arena.alloc(span(batch, p.strideC, m * n) * 4)
        : arena.copyIn(c, 0, span(batch, p.strideC, m * n));
    // One scratch area per part (c/gemm.c), enough also when the call runs on one thread
    // (small calls do; a thread's share of the columns is smaller than all of them).
    const t = ex.parts;
    const scratch = arena.alloc(
      Math.max(
        t * ex.wasm_gemm_scratch_bytes(m, n, k, batch, t),
        ex.wasm_gemm_scratch_bytes(m, n, k, batch, 1),
      ),
    );
    const args = [
      p.transA ? 1 : 0,
      p.transB ? 1 : 0,
      m,
      n,
      k,
      batch,
      aAt,
      p.strideA,
      bAt,
      bKind,
      p.strideB,
      cAt,
      p.strideC,
      p.alpha,
      p.beta,
      scratch,
    ];
    if (packedBytes > 0) {
      // Split by rows (c/gemm.c's split of m in MR-row units): each part's rows of C are
      // copied out as soon as that part is done, while the other threads still compute.
      ex.runParts("wasm_gemm", args, (part, parts) => {
        const [lo, hi] = [rowSplit(m, part, parts), rowSplit(m, part + 1, parts)];
        if (hi > lo) c.set(arena.view(c, cAt + lo * n * 4, (hi - lo) * n), lo * n);
      });
      return;
    }
    ex.runParts("wasm_gemm", args, () => {});
    for (let i = 0; i < batch; i++) {
      const off = i * p.strideC;
      c.set(arena.view(c, cAt + off * 4, m * n), off);
    }
  } finally {
    arena.reset();
  }
}
