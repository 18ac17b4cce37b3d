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

#include "madd.h"

#define EXPORT(name) __attribute__((export_name(#name))) name

static float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

static float dot(const float* x, const float* y, int n) {
  v128_t acc = wasm_f32x4_splat(0);
  int d = 0;
  for (; d + 4 <= n; d += 4) acc = MADD(wasm_v128_load(x + d), wasm_v128_load(y + d), acc);
  float s = hsum(acc);
  for (; d < n; d++) s += x[d] * y[d];
  return s;
}

/** y[0..n) += a·x[0..n). */
static void axpy(float a, const float* x, float* y, int n) {
  v128_t va = wasm_f32x4_splat(a);
  int d = 0;
  for (; d + 4 <= n; d += 4)
    wasm_v128_store(y + d, MADD(va, wasm_v128_load(x + d), wasm_v128_load(y + d)));
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

/**
 * exp_f32 on four lanes (the same Cephes polynomial): 0 below −87, clamped at 88, NaN kept.
 */
static v128_t exp_f32x4(v128_t x) {
  v128_t c = wasm_f32x4_pmax(wasm_f32x4_splat(-87.0f), wasm_f32x4_pmin(wasm_f32x4_splat(88.0f), x));
  v128_t n = wasm_f32x4_floor(wasm_f32x4_add(wasm_f32x4_mul(c, wasm_f32x4_splat(1.44269504088896341f)),
                                             wasm_f32x4_splat(0.5f)));
  v128_t r = wasm_f32x4_sub(c, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_add(r, wasm_f32x4_mul(n, wasm_f32x4_splat(2.12194440e-4f)));
  v128_t z = wasm_f32x4_mul(r, r);
  v128_t y = wasm_f32x4_splat(1.9875691500e-4f);
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(1.3981999507e-3f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(8.3334519073e-3f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(4.1665795894e-2f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(1.6666665459e-1f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(5.0000001201e-1f));
  y = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(y, z), r), wasm_f32x4_splat(1.0f));
  v128_t pow2 = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  y = wasm_f32x4_mul(y, pow2);
  y = wasm_v128_andnot(y, wasm_f32x4_lt(x, wasm_f32x4_splat(-87.0f)));
  return wasm_v128_bitselect(x, y, wasm_f32x4_ne(x, x));
}

/** The dot products of x with four rows y0..y3 (n floats each), as one vector. */
static v128_t dot4(const float* x, const float* y0, const float* y1, const float* y2, const float* y3, int n) {
  v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
  int d = 0;
  for (; d + 4 <= n; d += 4) {
    v128_t xv = wasm_v128_load(x + d);
    a0 = MADD(xv, wasm_v128_load(y0 + d), a0);
    a1 = MADD(xv, wasm_v128_load(y1 + d), a1);
    a2 = MADD(xv, wasm_v128_load(y2 + d), a2);
    a3 = MADD(xv, wasm_v128_load(y3 + d), a3);
  }
  // Lane i of the result is the sum of a_i's lanes: a 4×4 transpose folded into adds.
  v128_t s01 = wasm_f32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5), wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7));
  v128_t s23 = wasm_f32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5), wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7));
  v128_t r = wasm_f32x4_add(wasm_i32x4_shuffle(s01, s23, 0, 1, 4, 5), wasm_i32x4_shuffle(s01, s23, 2, 3, 6, 7));
  if (d < n) {
    float t[4] = {0, 0, 0, 0};
    for (; d < n; d++) {
      t[0] += x[d] * y0[d];
      t[1] += x[d] * y1[d];
      t[2] += x[d] * y2[d];
      t[3] += x[d] * y3[d];
    }
    r = wasm_f32x4_add(r, wasm_v128_load(t));
  }
  return r;
}

/**
 * o[0..D) = Σ_{s<limit} w[s]·(vb + s·ld)[0..D), each element summed over s in order (as a
 * chain of axpys would), 16 columns at a time in registers.
 */
