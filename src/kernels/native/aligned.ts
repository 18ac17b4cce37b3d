// Typed arrays whose data starts on a 64-byte boundary, from the addon (native/src/aligned_array.cc),
// for the buffers its kernels read in place with full-width vector loads: a large typed array
// JavaScript allocates starts 16 bytes past a page boundary, and every 64-byte load of it then
// spans two cache lines. An addon without alignedArray (an older build loaded for comparison)
// gets plain arrays: the kernels take any alignment, only slower.

export interface AlignedArrayAddon {
  alignedArray(kind: "f32", n: number): Float32Array;
  alignedArray(kind: "u16", n: number): Uint16Array;
  alignedArray(kind: "u8", n: number): Uint8Array;
}

export interface AlignedArrays {
  f32(n: number): Float32Array;
  u16(n: number): Uint16Array;
  u8(n: number): Uint8Array;
}

/** Zero-filled arrays, 64-byte aligned where the addon can allocate them so. */
export function alignedArrays(addon: object): AlignedArrays {
  const a = addon as Partial<AlignedArrayAddon>;
  if (typeof a.alignedArray !== "function")
    return { f32: (n) => new Float32Array(n), u16: (n) => new Uint16Array(n), u8: (n) => new Uint8Array(n) };
  const alloc = a.alignedArray.bind(addon) as AlignedArrayAddon["alignedArray"];
  return { f32: (n) => alloc("f32", n), u16: (n) => alloc("u16", n), u8: (n) => alloc("u8", n) };
}
