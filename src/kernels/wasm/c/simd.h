// SIMD128 helpers shared by optim.c and rows.c: partial loads and stores at a row's tail,
// the split of a call between threads, and a four-lane e^x. (gemm.c, attention.c and ops.c
// keep their own copies.)
#pragma once
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name))) name

/** Loads lanes i..i+3 of x, or the first `left` of them (the rest 0) at the tail. */
static inline v128_t load_part(const float* x, int left) {
  if (left >= 4) return wasm_v128_load(x);
  float t[4] = {0, 0, 0, 0};
  for (int j = 0; j < left; j++) t[j] = x[j];
  return wasm_v128_load(t);
}

/** Stores lanes 0..3 of v at y, or only the first `left` of them at the tail. */
static inline void store_part(float* y, v128_t v, int left) {
  if (left >= 4) {
    wasm_v128_store(y, v);
    return;
  }
  float t[4];
  wasm_v128_store(t, v);
  for (int j = 0; j < left; j++) y[j] = t[j];
}

/**
 * Part `part` of `parts` of [0, n) in whole units of `unit` (the last unit may be short). A
 * split on whole f32x4 groups or whole rows leaves each element's arithmetic as it is on
 * one thread, so the results are bit-identical for any thread count.
 */
static inline void split(int n, int unit, int part, int parts, int* lo, int* hi) {
  int units = (n + unit - 1) / unit;
  int a = (int)((long long)units * part / parts);
  int b = (int)((long long)units * (part + 1) / parts);
  *lo = a * unit < n ? a * unit : n;
  *hi = b * unit < n ? b * unit : n;
}

static inline float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

/**
 * e^x on four lanes: Cephes' expf (range reduction by ln 2 in two parts, degree-6
 * polynomial, about 1 ulp); 0 below −87 (so e^−∞ is 0), clamped at 88, NaN kept.
 */
static inline v128_t exp0_f32x4(v128_t x) {
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
