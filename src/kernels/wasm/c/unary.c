// The unary ops that need eˣ, ln x, tanh, erf or a power, forward and backward, in SIMD128
// (kernels/ref/elementwise.ts's formulas). Op codes are the indices in core/backend.ts's
// UNARY_OPS (the enum below). Threads take ranges of whole f32x4 groups, and every lane runs the same
// instructions, so results are bit-identical for any thread count.
//
// Forward: f32 lanes with vmath.h's functions (a few ulp from the reference's f64 result).
// Backward (silu, gelu_tanh, gelu_erf, pow): σ, Φ, e^(−x²/2) or the power from vmath.h in
// f32, the rest of the reference's formula in f64. The other backwards are plain arithmetic
// on their inputs, which the reference does in one pass faster than copying them in and out
// (bench/wasm-ops.ts), so they stay there.
#include "simd.h"
#include "vmath.h"

enum {
  OP_NEG,
  OP_EXP,
  OP_LOG,
  OP_SQRT,
  OP_RSQRT,
  OP_TANH,
  OP_SIGMOID,
  OP_SILU,
  OP_GELU_TANH,
  OP_GELU_ERF,
  OP_POW,
  OP_ABS,
  OP_SQUARE,
  OP_SCALE,
  OP_RELU
};

/** √(2/π)·2 and 0.044715: gelu_tanh's 1 + tanh(u) = 2σ(2u), u = √(2/π)·(x + 0.044715·x³). */
#define GELU_K2 1.5957691216057308f
#define GELU_KAPPA 0.044715f

/**
 * |x|^p with JavaScript's x ** p rules for a lane-wide p: p = 0 gives 1 (also for NaN x);
 * a finite negative x with a finite non-integer p gives NaN; an odd integer p keeps the sign
 * of x (−0 and −inf included); 1 ** ±inf is NaN. `odd`: p is an odd integer; `frac`: p is
 * finite and not an integer.
 */
static inline v128_t vpow(v128_t x, double p, int odd, int frac) {
  if (p == 0) return vsplat(1.0f);
  if (p == 2) return wasm_f32x4_mul(x, x);
  if (p == 1) return x;
  v128_t r = vpow_abs(x, p);
  v128_t signbit = wasm_v128_and(x, wasm_i32x4_splat((int)0x80000000u));
  if (odd) r = wasm_v128_or(r, signbit);
  if (frac) {
    v128_t finite_neg = wasm_v128_and(wasm_f32x4_lt(x, vsplat(0.0f)), wasm_f32x4_ne(x, vsplat(-__builtin_inff())));
    r = wasm_v128_bitselect(vsplat(__builtin_nanf("")), r, finite_neg);
  }
  return r;
}

/** gelu_tanh(x) = x·σ(2u): the same as ½x(1 + tanh u), without the cancellation for x ≪ 0. */
static inline v128_t vgelu_tanh(v128_t x) {
  v128_t x3 = wasm_f32x4_mul(wasm_f32x4_mul(x, x), x);
  v128_t u2 = wasm_f32x4_mul(vsplat(GELU_K2), vfma(vsplat(GELU_KAPPA), x3, x));
  return wasm_f32x4_mul(x, vsigmoid(u2));
}

/**
 * out = f(x) for the ops needing a transcendental function (exp, log, tanh, sigmoid, silu,
 * gelu_tanh, gelu_erf, pow with exponent `param`; `odd`, `frac` describe param as vpow
 * wants). Thread `tid`'s f32x4 groups.
 */
void EXPORT(wasm_unary_math)(int op, const float* x, float* out, int n, double param, int odd, int frac, int tid,
                             int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  for (int i = lo; i < hi; i += 4) {
    int left = hi - i;
    v128_t v = load_part(x + i, left);
    switch (op) {
      case OP_EXP:
        v = vexp(v);
        break;
      case OP_LOG:
        v = vlog(v);
        break;
      case OP_TANH:
        v = vtanh(v);
        break;
      case OP_SIGMOID:
        v = vsigmoid(v);
        break;
      case OP_SILU:
        v = wasm_f32x4_mul(v, vsigmoid(v));
        break;
      case OP_GELU_TANH:
        v = vgelu_tanh(v);
        break;
      case OP_GELU_ERF:
        v = wasm_f32x4_mul(v, vnormcdf(v));
        break;
      default:
        v = vpow(v, param, odd, frac);
        break;
    }
    store_part(out + i, v, left);
  }
}

