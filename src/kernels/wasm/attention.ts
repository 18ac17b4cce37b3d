// Backend.attention / attentionBackward on the wasm module (c/attention.c) for Float32Array
// operands; Float64Array calls go to the reference. The host checks shapes and lengths,
// copies the operands in, and turns the module's row max and row sum into the log-sum-exp.
import type { AttentionParams, FloatArray } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import type { WasmArena } from "./arena.js";
import type { KernelCalls } from "./calls.js";

function needLength(name: string, arr: FloatArray | Uint16Array | null, need: number): void {
  if (arr !== null && arr.length < need)
    throw new RangeError(`attention: ${name} holds ${arr.length} elements, the shapes need ${need}`);
}

/** The reference's shape rules, and every buffer long enough for them. */
function check(p: AttentionParams, bufs: Record<string, FloatArray | null>): void {
  const { B, T, S, H, Hkv, D, kvCapacity, offset } = p;
  if (Hkv <= 0 || H % Hkv !== 0)
    throw new RangeError(`attention: H=${H} query heads must be a multiple of Hkv=${Hkv} kv heads`);
  if (S > kvCapacity) throw new RangeError(`attention: S=${S} valid keys exceed kvCapacity=${kvCapacity}`);
  if (offset < 0) throw new RangeError(`attention: offset=${offset} must be ≥ 0`);
  const rows = B * T * H * D;
  const kv = B * kvCapacity * Hkv * D;
  needLength("q", p.q, rows);
  needLength("k", p.k, kv);
  needLength("v", p.v, kv);
  for (const [name, arr] of Object.entries(bufs))
    needLength(name, arr, name === "lse" ? B * H * T : name === "dk" || name === "dv" ? kv : rows);
}

/** The first `keep` bf16 values of each of `B` blocks `stride` apart, widened exactly to f32. */
function widen(h: Uint16Array, B: number, stride: number, keep: number): Float32Array {
  const u = new Uint32Array(B * keep);
  for (let b = 0; b < B; b++) for (let i = 0; i < keep; i++) u[b * keep + i] = h[b * stride + i] << 16;
  return new Float32Array(u.buffer);
}

/** Anything but Float32Array (f64 gradient checks, mixed k/v dtypes) goes to the reference. */
function allF32(arrays: readonly (FloatArray | Uint16Array | null)[]): boolean {
  return arrays.every((a) => a === null || a instanceof Float32Array);
}

/** c/attention.c's query rows per tile (QB) and its key row length, S rounded up to whole 8-key tiles. */
const QB = 4;
function keysPadded(S: number): number {
  return Math.ceil(S / 8) * 8;
}

export function wasmAttention(
  ex: KernelCalls,
  arena: WasmArena,
  p: AttentionParams,
  out: FloatArray,
  lse: FloatArray,
): void {
  if (p.k instanceof Uint16Array && p.v instanceof Uint16Array && p.q instanceof Float32Array) {
    // A bf16 KV cache: widened exactly on the host, then the f32 kernel, so the result is this
    // backend's f32 forward over the widened values (the contract's definition).
    // Only the S valid rows of each batch are widened (a cache's capacity is usually far larger).
    const row = p.Hkv * p.D;
    const valid = (h: Uint16Array) => widen(h, p.B, p.kvCapacity * row, p.S * row);
    wasmAttention(ex, arena, { ...p, k: valid(p.k), v: valid(p.v), kvCapacity: p.S }, out, lse);
    return;
  }
  if (!allF32([p.q, p.k, p.v, out, lse])) {
    refBackend.attention(p, out, lse);
    return;
  }
  check(p, { out, lse });
  const { B, T, S, H, Hkv, D, kvCapacity } = p;
  const rows = B * T * H * D;
  const kv = B * kvCapacity * Hkv * D;
  const nl = B * H * T;
  arena.reset();
  try {
    const q = arena.copyIn(p.q as Float32Array, 0, rows);
    const k = arena.copyIn(p.k as Float32Array, 0, kv);
    const v = arena.copyIn(p.v as Float32Array, 0, kv);
    const o = arena.alloc(rows * 4);
    const max = arena.alloc(nl * 4);
    const sum = arena.alloc(nl * 4);
    // Per part: c/attention.c's packed keys of one kv head and one query block's scores.
    const scratch = arena.alloc(ex.parts * (D + QB) * keysPadded(S) * 4);
    ex.wasm_attention(
      q,
      k,
      v,
      B,
      T,
      S,
      H,
      Hkv,
      D,
      kvCapacity,
      p.scale,
      p.offset,
      p.causal ? 1 : 0,
      o,
      max,
      sum,
      scratch,
    );
    const f = out as Float32Array;
    f.set(arena.view(f, o, rows));
    const mx = arena.view(f, max, nl);
    const sm = arena.view(f, sum, nl);
    for (let i = 0; i < nl; i++) lse[i] = mx[i] + Math.log(sm[i]);
  } finally {
    arena.reset();
  }
}

export function wasmAttentionBackward(
  ex: KernelCalls,
  arena: WasmArena,
  p: AttentionParams,
  out: FloatArray,
  lse: FloatArray,
  dout: FloatArray,
  dq: FloatArray | null,
  dk: FloatArray | null,
  dv: FloatArray | null,
): void {
  if (!allF32([p.q, p.k, p.v, out, lse, dout, dq, dk, dv])) {
    refBackend.attentionBackward(p, out, lse, dout, dq, dk, dv);
    return;
  }
  check(p, { out, lse, dout, dq, dk, dv });
  if (!dq && !dk && !dv) return;
  const { B, T, S, H, Hkv, D, kvCapacity } = p;
  const rows = B * T * H * D;
  const kv = B * kvCapacity * Hkv * D;
  arena.reset();
  try {
    const q = arena.copyIn(p.q as Float32Array, 0, rows);
    const k = arena.copyIn(p.k as Float32Array, 0, kv);
    const v = arena.copyIn(p.v as Float32Array, 0, kv);
    const o = arena.copyIn(out as Float32Array, 0, rows);
    const l = arena.copyIn(lse as Float32Array, 0, B * H * T);
    const g = arena.copyIn(dout as Float32Array, 0, rows);
    // dq is written whole; dk and dv are added into, so they come in with their contents.
    const dqAt = dq ? arena.alloc(rows * 4) : 0;
    const dkAt = dk ? arena.copyIn(dk as Float32Array, 0, kv) : 0;
    const dvAt = dv ? arena.copyIn(dv as Float32Array, 0, kv) : 0;
    // Per part: c/attention.c's dk and dv rows of the kv head, its packed keys and values, and
    // one query block's P and dS.
    const scratch = arena.alloc(ex.parts * (2 * S * D + (2 * D + 2 * QB) * keysPadded(S)) * 4);
    ex.wasm_attention_backward(
      q,
      k,
      v,
      B,
      T,
      S,
      H,
      Hkv,
      D,
      kvCapacity,
      p.scale,
      p.offset,
      p.causal ? 1 : 0,
      o,
      l,
      g,
      dqAt,
      dkAt,
      dvAt,
      scratch,
    );
    if (dq) dq.set(arena.view(dq as Float32Array, dqAt, rows));
    if (dk) dk.set(arena.view(dk as Float32Array, dkAt, kv));
    if (dv) dv.set(arena.view(dv as Float32Array, dvAt, kv));
  } finally {
    arena.reset();
  }
}
