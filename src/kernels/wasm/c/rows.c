// Row kernels in SIMD128, as kernels/ref/nn.ts computes them (in f32 here, sums in four
// lanes, with a vector e^x): rotary embedding, softmax and log-softmax with their backwards.
// Each thread takes whole rows, so every element's arithmetic is one thread's and the
// results are bit-identical for any thread count. Sizes are checked by the host (rows.ts).
#include "simd.h"

/**
 * Rotary embedding, HF rotate-half layout, on the rows (b, t, h) of x (B,T,H,D) that are
 * thread `tid`'s: out_i = x_i·c − x_{i+D/2}·s, out_{i+D/2} = x_{i+D/2}·c + x_i·s with
 * c, s from row t of cos, sin (T, D/2); s negated when `inverse`. D is even.
 */
void EXPORT(wasm_rope)(const float* x, const float* cos, const float* sin, int B, int T, int H, int D, int inverse,
                       float* out, int tid, int nth) {
  int r0, r1;
  split(B * T * H, 1, tid, nth, &r0, &r1);
  int half = D / 2;
  v128_t sgn = wasm_f32x4_splat(inverse ? -1.0f : 1.0f);
  for (int r = r0; r < r1; r++) {
    int t = (r / H) % T;
    const float* xr = x + (long)r * D;
    float* o = out + (long)r * D;
    const float* cr = cos + (long)t * half;
    const float* sr = sin + (long)t * half;
    for (int i = 0; i < half; i += 4) {
      int left = half - i;
      v128_t c = load_part(cr + i, left);
      v128_t s = wasm_f32x4_mul(sgn, load_part(sr + i, left));
      v128_t x1 = load_part(xr + i, left);
      v128_t x2 = load_part(xr + half + i, left);
      store_part(o + i, wasm_f32x4_sub(wasm_f32x4_mul(x1, c), wasm_f32x4_mul(x2, s)), left);
      store_part(o + half + i, wasm_f32x4_add(wasm_f32x4_mul(x2, c), wasm_f32x4_mul(x1, s)), left);
    }
  }
}

/** Σ x[0..C) in four lanes, then the tail. */
static float row_sum(const float* x, int C) {
  v128_t a = wasm_f32x4_splat(0);
  int c = 0;
  for (; c + 4 <= C; c += 4) a = wasm_f32x4_add(a, wasm_v128_load(x + c));
  float s = hsum(a);
  for (; c < C; c++) s += x[c];
  return s;
}

/**
 * out = softmax(x) over each row of x (N,C) that is thread `tid`'s: e^(x − max) / Σ. An all
 * −∞ row gives NaN, as the reference (and torch).
 */
void EXPORT(wasm_softmax)(const float* x, int N, int C, float* out, int tid, int nth) {
  int r0, r1;
  split(N, 1, tid, nth, &r0, &r1);
  for (int r = r0; r < r1; r++) {
    const float* xr = x + (long)r * C;
    float* o = out + (long)r * C;
    float max = -__builtin_inff();
    for (int c = 0; c < C; c++)
      if (xr[c] > max) max = xr[c];
    if (max == -__builtin_inff()) max = 0.0f;
    v128_t vmax = wasm_f32x4_splat(max);
    for (int c = 0; c < C; c += 4) store_part(o + c, exp0_f32x4(wasm_f32x4_sub(load_part(xr + c, C - c), vmax)), C - c);
    v128_t inv = wasm_f32x4_splat(1.0f / row_sum(o, C));
    for (int c = 0; c < C; c += 4) store_part(o + c, wasm_f32x4_mul(load_part(o + c, C - c), inv), C - c);
  }
}

/** out = x − lse[r] on each row of x (N,C) that is thread `tid`'s (log-softmax, lse from the host). */
void EXPORT(wasm_row_sub)(const float* x, const float* lse, int N, int C, float* out, int tid, int nth) {
  int r0, r1;
  split(N, 1, tid, nth, &r0, &r1);
  for (int r = r0; r < r1; r++) {
    const float* xr = x + (long)r * C;
    float* o = out + (long)r * C;
    v128_t l = wasm_f32x4_splat(lse[r]);
    for (int c = 0; c < C; c += 4) store_part(o + c, wasm_f32x4_sub(load_part(xr + c, C - c), l), C - c);
  }
}

/**
 * The softmax family's backward on thread `tid`'s rows of (N,C): with log = 0, y = softmax(x)
 * and dx (+)= y·(dy − Σ dy·y); with log = 1, y = logSoftmax(x) and dx (+)= dy − e^y·Σ dy.
 */
void EXPORT(wasm_softmax_backward)(const float* y, const float* dy, int N, int C, float* dx, int acc, int log,
                                   int tid, int nth) {
  int r0, r1;
  split(N, 1, tid, nth, &r0, &r1);
  for (int r = r0; r < r1; r++) {
    const float* yr = y + (long)r * C;
    const float* g = dy + (long)r * C;
    float* d = dx + (long)r * C;
    float k;
    if (log) {
      k = row_sum(g, C);
    } else {
      v128_t a = wasm_f32x4_splat(0);
      int c = 0;
      for (; c + 4 <= C; c += 4) a = wasm_f32x4_add(a, wasm_f32x4_mul(wasm_v128_load(g + c), wasm_v128_load(yr + c)));
      k = hsum(a);
      for (; c < C; c++) k += g[c] * yr[c];
    }
    v128_t vk = wasm_f32x4_splat(k);
    for (int c = 0; c < C; c += 4) {
      int left = C - c;
      v128_t yv = load_part(yr + c, left);
      v128_t gv = load_part(g + c, left);
      v128_t v = log ? wasm_f32x4_sub(gv, wasm_f32x4_mul(exp0_f32x4(yv), vk)) : wasm_f32x4_mul(yv, wasm_f32x4_sub(gv, vk));
      if (acc) v = wasm_f32x4_add(load_part(d + c, left), v);
      store_part(d + c, v, left);
    }
  }
}
