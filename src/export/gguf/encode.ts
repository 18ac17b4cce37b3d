// Tensor data in the ggml types lorakit writes, from f32 values, bit for bit as gguf-py's
// quants.py writes them (which matches ggml's reference quantizers).
import { f32ToBf16, f32ToF16 } from "../../core/dtype.js";
import { ExportError } from "../errors.js";
import type { GgmlType } from "./format.js";
import { Q8_0_BLOCK, Q8_0_BLOCK_BYTES } from "./format.js";

/** ggml's roundf: halves away from zero (quants.py np_roundf). */
function roundHalfAway(x: number): number {
  const a = Math.floor(Math.abs(x) + 0.5);
  return x < 0 ? -a : a;
}

/**
 * Q8_0 (quants.py Q8_0.quantize_blocks, ggml's quantize_row_q8_0_ref): per block of 32,
 * d = max|x| / 127 and q = roundf(x · (1/d)), all in f32; d stored as f16.
 */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % Q8_0_BLOCK !== 0)
    throw new ExportError(`Q8_0: ${x.length} values are not a whole number of ${Q8_0_BLOCK}-value blocks`);
  const nb = x.length / Q8_0_BLOCK;
  const out = new Uint8Array(nb * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  const f = Math.fround;
  for (let b = 0; b < nb; b++) {
    const base = b * Q8_0_BLOCK;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(x[base + j]));
    const d = f(amax / 127);
    const id = d === 0 ? 0 : f(1 / d);
    const o = b * Q8_0_BLOCK_BYTES;
    view.setUint16(o, f32ToF16(d), true);
    for (let j = 0; j < Q8_0_BLOCK; j++) view.setInt8(o + 2 + j, roundHalfAway(f(x[base + j] * id)));
  }
  return out;
}

/** The bytes of `x` (row-major, f32 values) as a ggml tensor of `type`. */
export function encodeGgmlData(x: Float32Array, type: GgmlType): Uint8Array {
  switch (type) {
    case "F32":
      return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case "F16": {
      const h = new Uint16Array(x.length);
      for (let i = 0; i < x.length; i++) h[i] = f32ToF16(x[i]);
      return new Uint8Array(h.buffer);
    }
    case "BF16": {
      // quants.py BF16: NaN forced quiet, round to nearest even, as f32ToBf16.
      const h = new Uint16Array(x.length);
      for (let i = 0; i < x.length; i++) h[i] = f32ToBf16(x[i]);
      return new Uint8Array(h.buffer);
    }
    case "Q8_0":
      return quantizeQ8_0(x);
    default:
      throw new ExportError(`GGUF: cannot encode tensor type ${String(type satisfies never)}`);
  }
}
