// A continuous batch's attention (Backend.attentionRows) as one `attention` call per sequence:
// what a backend without the batched kernel runs, and the definition the batched kernel must
// match bit for bit.
import type { AttentionRowsParams, Backend, FloatArray } from "../../core/backend.js";

/** Runs `attention` once per sequence of p (B = 1), writing each one's rows of out. */
export function attentionRowsByCalls(
  attention: Backend["attention"],
  p: AttentionRowsParams,
  out: FloatArray,
): void {
  const { H, Hkv, D } = p;
  const row = H * D;
  let at = 0;
  for (let n = 0; n < p.tokens.length; n++) {
    const T = p.tokens[n];
    const offset = p.offsets[n];
    if (T === 0) continue;
    const lse = out instanceof Float64Array ? new Float64Array(H * T) : new Float32Array(H * T);
    attention(
      {
        q: p.q.subarray(at * row, (at + T) * row),
        k: p.k[n],
        v: p.v[n],
        B: 1,
        T,
        S: offset + T,
        H,
        Hkv,
        D,
        kvCapacity: p.capacities[n],
        scale: p.scale,
        offset,
        causal: true,
      },
      out.subarray(at * row, (at + T) * row),
      lse,
    );
    at += T;
  }
}
