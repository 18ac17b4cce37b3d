// Scaled-dot-product attention with GQA, causal offset and a KV capacity (forward and
// backward), the same algorithm as kernels/ref/attention.ts in f32 with SIMD128 over the
// head dimension: one query row at a time, its S scores in scratch, never the T×S matrix;
// the backward recomputes the probabilities from the saved log-sum-exp (FlashAttention-2:
// Dᵢ = Σ dout⊙out, dS = P⊙(dP − Dᵢ)).
//
// The forward leaves each row's max and sum of exponentials in two arrays; the host turns
// them into lse = max + log(sum) (so no logarithm is needed here). Shapes and lengths are
// checked by the host (kernels/wasm/attention.ts) before the call.
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name))) name

static float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

static float dot(const float* x, const float* y, int n) {
  v128_t acc = wasm_f32x4_splat(0);
  int d = 0;
  for (; d + 4 <= n; d += 4) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(x + d), wasm_v128_load(y + d)));
  float s = hsum(acc);
  for (; d < n; d++) s += x[d] * y[d];
  return s;
}

/** y[0..n) += a·x[0..n). */
static void axpy(float a, const float* x, float* y, int n) {
  v128_t va = wasm_f32x4_splat(a);
  int d = 0;
  for (; d + 4 <= n; d += 4)
    wasm_v128_store(y + d, wasm_f32x4_add(wasm_v128_load(y + d), wasm_f32x4_mul(va, wasm_v128_load(x + d))));
  for (; d < n; d++) y[d] += a * x[d];
}

/**
 * e^x in f32 for x ≤ 0 (arguments here are score − max or score − lse): Cephes' expf, range
 * reduction by ln 2 in two parts and a degree-6 polynomial, about 1 ulp; below −87 it
 * returns 0 (e^−87 is at the edge of the normal range).
 */
static float exp_f32(float x) {
  if (x < -87.0f) return 0.0f;
  if (x > 88.0f) x = 88.0f;
  float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  int bits = ((int)n + 127) << 23;
  return y * __builtin_bit_cast(float, bits);
}

/** Keys query t may see: 0..limit−1. */
static int key_limit(int causal, int S, int offset, int t) {
  if (!causal) return S;
  int l = offset + t + 1;
  return l < S ? l : S;
}

/**
 * q (B,T,H,D), k, v (B,cap,Hkv,D) → out (B,T,H,D), row_max and row_sum (B,H,T).
 * scratch: nth · S floats. Thread `tid` of `nth` takes every nth query row (interleaved, so
 * causal rows of different lengths spread evenly); each row's arithmetic is the same alone.
 */
void EXPORT(wasm_attention)(const float* q, const float* k, const float* v, int B, int T, int S, int H, int Hkv,
                            int D, int cap, float scale, int offset, int causal, float* out, float* row_max,
                            float* row_sum, float* scratch, int tid, int nth) {
  int group = H / Hkv;
  scratch += (long)tid * S;
  int row = 0;
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < H; h++) {
      int hk = h / group;
      const float* kb = k + ((long)b * cap * Hkv + hk) * D;
      const float* vb = v + ((long)b * cap * Hkv + hk) * D;
      for (int t = 0; t < T; t++) {
        if (row++ % nth != tid) continue;
        const float* qr = q + (((long)b * T + t) * H + h) * D;
        float* o = out + (((long)b * T + t) * H + h) * D;
        int lo = (b * H + h) * T + t;
        int limit = key_limit(causal, S, offset, t);
        for (int d = 0; d < D; d++) o[d] = 0.0f;
        if (limit <= 0) {
          row_max[lo] = -__builtin_inff();
          row_sum[lo] = 1.0f;
          continue;
        }
        float max = -__builtin_inff();
        for (int s = 0; s < limit; s++) {
          float z = dot(qr, kb + (long)s * Hkv * D, D) * scale;
          scratch[s] = z;
          if (z > max) max = z;
        }
        float sum = 0.0f;
        for (int s = 0; s < limit; s++) {
          float e = exp_f32(scratch[s] - max);
          sum += e;
          axpy(e, vb + (long)s * Hkv * D, o, D);
        }
        float inv = 1.0f / sum;
        for (int d = 0; d < D; d++) o[d] *= inv;
        row_max[lo] = max;
        row_sum[lo] = sum;
      }
    }
  }
}

/**
 * Writes dq (when non-null) and adds into dk, dv (when non-null). scratch: nth · (D + 2·S·D)
 * floats (per thread: the query gradient row and the kv head's key and value gradients, added
 * once per head). Thread `tid` of `nth` takes every nth (batch, kv head) pair: the only writer
 * of that pair's dk, dv and of its query heads' dq, with the arithmetic of one thread.
 */
void EXPORT(wasm_attention_backward)(const float* q, const float* k, const float* v, int B, int T, int S, int H,
                                     int Hkv, int D, int cap, float scale, int offset, int causal, const float* out,
                                     const float* lse, const float* dout, float* dq, float* dk, float* dv,
                                     float* scratch, int tid, int nth) {
  int group = H / Hkv;
  float* dq_acc = scratch + (long)tid * (D + 2L * S * D);
  float* dk_acc = dq_acc + D;
  float* dv_acc = dk_acc + (long)S * D;
  for (int b = 0; b < B; b++) {
    for (int hk = 0; hk < Hkv; hk++) {
      if ((b * Hkv + hk) % nth != tid) continue;
      long kv_base = ((long)b * cap * Hkv + hk) * D;
      for (long i = 0; i < (long)S * D; i++) dk_acc[i] = dv_acc[i] = 0.0f;
      for (int h = hk * group; h < (hk + 1) * group; h++) {
        for (int t = 0; t < T; t++) {
          long qo = (((long)b * T + t) * H + h) * D;
          int limit = key_limit(causal, S, offset, t);
          if (limit <= 0) {
            if (dq)
              for (int d = 0; d < D; d++) dq[qo + d] = 0.0f;
            continue;
          }
          float l = lse[(b * H + h) * T + t];
          float Di = dot(dout + qo, out + qo, D);
          for (int d = 0; d < D; d++) dq_acc[d] = 0.0f;
          for (int s = 0; s < limit; s++) {
            const float* kr = k + kv_base + (long)s * Hkv * D;
            const float* vr = v + kv_base + (long)s * Hkv * D;
            float pr = exp_f32(dot(q + qo, kr, D) * scale - l);
            float dP = dot(dout + qo, vr, D);
            float dS = pr * (dP - Di) * scale;
            if (dq) axpy(dS, kr, dq_acc, D);
            if (dk) axpy(dS, q + qo, dk_acc + (long)s * D, D);
            if (dv) axpy(pr, dout + qo, dv_acc + (long)s * D, D);
          }
          if (dq)
            for (int d = 0; d < D; d++) dq[qo + d] = dq_acc[d];
        }
      }
      for (int s = 0; s < S; s++) {
        long ko = kv_base + (long)s * Hkv * D;
        if (dk) axpy(1.0f, dk_acc + (long)s * D, dk + ko, D);
        if (dv) axpy(1.0f, dv_acc + (long)s * D, dv + ko, D);
      }
    }
  }
}
