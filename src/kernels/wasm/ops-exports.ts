// The module's exports for the ops added after the first kernels (c/unary.c, c/layout.c):
// their C signatures, their names for the job board, and their rough work for the pool's
// split decision. module.ts and pool.ts fold these into WasmExports, THREADED_KERNELS and
// WORK. Every kernel takes (tid, nth) last, as the rest.

export interface WasmOpsExports {
  /** op: the index in UNARY_OPS; param: pow's exponent (f64); odd, frac: it is an odd integer / finite non-integer. */
  wasm_unary_math(
    op: number,
    x: number,
    out: number,
    n: number,
    param: number,
    odd: number,
    frac: number,
    tid: number,
    nth: number,
  ): void;
  /** op: the index in UNARY_OPS (silu, gelu_tanh, gelu_erf, pow); param: pow's exponent (f64); odd, frac describe param − 1. */
  wasm_unary_backward(
    op: number,
    x: number,
    dy: number,
    dx: number,
    n: number,
    param: number,
    odd: number,
    frac: number,
    acc: number,
    tid: number,
    nth: number,
  ): void;
  /** dims, xstr: int32 arrays of `rank` collapsed dims of out and x's strides along them. */
  wasm_strided_copy(
    x: number,
    out: number,
    dims: number,
    xstr: number,
    rank: number,
    n: number,
    tid: number,
    nth: number,
  ): void;
  wasm_add_into(x: number, out: number, n: number, tid: number, nth: number): void;
  /** cond: n bytes. */
  wasm_where(cond: number, a: number, b: number, out: number, n: number, tid: number, nth: number): void;
  /** op 0 sum, 1 max; ksz/kstr, rsz/rstr: int32 arrays of the kept and reduced collapsed dims; nx: x's elements (the work estimate). */
  wasm_reduce(
    op: number,
    x: number,
    ksz: number,
    kstr: number,
    nk: number,
    rsz: number,
    rstr: number,
    nr: number,
    lastReduced: number,
    out: number,
    nout: number,
    nx: number,
    tid: number,
    nth: number,
  ): void;
  wasm_nf4_dequant(
    packed: number,
    scales: number,
    blocksize: number,
    quantMap: number,
    start: number,
    count: number,
    out: number,
    tid: number,
    nth: number,
  ): void;
  /** offset: an f64. */
  wasm_nf4_scales(
    q: number,
    code: number,
    nested: number,
    nestedBlocksize: number,
    offset: number,
    out: number,
    n: number,
    tid: number,
    nth: number,
  ): void;
}

export const OPS_THREADED_KERNELS = [
  "wasm_unary_math",
  "wasm_unary_backward",
  "wasm_strided_copy",
  "wasm_add_into",
  "wasm_where",
  "wasm_reduce",
  "wasm_nf4_dequant",
  "wasm_nf4_scales",
] as const satisfies readonly (keyof WasmOpsExports)[];

/** Rough work of a call from its arguments (see pool.ts's WORK): element counts times a cost. */
export const OPS_WORK: Record<(typeof OPS_THREADED_KERNELS)[number], (a: readonly number[]) => number> = {
  wasm_unary_math: (a) => 32 * a[3],
  wasm_unary_backward: (a) => 32 * a[4],
  wasm_strided_copy: (a) => a[5],
  wasm_add_into: (a) => a[2],
  wasm_where: (a) => a[4],
  wasm_reduce: (a) => 2 * a[11],
  wasm_nf4_dequant: (a) => 4 * a[5],
  wasm_nf4_scales: (a) => 2 * a[6],
};