static void weighted_rows(const float* w, const float* vb, long ld, int limit, int D, float* o) {
  int d0 = 0;
  for (; d0 + 16 <= D; d0 += 16) {
    v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (int s = 0; s < limit; s++) {
      const float* vr = vb + s * ld + d0;
      v128_t e = wasm_f32x4_splat(w[s]);
      a0 = MADD(e, wasm_v128_load(vr), a0);
      a1 = MADD(e, wasm_v128_load(vr + 4), a1);
      a2 = MADD(e, wasm_v128_load(vr + 8), a2);
      a3 = MADD(e, wasm_v128_load(vr + 12), a3);
    }
    wasm_v128_store(o + d0, a0);
    wasm_v128_store(o + d0 + 4, a1);
    wasm_v128_store(o + d0 + 8, a2);
    wasm_v128_store(o + d0 + 12, a3);
  }
  for (; d0 + 4 <= D; d0 += 4) {
    v128_t a = wasm_f32x4_splat(0);
    for (int s = 0; s < limit; s++)
      a = MADD(wasm_f32x4_splat(w[s]), wasm_v128_load(vb + s * ld + d0), a);
    wasm_v128_store(o + d0, a);
  }
  for (; d0 < D; d0++) {
    float a = 0.0f;
    for (int s = 0; s < limit; s++) a += w[s] * vb[s * ld + d0];
    o[d0] = a;
  }
}

/**
 * The scaled scores of query row qr against keys 0..limit−1 (kb + s·ld) into z, four keys
 * per dot4; returns their max.
 */
static float scores(const float* qr, const float* kb, long ld, int limit, int D, float scale, float* z) {
  int s = 0;
  v128_t vs = wasm_f32x4_splat(scale);
  for (; s + 4 <= limit; s += 4) {
    const float* k0 = kb + s * ld;
    wasm_v128_store(z + s, wasm_f32x4_mul(dot4(qr, k0, k0 + ld, k0 + 2 * ld, k0 + 3 * ld, D), vs));
  }
  for (; s < limit; s++) z[s] = dot(qr, kb + s * ld, D) * scale;
  float max = -__builtin_inff();
  for (s = 0; s < limit; s++)
    if (z[s] > max) max = z[s];
  return max;
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
        if (limit <= 0) {
          for (int d = 0; d < D; d++) o[d] = 0.0f;
          row_max[lo] = -__builtin_inff();
          row_sum[lo] = 1.0f;
          continue;
        }
        long ld = (long)Hkv * D;
        float max = scores(qr, kb, ld, limit, D, scale, scratch);
        // e = exp(z − max) four at a time (sum in four lanes), then o = Σ e·v.
        v128_t vmax = wasm_f32x4_splat(max);
        v128_t vsum = wasm_f32x4_splat(0);
        int s = 0;
        for (; s + 4 <= limit; s += 4) {
          v128_t e = exp_f32x4(wasm_f32x4_sub(wasm_v128_load(scratch + s), vmax));
          wasm_v128_store(scratch + s, e);
          vsum = wasm_f32x4_add(vsum, e);
        }
        float sum = hsum(vsum);
        for (; s < limit; s++) {
          float e = exp_f32(scratch[s] - max);
          scratch[s] = e;
          sum += e;
        }
        weighted_rows(scratch, vb, ld, limit, D, o);
        float inv = 1.0f / sum;
        for (int d = 0; d < D; d++) o[d] *= inv;
        row_max[lo] = max;
        row_sum[lo] = sum;
      }
    }
  }
}

/** Query rows whose dk and dv terms are added in one pass over a key's rows (see below). */
#define QROWS 4

/**
 * y[0..n) += Σ_{i<rows} a[i]·x[i][0..n), the terms added in order i = 0, 1, …: each element
 * gets exactly the operations of `rows` axpy calls in a row (so the same bits), but y is loaded
 * and stored once instead of once per row.
 */
static void axpy_rows(const float* a, const float* const* x, int rows, float* y, int n) {
  int d = 0;
  for (; d + 4 <= n; d += 4) {
    v128_t acc = wasm_v128_load(y + d);
    for (int i = 0; i < rows; i++) acc = MADD(wasm_f32x4_splat(a[i]), wasm_v128_load(x[i] + d), acc);
    wasm_v128_store(y + d, acc);
  }
  for (; d < n; d++)
    for (int i = 0; i < rows; i++) y[d] += a[i] * x[i][d];
}

/**
 * Writes dq (when non-null) and adds into dk, dv (when non-null). scratch: nth · (D + 2·S·D +
 * 2·QROWS·S) floats (per thread: the query gradient row, the kv head's key and value gradients,
 * added once per head, and QROWS rows' probabilities and score gradients). Thread `tid` of
 * `nth` takes every nth (batch, kv head) pair: the only writer of that pair's dk, dv and of
 * its query heads' dq, with the arithmetic of one thread. Query rows go QROWS at a time: their
 * probabilities and score gradients first, then each key's dk and dv rows take the rows' terms
 * in one pass, in row order, as a row-at-a-time loop would add them.
 */