/** Lanes 0, 1 (half 0) or 2, 3 (half 1) of f32 v as f64. */
static inline v128_t lo64(v128_t v) { return wasm_f64x2_promote_low_f32x4(v); }
static inline v128_t hi64(v128_t v) { return wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 0, 1)); }
/** Two f64x2 halves rounded to f32, back in lanes 0..3. */
static inline v128_t join32(v128_t a, v128_t b) {
  return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(a), wasm_f32x4_demote_f64x2_zero(b), 0, 1, 4, 5);
}

#define D(v) wasm_f64x2_splat(v)
#define ADD wasm_f64x2_add
#define SUB wasm_f64x2_sub
#define MUL wasm_f64x2_mul

/**
 * The gradient of one f64x2 half: x, dy that half of the inputs (as f64), fx and fx2 the
 * f32 → f64 values of the op's f32 helpers (σ, σ(±2u), Φ and e^(−x²/2), or the power).
 */
static inline v128_t grad_half(int op, v128_t x, v128_t dy, v128_t fx, v128_t fx2, double param) {
  switch (op) {
    case OP_SILU:
      // σ(x)·(1 + x·(1 − σ(x))).
      return MUL(MUL(dy, fx), ADD(D(1), MUL(x, SUB(D(1), fx))));
    case OP_GELU_TANH: {
      // ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3κx²) with 1 + t = 2σ(2u) (fx) and 1 − t = 2σ(−2u) (fx2).
      v128_t x2 = MUL(x, x);
      v128_t k = MUL(D(0.7978845608028654), ADD(D(1), MUL(D(3 * 0.044715), x2)));
      v128_t d = ADD(fx, MUL(MUL(MUL(MUL(D(2), x), fx), fx2), k));
      return MUL(dy, d);
    }
    case OP_GELU_ERF:
      // Φ(x) + x·φ(x): fx = Φ(x), fx2 = e^(−x²/2).
      return MUL(dy, ADD(fx, MUL(x, MUL(fx2, D(0.3989422804014327)))));
    default:
      // pow: p·x^(p−1) (fx), exactly 0 for p = 0.
      return param == 0 ? D(0) : MUL(MUL(dy, D(param)), fx);
  }
}

/**
 * dx (+)= dy·f'(x) for silu, gelu_tanh, gelu_erf and pow (`param` its exponent, `odd`/`frac`
 * describing param − 1 for vpow), the product and the sum in f64 as the reference's. Thread
 * `tid`'s f32x4 groups.
 */
void EXPORT(wasm_unary_backward)(int op, const float* x, const float* dy, float* dx, int n, double param, int odd,
                                 int frac, int acc, int tid, int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  for (int i = lo; i < hi; i += 4) {
    int left = hi - i;
    v128_t g = load_part(dy + i, left);
    v128_t xv = load_part(x + i, left);
    v128_t fx = wasm_f32x4_splat(0), fx2 = fx;
    switch (op) {
      case OP_SILU:
        fx = vsigmoid(xv);
        break;
      case OP_GELU_TANH: {
        v128_t x3 = wasm_f32x4_mul(wasm_f32x4_mul(xv, xv), xv);
        v128_t u2 = wasm_f32x4_mul(vsplat(GELU_K2), vfma(vsplat(GELU_KAPPA), x3, xv));
        fx = vsigmoid(u2);
        fx2 = vsigmoid(wasm_f32x4_neg(u2));
        break;
      }
      case OP_GELU_ERF:
        fx = vnormcdf(xv);
        fx2 = vexp(wasm_f32x4_mul(vsplat(-0.5f), wasm_f32x4_mul(xv, xv)));
        break;
      default:
        if (param != 0) fx = vpow(xv, param - 1, odd, frac);
        break;
    }
    v128_t g0 = grad_half(op, lo64(xv), lo64(g), lo64(fx), lo64(fx2), param);
    v128_t g1 = grad_half(op, hi64(xv), hi64(g), hi64(fx), hi64(fx2), param);
    if (acc) {
      v128_t d = load_part(dx + i, left);
      g0 = ADD(lo64(d), g0);
      g1 = ADD(hi64(d), g1);
    }
    store_part(dx + i, join32(g0, g1), left);
  }
}
