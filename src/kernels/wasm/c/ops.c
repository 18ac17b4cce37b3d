// Element-wise kernels of the MLP in SIMD128: SiLU·mul and its backward, as
// kernels/ref/nn.ts computes them (in f32 here, with a vector expf).
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name))) name

/**
 * e^x on four lanes: Cephes' expf (range reduction by ln 2 in two parts, degree-6
 * polynomial, about 1 ulp), x clamped to [−87, 88] so 2ⁿ stays a normal number.
 */
static v128_t exp_f32x4(v128_t x) {
  x = wasm_f32x4_pmax(wasm_f32x4_splat(-87.0f), wasm_f32x4_pmin(wasm_f32x4_splat(88.0f), x));
  v128_t n = wasm_f32x4_floor(wasm_f32x4_add(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)), wasm_f32x4_splat(0.5f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
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
  return wasm_f32x4_mul(y, pow2);
}

/** σ(g) = 1 / (1 + e^−g) on four lanes. */
static v128_t sigmoid_f32x4(v128_t g) {
  v128_t one = wasm_f32x4_splat(1.0f);
  return wasm_f32x4_div(one, wasm_f32x4_add(one, exp_f32x4(wasm_f32x4_neg(g))));
}

/** Loads lanes i..i+3 of x, or the first `left` of them (the rest 0) at the tail. */
static v128_t load_part(const float* x, int left) {
  if (left >= 4) return wasm_v128_load(x);
  float t[4] = {0, 0, 0, 0};
  for (int j = 0; j < left; j++) t[j] = x[j];
  return wasm_v128_load(t);
}

static void store_part(float* y, v128_t v, int left) {
  if (left >= 4) {
    wasm_v128_store(y, v);
    return;
  }
  float t[4];
  wasm_v128_store(t, v);
  for (int j = 0; j < left; j++) y[j] = t[j];
}

/** out = silu(gate)·up. */
void EXPORT(wasm_silu_mul)(const float* gate, const float* up, float* out, int n) {
  for (int i = 0; i < n; i += 4) {
    int left = n - i;
    v128_t g = load_part(gate + i, left);
    v128_t v = wasm_f32x4_mul(wasm_f32x4_mul(g, sigmoid_f32x4(g)), load_part(up + i, left));
    store_part(out + i, v, left);
  }
}

/** dgate (+)= dy·up·σ(g)·(1 + g·(1−σ(g))), dup (+)= dy·g·σ(g); either may be null (0). */
void EXPORT(wasm_silu_mul_backward)(const float* gate, const float* up, const float* dy, float* dgate, float* dup,
                                    int n, int acc) {
  v128_t one = wasm_f32x4_splat(1.0f);
  for (int i = 0; i < n; i += 4) {
    int left = n - i;
    v128_t g = load_part(gate + i, left);
    v128_t s = sigmoid_f32x4(g);
    v128_t d = load_part(dy + i, left);
    if (dgate) {
      v128_t inner = wasm_f32x4_add(one, wasm_f32x4_mul(g, wasm_f32x4_sub(one, s)));
      v128_t v = wasm_f32x4_mul(wasm_f32x4_mul(wasm_f32x4_mul(d, load_part(up + i, left)), s), inner);
      if (acc) v = wasm_f32x4_add(load_part(dgate + i, left), v);
      store_part(dgate + i, v, left);
    }
    if (dup) {
      v128_t v = wasm_f32x4_mul(wasm_f32x4_mul(d, g), s);
      if (acc) v = wasm_f32x4_add(load_part(dup + i, left), v);
      store_part(dup + i, v, left);
    }
  }
}
