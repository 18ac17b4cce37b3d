// Element-wise kernels in SIMD128 whose results are bit for bit the reference's
// (kernels/ref/elementwise.ts, optim.ts): broadcast binary ops (an f32 add, subtract,
// multiply or divide of two f32 values is the f64 one rounded to f32) and axpy (in f64 lanes,
// as the reference's JavaScript numbers). Threads take ranges of whole f32x4 groups of the
// flat output. Sizes are checked by the host (elementwise.ts).
#include "simd.h"

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_EQ, OP_MAX };

static v128_t apply(int op, v128_t a, v128_t b) {
  switch (op) {
    case OP_ADD:
      return wasm_f32x4_add(a, b);
    case OP_SUB:
      return wasm_f32x4_sub(a, b);
    case OP_MUL:
      return wasm_f32x4_mul(a, b);
    case OP_DIV:
      return wasm_f32x4_div(a, b);
    case OP_EQ:
      return wasm_v128_and(wasm_f32x4_eq(a, b), wasm_f32x4_splat(1.0f));
    default:
      // NaN propagates and +0 > −0, as Math.max (torch.maximum).
      return wasm_f32x4_max(a, b);
  }
}

/** Lanes i..i+3 of a run with stride 0 (one value, splat) or 1, the first `left` at the tail. */
static v128_t load_run(const float* x, int stride, int left) {
  return stride == 0 ? wasm_f32x4_splat(*x) : load_part(x, left);
}

/**
 * out = a ∘ b over `rows` runs of `inner` outputs (out contiguous): run r reads a from
 * a_off[r] with stride sa and b from b_off[r] with stride sb (each 0: broadcast, or 1).
 * Thread `tid` writes its range of whole f32x4 groups of the flat output.
 */
void EXPORT(wasm_binary)(int op, const float* a, const int* a_off, int sa, const float* b, const int* b_off, int sb,
                         float* out, int rows, int inner, int tid, int nth) {
  if (inner == 0) return;
  long long total = (long long)rows * inner;
  int lo, hi;
  split((int)total, 4, tid, nth, &lo, &hi);
  for (int r = lo / inner; r < rows && (long long)r * inner < hi; r++) {
    int c0 = r * inner < lo ? lo - r * inner : 0;
    int c1 = (r + 1) * inner > hi ? hi - r * inner : inner;
    const float* ar = a + a_off[r];
    const float* br = b + b_off[r];
    float* o = out + (long)r * inner;
    for (int c = c0; c < c1; c += 4) {
      int left = c1 - c;
      v128_t v = apply(op, load_run(ar + c * sa, sa, left), load_run(br + c * sb, sb, left));
      store_part(o + c, v, left);
    }
  }
}

/** y += alpha·x in f64 lanes (the product and the sum each rounded to f64, then y to f32), thread `tid`'s groups. */
void EXPORT(wasm_axpy)(double alpha, const float* x, float* y, int n, int tid, int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  v128_t va = wasm_f64x2_splat(alpha);
  for (int i = lo; i < hi; i += 4) {
    int left = hi - i;
    v128_t xv = load_part(x + i, left);
    v128_t yv = load_part(y + i, left);
    v128_t lo2 = wasm_f64x2_add(wasm_f64x2_promote_low_f32x4(yv), wasm_f64x2_mul(va, wasm_f64x2_promote_low_f32x4(xv)));
    v128_t hi2 = wasm_f64x2_add(wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(yv, yv, 2, 3, 0, 1)),
                                wasm_f64x2_mul(va, wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(xv, xv, 2, 3, 0, 1))));
    v128_t r = wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lo2), wasm_f32x4_demote_f64x2_zero(hi2), 0, 1, 4, 5);
    store_part(y + i, r, left);
  }
}
