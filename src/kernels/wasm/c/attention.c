// Scaled-dot-product attention with GQA, causal offset and a KV capacity (forward and
// backward), the same algorithm as kernels/ref/attention.ts in f32 with SIMD128: query rows
// go QB (4) at a time against keys KB (8) at a time in register tiles, as a GEMM's micro-kernel
// does, never forming the T×S matrix; the backward recomputes the probabilities from the saved
// log-sum-exp (FlashAttention-2: Dᵢ = Σ dout⊙out, dS = P⊙(dP − Dᵢ)).
//
// Every score is one chain of multiply-adds over the head dimension in order (the same in the
// forward and the backward, so the backward's P is the forward's), and every sum over keys or
// query rows adds its terms in index order: an element's arithmetic never depends on which
// thread or tile computes it, so results are bit-identical on any thread count.
//
// The forward leaves each row's max and sum of exponentials in two arrays; the host turns
// them into lse = max + log(sum) (so no logarithm is needed here). Shapes and lengths are
// checked by the host (kernels/wasm/attention.ts) before the call; it sizes the scratch with
// the formulas in wasm_attention and wasm_attention_backward's comments.
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
 * e^x on four lanes for x ≤ 0 (arguments here are score − max or score − lse): Cephes' expf,
 * range reduction by ln 2 in two parts and a degree-6 polynomial, about 1 ulp; 0 below −87
 * (e^−87 is at the edge of the normal range), clamped at 88, NaN kept.
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

#define QB 4 /* query rows per tile */
#define KB 8 /* keys per tile */

/** Keys rounded up to whole tiles: the row length of the packed keys and of P and dS. */
static int keys_padded(int S) { return (S + KB - 1) / KB * KB; }

/** Keys query t may see: 0..limit−1. */
static int key_limit(int causal, int S, int offset, int t) {
  if (!causal) return S;
  int l = offset + t + 1;
  return l < S ? l : S;
}

/** kt[d·sp + s] = (kb + s·ld)[d] for s < S, zero for S ≤ s < sp: one kv head's keys, transposed. */
static void pack_keys(const float* kb, long ld, int S, int D, int sp, float* kt) {
  for (int s = 0; s < S; s++) {
    const float* r = kb + s * ld;
    for (int d = 0; d < D; d++) kt[(long)d * sp + s] = r[d];
  }
  for (int d = 0; d < D; d++)
    for (int s = S; s < sp; s++) kt[(long)d * sp + s] = 0.0f;
}

/**
 * z[i·KB + j] = Σ_d x[i][d]·kt[d·sp + s0 + j] for the QB rows x[i] and keys s0..s0+KB−1: one
 * multiply-add chain over d in order per element, 8 accumulators in registers.
 */
static void tile_dots(const float* const* x, const float* kt, int sp, int s0, int D, float* z) {
  const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
  v128_t c00 = wasm_f32x4_splat(0), c01 = c00, c10 = c00, c11 = c00;
  v128_t c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  const float* b = kt + s0;
  for (int d = 0; d < D; d++, b += sp) {
    v128_t b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 4), a;
    a = wasm_v128_load32_splat(x0 + d);
    c00 = MADD(a, b0, c00);
    c01 = MADD(a, b1, c01);
    a = wasm_v128_load32_splat(x1 + d);
    c10 = MADD(a, b0, c10);
    c11 = MADD(a, b1, c11);
    a = wasm_v128_load32_splat(x2 + d);
    c20 = MADD(a, b0, c20);
    c21 = MADD(a, b1, c21);
    a = wasm_v128_load32_splat(x3 + d);
    c30 = MADD(a, b0, c30);
    c31 = MADD(a, b1, c31);
  }
  wasm_v128_store(z + 0, c00);
  wasm_v128_store(z + 4, c01);
  wasm_v128_store(z + 8, c10);
  wasm_v128_store(z + 12, c11);
  wasm_v128_store(z + 16, c20);
  wasm_v128_store(z + 20, c21);
  wasm_v128_store(z + 24, c30);
  wasm_v128_store(z + 28, c31);
}

