// A key/value cache for generation: per layer, keys and values (B, capacity, Hkv, D)
// preallocated once, the new rows written after RoPE, attention read in place through
// the kernel's kvCapacity stride (no copy of the past per step).
import type { FloatArray } from "../../core/backend.js";
import { backend, isGradEnabled } from "../../core/engine.js";
import { ShapeError } from "../../core/errors.js";
import type { Tensor } from "../../core/tensor.js";
import { empty } from "../../core/tensor.js";

export class KVCache {
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  /** Tokens already stored (the position of the next token). */
  length = 0;

  constructor(
    readonly layers: number,
    readonly B: number,
    readonly capacity: number,
    readonly Hkv: number,
    readonly D: number,
  ) {
    const n = B * capacity * Hkv * D;
    this.k = Array.from({ length: layers }, () => new Float32Array(n));
    this.v = Array.from({ length: layers }, () => new Float32Array(n));
  }

  /** Marks T more positions as stored (called once per forward, after every layer wrote). */
  advance(T: number): void {
    this.length += T;
  }

  /** Forgets everything (reuse for a new prompt). */
  reset(): void {
    this.length = 0;
  }

  /** Bytes held. */
  get bytes(): number {
    return this.layers * 2 * this.B * this.capacity * this.Hkv * this.D * 4;
  }
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
  const { Hkv, capacity } = cache;
  const start = cache.length;
  if (start + T > capacity)
    throw new ShapeError(`KV cache full: ${start} + ${T} tokens exceed its capacity of ${capacity}`);
  if (B !== cache.B || k.shape[2] !== Hkv || D !== cache.D)
    throw new ShapeError(
      `cachedAttention: q [${q.shape.join(", ")}] does not fit a cache of B=${cache.B}, Hkv=${Hkv}, D=${cache.D}`,
    );
  const kc = cache.k[layer];
  const vc = cache.v[layer];
  const kd = k.data as Float32Array;
  const vd = v.data as Float32Array;
  const row = Hkv * D;
  for (let b = 0; b < B; b++) {
    kc.set(kd.subarray(b * T * row, (b + 1) * T * row), (b * capacity + start) * row);
    vc.set(vd.subarray(b * T * row, (b + 1) * T * row), (b * capacity + start) * row);
  }
  const S = start + T;
  const out = empty([B, T, H, D], "f32");
  const lse = empty([B, H, T], "f32");
  backend().attention(
    {
      q: q.data as FloatArray,
      k: kc,
      v: vc,
      B,
      T,
      S,
      H,
      Hkv,
      D,
      kvCapacity: capacity,
      scale: 1 / Math.sqrt(D),
      offset: start,
      causal: true,
    },
    out.data,
    lse.data,
  );
  lse.dispose();
  return out;
}
