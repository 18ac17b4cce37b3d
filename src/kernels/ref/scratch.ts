// Grow-only f64 scratch buffers, one per slot, so kernels accumulate in double precision
// without allocating (and first-touching fresh pages) on every call. Kernels run
// synchronously and never re-enter one another, so a slot is free again when its kernel
// returns; two buffers live at once in one kernel must use different slots.

export const SLOT = {
  gemmA: 0,
  gemmB: 1,
  row: 2,
  row2: 3,
  acc: 4,
  acc2: 5,
} as const;

const buffers: Float64Array[] = [];

/** A Float64Array of at least n elements for `slot`; its contents are garbage. */
export function scratch(slot: number, n: number): Float64Array {
  let buf = buffers[slot];
  if (buf === undefined || buf.length < n) {
    buf = new Float64Array(Math.max(n, 64, buf === undefined ? 0 : buf.length * 2));
    buffers[slot] = buf;
  }
  return buf;
}
