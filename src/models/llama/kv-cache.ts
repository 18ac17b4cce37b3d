// A key/value cache for generation: per layer, keys and values (B, capacity, Hkv, D)
// preallocated once, the new rows written after RoPE, attention read in place through
// the kernel's kvCapacity stride (no copy of the past per step).
//
// The cache is kept in f32 (the default) or in bf16, which halves its memory (long
// contexts, many concurrent requests): new rows are rounded to nearest even as they are
// written, and attention reads them widened to f32, which is exact.
//
// Its arrays come from the tensor buffer pool and go back to it on dispose(): generate and
// the server dispose of each request's cache, so the next request's prefill writes pages
// already mapped instead of faulting in a fresh cache (~1 ms of a 128-token prefill on the
// 125M shape).

import type { FloatArray } from "../../core/backend.js";
import { f32ToBf16Into } from "../../core/dtype.js";
import { backend, isGradEnabled } from "../../core/engine.js";
import { DTypeError, ShapeError } from "../../core/errors.js";
import { allocZeros, releaseArray } from "../../core/memory.js";
import type { Tensor } from "../../core/tensor.js";
import { empty } from "../../core/tensor.js";
import { attentionRowsByCalls } from "../../kernels/ref/attention-rows.js";

/** The dtypes a KV cache may be stored in. */
export const KV_DTYPES = ["f32", "bf16"] as const;
export type KVDType = (typeof KV_DTYPES)[number];

/** Checks a KV cache dtype given by a user (CLI flag, option), or throws a DTypeError naming the choices. */
export function kvDType(v: unknown, what = "kv dtype"): KVDType {
  if ((KV_DTYPES as readonly unknown[]).includes(v)) return v as KVDType;
  throw new DTypeError(`${what} must be ${KV_DTYPES.join(" or ")}, got ${JSON.stringify(v)}`);
}

export interface KVCacheOptions {
  /** Storage of keys and values: f32 (default) or bf16 (half the bytes). */
  dtype?: KVDType;
}

export class KVCache {
  /** Per layer: f32 values, or bf16 bit patterns when dtype is bf16. */
  readonly k: Float32Array[] | Uint16Array[];
  readonly v: Float32Array[] | Uint16Array[];
  readonly dtype: KVDType;
  /** Tokens already stored (the position of the next token). */
  length = 0;

  constructor(
    readonly layers: number,
    readonly B: number,
    readonly capacity: number,
    readonly Hkv: number,
    readonly D: number,
    opts: KVCacheOptions = {},
  ) {
    this.dtype = kvDType(opts.dtype ?? "f32", "KVCache dtype");
    const n = B * capacity * Hkv * D;
    // Zeroed like fresh arrays: nothing reads past `length`, but a stale pooled value there
    // (a NaN) must never be able to reach a result.
    const alloc = (): Float32Array | Uint16Array => allocZeros(this.dtype, n);
    this.k = Array.from({ length: layers }, alloc) as Float32Array[] | Uint16Array[];
    this.v = Array.from({ length: layers }, alloc) as Float32Array[] | Uint16Array[];
  }

  private disposed = false;

  /** Whether dispose() ran: the arrays are back in the pool and must not be used. */
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Gives the arrays back to the buffer pool (the next cache reuses them); the cache is unusable after. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const a of [...this.k, ...this.v]) releaseArray(this.dtype, a);
    this.k.length = 0;
    this.v.length = 0;
  }

  /** Marks T more positions as stored (called once per forward, after every layer wrote). */
  advance(T: number): void {
    this.length += T;
  }

  /** Forgets everything (reuse for a new prompt). */
  reset(): void {
    this.length = 0;
  }

  /** Bytes held (0 once disposed). */
  get bytes(): number {
    if (this.disposed) return 0;
    return this.layers * 2 * this.B * this.capacity * this.Hkv * this.D * (this.dtype === "bf16" ? 2 : 4);
  }
}

function assertLive(cache: KVCache, fn: string): void {
  if (cache.isDisposed)
    throw new ShapeError(`${fn}: this KV cache was disposed (its arrays went back to the pool)`);
}

/** Writes rows (f32) into a cache array at element offset `at`, rounding to bf16 for a bf16 cache. */
function store(dst: Float32Array | Uint16Array, rows: Float32Array, at: number): void {
  if (dst instanceof Uint16Array) f32ToBf16Into(rows, dst, at);
  else dst.set(rows, at);
}

/**
 * Appends this step's k, v (B, T, Hkv, D) to the cache at the current position and
 * attends q (B, T, H, D) over everything stored. Inference only (no graph).
 */