void EXPORT(wasm_attention_backward)(const float* q, const float* k, const float* v, int B, int T, int S, int H,
                                     int Hkv, int D, int cap, float scale, int offset, int causal, const float* out,
                                     const float* lse, const float* dout, float* dq, float* dk, float* dv,
                                     float* scratch, int tid, int nth) {
  int group = H / Hkv;
  long ld = (long)Hkv * D;
  float* dq_acc = scratch + (long)tid * (D + 2L * S * D + 2L * QROWS * S);
  float* dk_acc = dq_acc + D;
  float* dv_acc = dk_acc + (long)S * D;
  float* probs = dv_acc + (long)S * D;
  float* dscores = probs + (long)QROWS * S;
  for (int b = 0; b < B; b++) {
    for (int hk = 0; hk < Hkv; hk++) {
      if ((b * Hkv + hk) % nth != tid) continue;
      long kv_base = ((long)b * cap * Hkv + hk) * D;
      const float* kb = k + kv_base;
      const float* vb = v + kv_base;
      for (long i = 0; i < (long)S * D; i++) dk_acc[i] = dv_acc[i] = 0.0f;
      for (int h = hk * group; h < (hk + 1) * group; h++) {
        for (int t0 = 0; t0 < T; t0 += QROWS) {
          int nt = T - t0 < QROWS ? T - t0 : QROWS;
          int lim[QROWS];
          const float* qrs[QROWS];
          const float* gs[QROWS];
          int most = 0;
          for (int i = 0; i < nt; i++) {
            int t = t0 + i;
            long qo = (((long)b * T + t) * H + h) * D;
            int limit = key_limit(causal, S, offset, t);
            lim[i] = limit > 0 ? limit : 0;
            qrs[i] = q + qo;
            gs[i] = dout + qo;
            if (limit <= 0) {
              if (dq)
                for (int d = 0; d < D; d++) dq[qo + d] = 0.0f;
              continue;
            }
            if (limit > most) most = limit;
            const float* qr = qrs[i];
            const float* g = gs[i];
            float* prob = probs + (long)i * S;
            float* dscore = dscores + (long)i * S;
            float l = lse[(b * H + h) * T + t];
            float Di = dot(g, out + qo, D);
            // P = exp(q·k·scale − lse) and dS = P·(dout·v − Dᵢ)·scale, four keys at a time.
            v128_t vl = wasm_f32x4_splat(l), vDi = wasm_f32x4_splat(Di), vs = wasm_f32x4_splat(scale);
            int s = 0;
            for (; s + 4 <= limit; s += 4) {
              const float* k0 = kb + s * ld;
              const float* v0 = vb + s * ld;
              v128_t z = wasm_f32x4_mul(dot4(qr, k0, k0 + ld, k0 + 2 * ld, k0 + 3 * ld, D), vs);
              v128_t pr = exp_f32x4(wasm_f32x4_sub(z, vl));
              v128_t dP = dot4(g, v0, v0 + ld, v0 + 2 * ld, v0 + 3 * ld, D);
              wasm_v128_store(prob + s, pr);
              wasm_v128_store(dscore + s, wasm_f32x4_mul(wasm_f32x4_mul(pr, wasm_f32x4_sub(dP, vDi)), vs));
            }
            for (; s < limit; s++) {
              float pr = exp_f32(dot(qr, kb + s * ld, D) * scale - l);
              float dP = dot(g, vb + s * ld, D);
              prob[s] = pr;
              dscore[s] = pr * (dP - Di) * scale;
            }
            if (dq) weighted_rows(dscore, kb, ld, limit, D, dq + qo);
          }
          // Key s takes the terms of the rows that see it (s < lim[i]), in row order.
          for (int s = 0; s < most; s++) {
            float ds[QROWS], ps[QROWS];
            const float* qx[QROWS];
            const float* gx[QROWS];
            int rows = 0;
            for (int i = 0; i < nt; i++) {
              if (s >= lim[i]) continue;
              ds[rows] = dscores[(long)i * S + s];
              ps[rows] = probs[(long)i * S + s];
              qx[rows] = qrs[i];
              gx[rows] = gs[i];
              rows++;
            }
            if (dk) axpy_rows(ds, qx, rows, dk_acc + (long)s * D, D);
            if (dv) axpy_rows(ps, gx, rows, dv_acc + (long)s * D, D);
          }
        }
      }
      for (int s = 0; s < S; s++) {
        long ko = kv_base + (long)s * ld;
        if (dk) axpy(1.0f, dk_acc + (long)s * D, dk + ko, D);
        if (dv) axpy(1.0f, dv_acc + (long)s * D, dv + ko, D);
      }
    }
  }
}
