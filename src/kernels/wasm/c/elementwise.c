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

/** Lanes of x as two f64x2 halves times `scale` (f64), each rounded back to f32: x·scale as JavaScript computes it. */
static v128_t scale_f64(v128_t x, v128_t scale) {
  v128_t lo = wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(x), scale);
  v128_t hi = wasm_f64x2_mul(wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(x, x, 2, 3, 0, 1)), scale);
  return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lo), wasm_f32x4_demote_f64x2_zero(hi), 0, 1, 4, 5);
}

/**
 * Inverted dropout with core's counter-based hash (core/backend.ts dropoutUniform) on four
 * lanes: element i's 24-bit draw k = hash(seed, offset + i) >> 8 keeps it (scaled by `scale`,
 * in f64) when k ≥ threshold, the host's ⌈p·2²⁴⌉ — exactly uniform = k/2²⁴ ≥ p. Thread
 * `tid`'s f32x4 groups.
 */
void EXPORT(wasm_dropout)(const float* x, float* out, int n, double scale, int threshold, int seed, int offset,
                          int tid, int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  const v128_t vscale = wasm_f64x2_splat(scale);
  const v128_t vt = wasm_i32x4_splat(threshold);
  const v128_t salt = wasm_i32x4_splat((int)((unsigned)seed * 0xc2b2ae35u));
  const v128_t lanes = wasm_i32x4_make(0, 1, 2, 3);
  for (int i = lo; i < hi; i += 4) {
    int left = hi - i;
    v128_t idx = wasm_i32x4_add(wasm_i32x4_splat((int)((unsigned)offset + (unsigned)i)), lanes);
    v128_t h = wasm_i32x4_mul(wasm_v128_xor(idx, wasm_i32x4_splat((int)0x9e3779b9u)), wasm_i32x4_splat((int)0x85ebca6bu));
    h = wasm_v128_xor(h, salt);
    h = wasm_v128_xor(h, wasm_u32x4_shr(h, 16));
    h = wasm_i32x4_mul(h, wasm_i32x4_splat(0x7feb352d));
    h = wasm_v128_xor(h, wasm_u32x4_shr(h, 15));
    h = wasm_i32x4_mul(h, wasm_i32x4_splat((int)0x846ca68bu));
    h = wasm_v128_xor(h, wasm_u32x4_shr(h, 16));
    v128_t keep = wasm_i32x4_ge(wasm_u32x4_shr(h, 8), vt);
    store_part(out + i, wasm_v128_and(scale_f64(load_part(x + i, left), vscale), keep), left);
  }
}

enum { U_NEG, U_ABS, U_SQUARE, U_SQRT, U_RSQRT, U_SCALE, U_RELU };

/** 1/√x in f64 lanes, rounded to f32: as JavaScript's 1 / Math.sqrt(x). */
static v128_t rsqrt_f64(v128_t x) {
  v128_t one = wasm_f64x2_splat(1.0);
  v128_t lo = wasm_f64x2_div(one, wasm_f64x2_sqrt(wasm_f64x2_promote_low_f32x4(x)));
  v128_t hi = wasm_f64x2_div(one, wasm_f64x2_sqrt(wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(x, x, 2, 3, 0, 1))));
  return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lo), wasm_f32x4_demote_f64x2_zero(hi), 0, 1, 4, 5);
}

/**
 * The unary ops whose f32 result is exactly the reference's f64 one rounded: −x, |x|, x·x,
 * √x (correctly rounded either way), 1/√x and x·param (in f64 lanes), max(x, 0) (NaN kept).
 * Thread `tid`'s f32x4 groups.
 */
void EXPORT(wasm_unary)(int op, const float* x, float* out, int n, double param, int tid, int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  v128_t vp = wasm_f64x2_splat(param);
  for (int i = lo; i < hi; i += 4) {
    int left = hi - i;
    v128_t v = load_part(x + i, left);
    switch (op) {
      case U_NEG:
        v = wasm_f32x4_neg(v);
        break;
      case U_ABS:
        v = wasm_f32x4_abs(v);
        break;
      case U_SQUARE:
        v = wasm_f32x4_mul(v, v);
        break;
      case U_SQRT:
        v = wasm_f32x4_sqrt(v);
        break;
      case U_RSQRT:
        v = rsqrt_f64(v);
        break;
      case U_SCALE:
        v = scale_f64(v, vp);
        break;
      default:
        v = wasm_f32x4_max(v, wasm_f32x4_splat(0.0f));
        break;
    }
    store_part(out + i, v, left);
  }
}