/** The smallest and largest of lim[0..nt). */
static void limit_range(const int* lim, int nt, int* lo, int* hi) {
  *lo = lim[0];
  *hi = lim[0];
  for (int i = 1; i < nt; i++) {
    if (lim[i] < *lo) *lo = lim[i];
    if (lim[i] > *hi) *hi = lim[i];
  }
}

/**
 * y[i][d] = Σ_{s<lim[i]} w[i·ws + s]·(vb + s·ld)[d] for rows i < nt (each element summed over
 * s in order, from 0): the keys every row sees go through a QB-row × 8-column register tile
 * (rows past nt repeat row 0 and are dropped), the rest row by row, continuing the same sums.
 */
static void rows_times_keys(const float* w, int ws, const int* lim, int nt, const float* vb, long ld, int D,
                            float* const* y) {
  int common, most;
  limit_range(lim, nt, &common, &most);
  const float* w0 = w;
  const float* w1 = nt > 1 ? w + ws : w;
  const float* w2 = nt > 2 ? w + 2 * ws : w;
  const float* w3 = nt > 3 ? w + 3 * ws : w;
  int d0 = 0;
  for (; d0 + 8 <= D; d0 += 8) {
    v128_t acc[QB][2];
    v128_t z = wasm_f32x4_splat(0);
    for (int i = 0; i < QB; i++) acc[i][0] = acc[i][1] = z;
    for (int s = 0; s < common; s++) {
      const float* vr = vb + s * ld + d0;
      v128_t b0 = wasm_v128_load(vr), b1 = wasm_v128_load(vr + 4), a;
      a = wasm_v128_load32_splat(w0 + s);
      acc[0][0] = MADD(a, b0, acc[0][0]);
      acc[0][1] = MADD(a, b1, acc[0][1]);
      a = wasm_v128_load32_splat(w1 + s);
      acc[1][0] = MADD(a, b0, acc[1][0]);
      acc[1][1] = MADD(a, b1, acc[1][1]);
      a = wasm_v128_load32_splat(w2 + s);
      acc[2][0] = MADD(a, b0, acc[2][0]);
      acc[2][1] = MADD(a, b1, acc[2][1]);
      a = wasm_v128_load32_splat(w3 + s);
      acc[3][0] = MADD(a, b0, acc[3][0]);
      acc[3][1] = MADD(a, b1, acc[3][1]);
    }
    for (int i = 0; i < nt; i++) {
      const float* wi = w + (long)i * ws;
      v128_t r0 = acc[i][0], r1 = acc[i][1];
      for (int s = common < 0 ? 0 : common; s < lim[i]; s++) {
        const float* vr = vb + s * ld + d0;
        v128_t a = wasm_v128_load32_splat(wi + s);
        r0 = MADD(a, wasm_v128_load(vr), r0);
        r1 = MADD(a, wasm_v128_load(vr + 4), r1);
      }
      wasm_v128_store(y[i] + d0, r0);
      wasm_v128_store(y[i] + d0 + 4, r1);
    }
  }
  for (; d0 + 4 <= D; d0 += 4) {
    for (int i = 0; i < nt; i++) {
      const float* wi = w + (long)i * ws;
      v128_t r = wasm_f32x4_splat(0);
      for (int s = 0; s < lim[i]; s++) r = MADD(wasm_v128_load32_splat(wi + s), wasm_v128_load(vb + s * ld + d0), r);
      wasm_v128_store(y[i] + d0, r);
    }
  }
  for (; d0 < D; d0++) {
    for (int i = 0; i < nt; i++) {
      const float* wi = w + (long)i * ws;
      float r = 0.0f;
      for (int s = 0; s < lim[i]; s++) r += wi[s] * vb[s * ld + d0];
      y[i][d0] = r;
    }
  }
}

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
 * acc row s (D floats, rows D apart) += Σ_{i<nt, s<lim[i]} w[i·ws + s]·x[i][0..D) for keys
 * s < most, the terms added in row order: the keys every row sees four at a time through a
 * 4-key × 8-column tile (loaded once, nt rows' terms added, stored once), the rest key by key.
 */
static void keys_times_rows(const float* w, int ws, const int* lim, int nt, const float* const* x, int D,
                            float* acc) {
  int common, most;
  limit_range(lim, nt, &common, &most);
  int s = 0;
  if (D % 8 == 0) {
    for (; s + 4 <= common; s += 4) {
      for (int d0 = 0; d0 < D; d0 += 8) {
        float* r0 = acc + (long)s * D + d0;
        float* r1 = r0 + D;
        float* r2 = r1 + D;
        float* r3 = r2 + D;
        v128_t c00 = wasm_v128_load(r0), c01 = wasm_v128_load(r0 + 4);
        v128_t c10 = wasm_v128_load(r1), c11 = wasm_v128_load(r1 + 4);
        v128_t c20 = wasm_v128_load(r2), c21 = wasm_v128_load(r2 + 4);
        v128_t c30 = wasm_v128_load(r3), c31 = wasm_v128_load(r3 + 4);
        for (int i = 0; i < nt; i++) {
          const float* wi = w + (long)i * ws + s;
          v128_t b0 = wasm_v128_load(x[i] + d0), b1 = wasm_v128_load(x[i] + d0 + 4), a;
          a = wasm_v128_load32_splat(wi);
          c00 = MADD(a, b0, c00);
          c01 = MADD(a, b1, c01);
          a = wasm_v128_load32_splat(wi + 1);
          c10 = MADD(a, b0, c10);
          c11 = MADD(a, b1, c11);
          a = wasm_v128_load32_splat(wi + 2);
          c20 = MADD(a, b0, c20);
          c21 = MADD(a, b1, c21);
          a = wasm_v128_load32_splat(wi + 3);
          c30 = MADD(a, b0, c30);
          c31 = MADD(a, b1, c31);
        }
        wasm_v128_store(r0, c00);
        wasm_v128_store(r0 + 4, c01);
        wasm_v128_store(r1, c10);
        wasm_v128_store(r1 + 4, c11);
        wasm_v128_store(r2, c20);
        wasm_v128_store(r2 + 4, c21);
        wasm_v128_store(r3, c30);
        wasm_v128_store(r3 + 4, c31);
      }
    }
  }
  for (; s < most; s++) {
    float a[QB];
    const float* xs[QB];
    int rows = 0;
    for (int i = 0; i < nt; i++) {
      if (s >= lim[i]) continue;
      a[rows] = w[(long)i * ws + s];
      xs[rows] = x[i];
      rows++;
    }
    axpy_rows(a, xs, rows, acc + (long)s * D, D);
  }
}

/** The rows t0..t0+nt−1 of query head h, batch b: their addresses in a (B,T,H,D) array, and key limits. */
struct row_block {
  int nt;
  long at[QB];
  int lim[QB];
};

static void row_block(int b, int h, int t0, int T, int H, int D, int S, int offset, int causal,
                      struct row_block* rb) {
  rb->nt = T - t0 < QB ? T - t0 : QB;
  for (int i = 0; i < QB; i++) {
    int t = t0 + (i < rb->nt ? i : 0);
    rb->at[i] = (((long)b * T + t) * H + h) * D;
    int l = key_limit(causal, S, offset, t);
    rb->lim[i] = l > 0 ? l : 0;
  }
}

/**
 * The scaled scores of the block's rows (x: QB row addresses) against keys 0..most−1 into z
 * (rows sp apart), KB keys per tile. Entries past a row's limit are computed but never read.
 */
static void block_scores(const float* const* x, const float* kt, int sp, int most, int D, float scale, float* z) {
  float tile[QB * KB] __attribute__((aligned(16)));
  v128_t vs = wasm_f32x4_splat(scale);
  for (int s0 = 0; s0 < most; s0 += KB) {
    tile_dots(x, kt, sp, s0, D, tile);
    for (int i = 0; i < QB; i++) {
      wasm_v128_store(z + (long)i * sp + s0, wasm_f32x4_mul(wasm_v128_load(tile + i * KB), vs));
      wasm_v128_store(z + (long)i * sp + s0 + 4, wasm_f32x4_mul(wasm_v128_load(tile + i * KB + 4), vs));
    }
  }
}

/**
 * q (B,T,H,D), k, v (B,cap,Hkv,D) → out (B,T,H,D), row_max and row_sum (B,H,T).
 * scratch: nth · (D + QB)·keys_padded(S) floats (per part: one kv head's packed keys and a
 * block's scores). Part `tid` of `nth` takes every nth (batch, kv head) pair and its query
 * heads' rows; each row's arithmetic is the same whoever runs it.
 */
void EXPORT(wasm_attention)(const float* q, const float* k, const float* v, int B, int T, int S, int H, int Hkv,
                            int D, int cap, float scale, int offset, int causal, float* out, float* row_max,
                            float* row_sum, float* scratch, int tid, int nth) {
  int group = H / Hkv;
  int sp = keys_padded(S);
  float* kt = scratch + (long)tid * (D + QB) * sp;
  float* z = kt + (long)D * sp;
  long ld = (long)Hkv * D;
  for (int b = 0; b < B; b++) {
    for (int hk = 0; hk < Hkv; hk++) {
      if ((b * Hkv + hk) % nth != tid) continue;
      const float* kb = k + ((long)b * cap * Hkv + hk) * D;
      const float* vb = v + ((long)b * cap * Hkv + hk) * D;
      pack_keys(kb, ld, S, D, sp, kt);
      for (int h = hk * group; h < (hk + 1) * group; h++) {
        for (int t0 = 0; t0 < T; t0 += QB) {
          struct row_block rb;
          row_block(b, h, t0, T, H, D, S, offset, causal, &rb);
          const float* x[QB];
          float* o[QB];
          for (int i = 0; i < QB; i++) {
            x[i] = q + rb.at[i];
            o[i] = out + rb.at[i];
          }
          int common, most;
          limit_range(rb.lim, rb.nt, &common, &most);
          block_scores(x, kt, sp, most, D, scale, z);
          float sums[QB];
          for (int i = 0; i < rb.nt; i++) {
            int limit = rb.lim[i];
            int lo = (b * H + h) * T + t0 + i;
            float* zi = z + (long)i * sp;
            if (limit == 0) {
              row_max[lo] = -__builtin_inff();
              row_sum[lo] = 1.0f;
              sums[i] = 1.0f;
              continue;
            }
            float max = -__builtin_inff();
            for (int s = 0; s < limit; s++)
              if (zi[s] > max) max = zi[s];
            // e = exp(z − max) four at a time (sum in four lanes, then the last keys one by one).
            v128_t vmax = wasm_f32x4_splat(max);
            v128_t vsum = wasm_f32x4_splat(0);
            int s = 0;
            for (; s + 4 <= limit; s += 4) {
              v128_t e = exp_f32x4(wasm_f32x4_sub(wasm_v128_load(zi + s), vmax));
              wasm_v128_store(zi + s, e);
              vsum = wasm_f32x4_add(vsum, e);
            }
            float sum = hsum(vsum);
            if (s < limit) {
              float e[4] __attribute__((aligned(16)));
              wasm_v128_store(e, exp_f32x4(wasm_f32x4_sub(wasm_v128_load(zi + s), vmax)));
              for (int j = 0; s + j < limit; j++) {
                zi[s + j] = e[j];
                sum += e[j];
              }
            }
            row_max[lo] = max;
            row_sum[lo] = sum;
            sums[i] = sum;
          }
          rows_times_keys(z, sp, rb.lim, rb.nt, vb, ld, D, o);
          for (int i = 0; i < rb.nt; i++) {
            float inv = 1.0f / sums[i];
            for (int d = 0; d < D; d++) o[i][d] *= inv;
          }
        }
      }
    }
  }
}

/**
 * Writes dq (when non-null) and adds into dk, dv (when non-null). scratch: nth · (2·S·D +
 * (2·D + 2·QB)·keys_padded(S)) floats (per part: the kv head's key and value gradients, added
 * into dk and dv once per head; its packed keys and values; a block's P and dS). Part `tid` of
 * `nth` takes every nth (batch, kv head) pair: the only writer of that pair's dk, dv and of
 * its query heads' dq, with the arithmetic of one thread. Query rows go QB at a time: their
 * probabilities and score gradients in key tiles first, then dq = dS·K, and each key's dk and
 * dv rows take the rows' terms in row order, as a row-at-a-time loop would add them.
 */
void EXPORT(wasm_attention_backward)(const float* q, const float* k, const float* v, int B, int T, int S, int H,
                                     int Hkv, int D, int cap, float scale, int offset, int causal, const float* out,
                                     const float* lse, const float* dout, float* dq, float* dk, float* dv,
                                     float* scratch, int tid, int nth) {
  int group = H / Hkv;
  long ld = (long)Hkv * D;
  int sp = keys_padded(S);
  float* dk_acc = scratch + (long)tid * (2L * S * D + (2L * D + 2 * QB) * sp);
  float* dv_acc = dk_acc + (long)S * D;
  float* kt = dv_acc + (long)S * D;
  float* vt = kt + (long)D * sp;
  float* probs = vt + (long)D * sp;
  float* dscores = probs + (long)QB * sp;
  for (int b = 0; b < B; b++) {
    for (int hk = 0; hk < Hkv; hk++) {
      if ((b * Hkv + hk) % nth != tid) continue;
      long kv_base = ((long)b * cap * Hkv + hk) * D;
      const float* kb = k + kv_base;
      const float* vb = v + kv_base;
      pack_keys(kb, ld, S, D, sp, kt);
      pack_keys(vb, ld, S, D, sp, vt);
      for (long i = 0; i < (long)S * D; i++) dk_acc[i] = dv_acc[i] = 0.0f;
      for (int h = hk * group; h < (hk + 1) * group; h++) {
        for (int t0 = 0; t0 < T; t0 += QB) {
          struct row_block rb;
          row_block(b, h, t0, T, H, D, S, offset, causal, &rb);
          const float* qx[QB];
          const float* gx[QB];
          float* dqx[QB];
          for (int i = 0; i < QB; i++) {
            qx[i] = q + rb.at[i];
            gx[i] = dout + rb.at[i];
            dqx[i] = dq ? dq + rb.at[i] : 0;
          }
          int common, most;
          limit_range(rb.lim, rb.nt, &common, &most);
          // Scores into probs and dP = dout·v into dscores, then P = exp(z − lse) and
          // dS = P·(dP − Dᵢ)·scale in place, four keys at a time.
          block_scores(qx, kt, sp, most, D, scale, probs);
          block_scores(gx, vt, sp, most, D, 1.0f, dscores);
          for (int i = 0; i < rb.nt; i++) {
            float l = lse[(b * H + h) * T + t0 + i];
            float Di = dot(gx[i], out + rb.at[i], D);
            v128_t vl = wasm_f32x4_splat(l), vDi = wasm_f32x4_splat(Di), vs = wasm_f32x4_splat(scale);
            float* pi = probs + (long)i * sp;
            float* di = dscores + (long)i * sp;
            for (int s = 0; s < rb.lim[i]; s += 4) {
              v128_t pr = exp_f32x4(wasm_f32x4_sub(wasm_v128_load(pi + s), vl));
              wasm_v128_store(pi + s, pr);
              wasm_v128_store(di + s, wasm_f32x4_mul(wasm_f32x4_mul(pr, wasm_f32x4_sub(wasm_v128_load(di + s), vDi)), vs));
            }
          }
          if (dq) rows_times_keys(dscores, sp, rb.lim, rb.nt, kb, ld, D, dqx);
          if (dk) keys_times_rows(dscores, sp, rb.lim, rb.nt, qx, D, dk_acc);
          if (dv) keys_times_rows(probs, sp, rb.lim, rb.nt, gx, D, dv_acc);
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