export function cachedAttention(cache: KVCache, layer: number, q: Tensor, k: Tensor, v: Tensor): Tensor {
  if (isGradEnabled() && (q.requiresGrad || k.requiresGrad || v.requiresGrad))
    throw new ShapeError("cachedAttention: the KV cache is for inference; run generation under noGrad()");
  if (q.dtype !== "f32") throw new ShapeError(`cachedAttention: f32 only, got ${q.dtype}`);
  const [B, T, H, D] = q.shape;
  if (B !== cache.B || k.shape[2] !== cache.Hkv || D !== cache.D)
    throw new ShapeError(
      `cachedAttention: q [${q.shape.join(", ")}] does not fit a cache of B=${cache.B}, Hkv=${cache.Hkv}, D=${cache.D}`,
    );
  const out = empty([B, T, H, D], "f32");
  const lse = empty([B, H, T], "f32");
  attendCached(
    cache,
    layer,
    q.data as Float32Array,
    k.data as Float32Array,
    v.data as Float32Array,
    T,
    H,
    out.data,
    lse.data,
  );
  lse.dispose();
  return out;
}

/**
 * `cachedAttention` on plain arrays (the decode step's preallocated buffers): q (B, T, H, D),
 * k, v (B, T, Hkv, D) of the cache's B, Hkv, D; out (B, T, H, D) and lse (B, H, T) are written.
 * The same backend call, so the same bits.
 */
export function attendCached(
  cache: KVCache,
  layer: number,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  T: number,
  H: number,
  out: Float32Array,
  lse: Float32Array,
): void {
  assertLive(cache, "attendCached");
  const { B, Hkv, D, capacity } = cache;
  const start = cache.length;
  if (start + T > capacity)
    throw new ShapeError(`KV cache full: ${start} + ${T} tokens exceed its capacity of ${capacity}`);
  const kc = cache.k[layer];
  const vc = cache.v[layer];
  const row = Hkv * D;
  for (let b = 0; b < B; b++) {
    store(kc, k.subarray(b * T * row, (b + 1) * T * row), (b * capacity + start) * row);
    store(vc, v.subarray(b * T * row, (b + 1) * T * row), (b * capacity + start) * row);
  }
  backend().attention(
    {
      q,
      k: kc,
      v: vc,
      B,
      T,
      S: start + T,
      H,
      Hkv,
      D,
      kvCapacity: capacity,
      scale: 1 / Math.sqrt(D),
      offset: start,
      causal: true,
    },
    out,
    lse,
  );
}

/**
 * The attention of a continuous batch (`LlamaForCausalLM.step`): q (1, N, H, D), k, v
 * (1, N, Hkv, D) hold the tokens of several sequences one after another, `rows[n].tokens` of
 * them for the sequence whose cache is `rows[n].cache`. Each sequence's k, v rows are appended
 * to its cache and its queries attend over its own cache, all in one backend call when the
 * backend has `attentionRows` (else one `attention` call per sequence, the same numbers).
 * Returns (1, N, H, D). Inference only.
 */
export function cachedAttentionRows(
  rows: readonly { cache: KVCache; tokens: number }[],
  layer: number,
  q: Tensor,
  k: Tensor,
  v: Tensor,
): Tensor {
  if (isGradEnabled() && (q.requiresGrad || k.requiresGrad || v.requiresGrad))
    throw new ShapeError("cachedAttentionRows: the KV cache is for inference; run generation under noGrad()");
  if (q.dtype !== "f32") throw new ShapeError(`cachedAttentionRows: f32 only, got ${q.dtype}`);
  const [, N, H, D] = q.shape;
  const Hkv = k.shape[2];
  const kd = k.data as Float32Array;
  const vd = v.data as Float32Array;
  const kRow = Hkv * D;
  const ks: (Float32Array | Uint16Array)[] = [];
  const vs: (Float32Array | Uint16Array)[] = [];
  const tokens: number[] = [];
  const offsets: number[] = [];
  const capacities: number[] = [];
  let at = 0;
  for (const { cache, tokens: T } of rows) {
    assertLive(cache, "cachedAttentionRows");
    const start = cache.length;
    if (start + T > cache.capacity)
      throw new ShapeError(`KV cache full: ${start} + ${T} tokens exceed its capacity of ${cache.capacity}`);
    if (cache.B !== 1 || cache.Hkv !== Hkv || cache.D !== D)
      throw new ShapeError(
        `cachedAttentionRows: rows of Hkv=${Hkv}, D=${D} do not fit a cache of B=${cache.B}, Hkv=${cache.Hkv}, D=${cache.D} (B must be 1)`,
      );
    const kc = cache.k[layer];
    const vc = cache.v[layer];
    store(kc, kd.subarray(at * kRow, (at + T) * kRow), start * kRow);
    store(vc, vd.subarray(at * kRow, (at + T) * kRow), start * kRow);
    ks.push(kc);
    vs.push(vc);
    tokens.push(T);
    offsets.push(start);
    capacities.push(cache.capacity);
    at += T;
  }
  if (at !== N) throw new ShapeError(`cachedAttentionRows: the rows hold ${at} tokens, q has ${N}`);
  const out = empty([1, N, H, D], "f32");
  const p = {
    q: q.data as FloatArray,
    k: ks,
    v: vs,
    tokens,
    offsets,
    capacities,
    H,
    Hkv,
    D,
    scale: 1 / Math.sqrt(D),
  };
  const be = backend();
  if (be.attentionRows) be.attentionRows(p, out.data);
  else attentionRowsByCalls(be.attention, p, out.data);
  return out;
}
