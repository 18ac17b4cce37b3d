// Typed arrays whose data starts on a 64-byte boundary, for the buffers the addon's kernels
// read in place with full-width vector loads: a large typed array JavaScript allocates starts
// 16 bytes past a page boundary, and every 64-byte load of it then spans two cache lines. The
// buffer is allocated here, 64 bytes longer than asked, and viewed from the offset the addon
// reports (native/src/aligned_array.cc), so a failed allocation throws a RangeError as any
// typed array's does. An addon without alignOffset (an older build loaded for comparison)
// gets plain arrays: the kernels take any alignment, only slower.

export interface AlignOffsetAddon {
  /** Bytes from the start of the buffer's data to its first 64-byte boundary (0..63). */
  alignOffset(buffer: ArrayBuffer): number;
}

export interface AlignedArrays {
  f32(n: number): Float32Array;
  u16(n: number): Uint16Array;
  u8(n: number): Uint8Array;
}

const ALIGN = 64;

/** Zero-filled arrays, 64-byte aligned where the addon can tell the address. */
export function alignedArrays(addon: object): AlignedArrays {
  const a = addon as Partial<AlignOffsetAddon>;
  if (typeof a.alignOffset !== "function")
    return { f32: (n) => new Float32Array(n), u16: (n) => new Uint16Array(n), u8: (n) => new Uint8Array(n) };
  const offsetOf = a.alignOffset.bind(addon);
  const view = <T>(n: number, size: number, make: (b: ArrayBuffer, off: number, n: number) => T): T => {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`aligned array: invalid length ${n}`);
    const buffer = new ArrayBuffer(n * size + ALIGN);
    return make(buffer, offsetOf(buffer), n);
  };
  return {
    f32: (n) => view(n, 4, (b, off, len) => new Float32Array(b, off, len)),
    u16: (n) => view(n, 2, (b, off, len) => new Uint16Array(b, off, len)),
    u8: (n) => view(n, 1, (b, off, len) => new Uint8Array(b, off, len)),
  };
}
