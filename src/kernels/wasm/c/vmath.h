// Four-lane f32 transcendental functions for the unary ops (unary.c), correct over the whole
// f32 range, unlike simd.h's exp0_f32x4 (which flushes e^x to 0 below −87, fine inside a
// max-subtracted softmax): overflow to ±inf, subnormal results, ±0, ±inf and NaN inputs as
// C99/JavaScript give them. Each is a fixed sequence of lane operations, so a lane's result
// does not depend on its neighbours, on the thread count or on the engine. Accuracy (max
// error against the f64 reference rounded to f32, measured by test/kernels/wasm-math.test.ts):
// a few f32 ulp.
#pragma once
#include <wasm_simd128.h>

static inline v128_t vsplat(float v) { return wasm_f32x4_splat(v); }

/** a·b + c, each rounded (no fused multiply-add: the same bits on every engine). */
static inline v128_t vfma(v128_t a, v128_t b, v128_t c) { return wasm_f32x4_add(wasm_f32x4_mul(a, b), c); }

/** Lanes where x is NaN (all ones). */
static inline v128_t visnan(v128_t x) { return wasm_f32x4_ne(x, x); }

/** 2ⁿ for integer lanes n in [−126, 127]. */
static inline v128_t vpow2i(v128_t n) { return wasm_i32x4_shl(wasm_i32x4_add(n, wasm_i32x4_splat(127)), 23); }

/**
 * eˣ: n = round(x/ln 2), r = x − n·ln 2 (ln 2 in two parts, Cody–Waite), e^r by Cephes'
 * degree-6 polynomial, then 2ⁿ applied as two factors 2^⌊n/2⌋·2^(n−⌊n/2⌋) so that results
 * down to the smallest subnormal (x ≥ −103.97) and up to FLT_MAX come out right without a
 * subnormal or overflowing 2ⁿ. Above 88.72 it is +inf, below −103.98 it is 0, NaN stays NaN.
 */
static inline v128_t vexp(v128_t x) {
  // Clamped so n stays in [−150, 129]; the clamped lanes still give 0 and inf.
  v128_t c = wasm_f32x4_pmax(vsplat(-104.0f), wasm_f32x4_pmin(vsplat(89.0f), x));
  v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(c, vsplat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(c, wasm_f32x4_mul(n, vsplat(0.693359375f)));
  r = wasm_f32x4_add(r, wasm_f32x4_mul(n, vsplat(2.12194440e-4f)));
  v128_t z = wasm_f32x4_mul(r, r);
  v128_t y = vsplat(1.9875691500e-4f);
  y = vfma(y, r, vsplat(1.3981999507e-3f));
  y = vfma(y, r, vsplat(8.3334519073e-3f));
  y = vfma(y, r, vsplat(4.1665795894e-2f));
  y = vfma(y, r, vsplat(1.6666665459e-1f));
  y = vfma(y, r, vsplat(5.0000001201e-1f));
  y = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(y, z), r), vsplat(1.0f));
  v128_t ni = wasm_i32x4_trunc_sat_f32x4(n);
  v128_t n1 = wasm_i32x4_shr(ni, 1);
  v128_t n2 = wasm_i32x4_sub(ni, n1);
  y = wasm_f32x4_mul(wasm_f32x4_mul(y, vpow2i(n1)), vpow2i(n2));
  return wasm_v128_bitselect(x, y, visnan(x));
}

/**
 * The parts of ln x for finite x > 0: x = m·2ᵉ with m in [√½, √2), *fe = e (an integer, as
 * f32) and *lnm = ln m = t − t²/2 + t³·P(t) for t = m − 1 (Cephes' logf polynomial), so
 * ln x = lnm + e·ln 2. Subnormal x is scaled by 2²³ first. Other lanes hold garbage.
 */
static inline void vlog_parts(v128_t x, v128_t* fe, v128_t* lnm) {
  v128_t sub = wasm_f32x4_lt(x, vsplat(1.17549435e-38f));
  v128_t xs = wasm_v128_bitselect(wasm_f32x4_mul(x, vsplat(8388608.0f)), x, sub);
  v128_t e = wasm_i32x4_sub(wasm_u32x4_shr(xs, 23), wasm_i32x4_splat(126));
  e = wasm_i32x4_sub(e, wasm_v128_and(sub, wasm_i32x4_splat(23)));
  // m in [0.5, 1); below √½ it becomes 2m − 1 with e − 1, else m − 1: t in [√½ − 1, √2 − 1).
  v128_t m = wasm_v128_or(wasm_v128_and(xs, wasm_i32x4_splat(0x007fffff)), wasm_i32x4_splat(0x3f000000));
  v128_t low = wasm_f32x4_lt(m, vsplat(0.707106781186547524f));
  e = wasm_i32x4_add(e, low);
  v128_t t = wasm_f32x4_sub(wasm_f32x4_add(m, wasm_v128_and(m, low)), vsplat(1.0f));
  v128_t z = wasm_f32x4_mul(t, t);
  v128_t y = vsplat(7.0376836292e-2f);
  y = vfma(y, t, vsplat(-1.1514610310e-1f));
  y = vfma(y, t, vsplat(1.1676998740e-1f));
  y = vfma(y, t, vsplat(-1.2420140846e-1f));
  y = vfma(y, t, vsplat(1.4249322787e-1f));
  y = vfma(y, t, vsplat(-1.6668057665e-1f));
  y = vfma(y, t, vsplat(2.0000714765e-1f));
  y = vfma(y, t, vsplat(-2.4999993993e-1f));
  y = vfma(y, t, vsplat(3.3333331174e-1f));
  y = wasm_f32x4_mul(wasm_f32x4_mul(y, t), z);
  *fe = wasm_f32x4_convert_i32x4(e);
  *lnm = wasm_f32x4_add(t, vfma(z, vsplat(-0.5f), y));
}

/**
 * ln x: lnm + e·ln 2 from vlog_parts, ln 2 in two parts (the small one added first). ln 0 =
 * −inf, ln(x < 0) = NaN, ln inf = inf, NaN stays NaN.
 */
static inline v128_t vlog(v128_t x) {
  v128_t fe, lnm;
  vlog_parts(x, &fe, &lnm);
  // The same sums as Cephes' logf: t + (t³P − t²/2 − e·2.12e−4), then + e·0.693359375.
  v128_t r = vfma(fe, vsplat(-2.12194440e-4f), lnm);
  r = vfma(fe, vsplat(0.693359375f), r);
  r = wasm_v128_bitselect(vsplat(__builtin_inff()), r, wasm_f32x4_eq(x, vsplat(__builtin_inff())));
  r = wasm_v128_bitselect(vsplat(-__builtin_inff()), r, wasm_f32x4_eq(x, vsplat(0.0f)));
  v128_t bad = wasm_v128_or(wasm_f32x4_lt(x, vsplat(0.0f)), visnan(x));
  return wasm_v128_bitselect(vsplat(__builtin_nanf("")), r, bad);
}

/**
 * |x|^p for a lane-wide p (an f64, as the reference's) as 2^w, w = p·log₂|x| formed in f64 (e + ln m·log₂e: the f32 error
 * of ln m is not multiplied by p·e), split into an integer n and f in [−½, ½]: 2^f from vexp,
 * times 2ⁿ as two factors. About 2 ulp whatever the size of w; 0, inf and NaN |x| and p = ±inf
 * come out as JavaScript's ** gives them (1 ** ±inf is NaN).
 */
static inline v128_t vpow_abs(v128_t x, double p) {
  v128_t a = wasm_f32x4_abs(x);
  v128_t fe, lnm;
  vlog_parts(a, &fe, &lnm);
  v128_t l2m = wasm_f32x4_mul(lnm, vsplat(1.44269504088896341f));
  // log₂|x| of the special lanes: −inf at 0, inf at inf, NaN at NaN.
  v128_t zero = wasm_f32x4_eq(a, vsplat(0.0f));
  v128_t inf = wasm_f32x4_eq(a, vsplat(__builtin_inff()));
  v128_t special = wasm_v128_or(wasm_v128_or(zero, inf), visnan(a));
  v128_t sv = wasm_v128_bitselect(vsplat(-__builtin_inff()), wasm_v128_bitselect(a, a, inf), zero);
  v128_t fe_s = wasm_v128_bitselect(sv, fe, special);
  v128_t l2m_s = wasm_v128_andnot(l2m, special);
  v128_t pd = wasm_f64x2_splat(p);
  v128_t w0 = wasm_f64x2_mul(pd, wasm_f64x2_add(wasm_f64x2_promote_low_f32x4(fe_s), wasm_f64x2_promote_low_f32x4(l2m_s)));
  v128_t w1 = wasm_f64x2_mul(pd, wasm_f64x2_add(wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(fe_s, fe_s, 2, 3, 0, 1)),
                                                wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(l2m_s, l2m_s, 2, 3, 0, 1))));
  v128_t nan = wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(w0), wasm_f32x4_demote_f64x2_zero(w1), 0, 1, 4, 5);
  // Clamped so 2ⁿ's factors stay normal; beyond, the result is 0 or inf anyway.
  w0 = wasm_f64x2_pmax(wasm_f64x2_splat(-170), wasm_f64x2_pmin(wasm_f64x2_splat(140), w0));
  w1 = wasm_f64x2_pmax(wasm_f64x2_splat(-170), wasm_f64x2_pmin(wasm_f64x2_splat(140), w1));
  v128_t n0 = wasm_f64x2_nearest(w0), n1 = wasm_f64x2_nearest(w1);
  v128_t f0 = wasm_f64x2_mul(wasm_f64x2_sub(w0, n0), wasm_f64x2_splat(0.6931471805599453));
  v128_t f1 = wasm_f64x2_mul(wasm_f64x2_sub(w1, n1), wasm_f64x2_splat(0.6931471805599453));
  v128_t f = wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(f0), wasm_f32x4_demote_f64x2_zero(f1), 0, 1, 4, 5);
  v128_t n = wasm_i32x4_shuffle(wasm_i32x4_trunc_sat_f64x2_zero(n0), wasm_i32x4_trunc_sat_f64x2_zero(n1), 0, 1, 4, 5);
  v128_t h = wasm_i32x4_shr(n, 1);
  v128_t r = wasm_f32x4_mul(wasm_f32x4_mul(vexp(f), vpow2i(h)), vpow2i(wasm_i32x4_sub(n, h)));
  return wasm_v128_bitselect(nan, r, visnan(nan));
}

/** σ(x) = 1/(1 + e⁻ˣ) for x ≥ 0, eˣ/(1 + eˣ) below: e^−|x| never overflows. NaN stays NaN. */
static inline v128_t vsigmoid(v128_t x) {
  v128_t e = vexp(wasm_f32x4_neg(wasm_f32x4_abs(x)));
  v128_t d = wasm_f32x4_add(vsplat(1.0f), e);
  v128_t pos = wasm_f32x4_div(vsplat(1.0f), d);
  v128_t neg = wasm_f32x4_div(e, d);
  return wasm_v128_bitselect(neg, pos, wasm_f32x4_lt(x, vsplat(0.0f)));
}

/**
 * tanh x: Cephes' odd polynomial below |x| = 0.625, else sign(x)·(1 − 2/(e^2|x| + 1)) (no
 * cancellation there: the result is above 0.55); ±1 once e^2|x| overflows, NaN stays NaN.
 */
static inline v128_t vtanh(v128_t x) {
  v128_t a = wasm_f32x4_abs(x);
  v128_t z = wasm_f32x4_mul(x, x);
  v128_t p = vsplat(-5.70498872745e-3f);
  p = vfma(p, z, vsplat(2.06390887954e-2f));
  p = vfma(p, z, vsplat(-5.37397155531e-2f));
  p = vfma(p, z, vsplat(1.33314422036e-1f));
  p = vfma(p, z, vsplat(-3.33332819422e-1f));
  v128_t small = vfma(wasm_f32x4_mul(p, z), x, x);
  v128_t e = vexp(wasm_f32x4_add(a, a));
  v128_t big = wasm_f32x4_sub(vsplat(1.0f), wasm_f32x4_div(vsplat(2.0f), wasm_f32x4_add(e, vsplat(1.0f))));
  // tanh is odd: the sign is x's (which also keeps tanh(−0) = −0).
  v128_t r = wasm_v128_bitselect(small, big, wasm_f32x4_lt(a, vsplat(0.625f)));
  v128_t sign = wasm_i32x4_splat((int)0x80000000u);
  return wasm_v128_or(wasm_v128_andnot(r, sign), wasm_v128_and(x, sign));
}

/** P(t)/Q(t) for rational approximations with numerator p[0..np) and denominator 1 + t·q[0..nq), Horner. */
static inline v128_t vrational(v128_t t, const float* p, int np, const float* q, int nq) {
  v128_t num = vsplat(p[np - 1]);
  for (int i = np - 2; i >= 0; i--) num = vfma(num, t, vsplat(p[i]));
  v128_t den = vsplat(q[nq - 1]);
  for (int i = nq - 2; i >= 0; i--) den = vfma(den, t, vsplat(q[i]));
  den = vfma(den, t, vsplat(1.0f));
  return wasm_f32x4_div(num, den);
}

// The rational approximations of erf and erfc on [0, 0.84375), [0.84375, 1.25), [1.25, 1/0.35)
// and [1/0.35, ∞) from FreeBSD msun's s_erf.c (the coefficients kernels/ref/erf.ts uses),
// here evaluated in f32.
static const float ERF_PP[] = {1.28379167095512558561e-01f, -3.25042107247001499370e-01f,
                               -2.84817495755985104766e-02f, -5.77027029648944159157e-03f,
                               -2.37630166566501626084e-05f};
static const float ERF_QQ[] = {3.97917223959155352819e-01f, 6.50222499887672944485e-02f,
                               5.08130628187576562776e-03f, 1.32494738004321644526e-04f,
                               -3.96022827877536812320e-06f};
static const float ERF_PA[] = {-2.36211856075265944077e-03f, 4.14856118683748331666e-01f,
                               -3.72207876035701323847e-01f, 3.18346619901161753674e-01f,
                               -1.10894694282396677476e-01f, 3.54783043256182359371e-02f,
                               -2.16637559486879084300e-03f};
static const float ERF_QA[] = {1.06420880400844228286e-01f, 5.40397917702171048937e-01f,
                               7.18286544141962662868e-02f, 1.26171219808761642112e-01f,
                               1.36370839120290507362e-02f, 1.19844998467991074170e-02f};
static const float ERF_RA[] = {-9.86494403484714822705e-03f, -6.93858572707181764372e-01f,
                               -1.05586262253232909814e+01f, -6.23753324503260060396e+01f,
                               -1.62396669462573470355e+02f, -1.84605092906711035994e+02f,
                               -8.12874355063065934246e+01f, -9.81432934416914548592e+00f};
static const float ERF_SA[] = {1.96512716674392571292e+01f, 1.37657754143519042600e+02f,
                               4.34565877475229228821e+02f, 6.45387271733267880336e+02f,
                               4.29008140027567833386e+02f, 1.08635005541779435134e+02f,
                               6.57024977031928170135e+00f, -6.04244152148580987438e-02f};
static const float ERF_RB[] = {-9.86494292470009928597e-03f, -7.99283237680523006574e-01f,
                               -1.77579549177547519889e+01f, -1.60636384855821916062e+02f,
                               -6.37566443368389627722e+02f, -1.02509513161107724954e+03f,
                               -4.83519191608651397019e+02f};
static const float ERF_SB[] = {3.03380607434824582924e+01f, 3.25792512996573918826e+02f,
                               1.53672958608443695994e+03f, 3.19985821950859553908e+03f,
                               2.55305040643316442583e+03f, 4.74528541206955367215e+02f,
                               -2.24409524465858183362e+01f};
/** erf(1) rounded as msun's erx: erf on [0.84375, 1.25) is erx + P/Q. */
#define ERF_ERX 8.45062911510467529297e-01f

/**
 * Φ(x) = ½·(1 + erf(x/√2)), the standard normal CDF, with full relative accuracy in the lower
 * tail (there it is ½·erfc(|x|/√2), never 1 − something close to 1). Φ(−inf) = 0, Φ(inf) = 1,
 * NaN stays NaN.
 */
static inline v128_t vnormcdf(v128_t x) {
  v128_t a = wasm_f32x4_mul(wasm_f32x4_abs(x), vsplat(0.70710678118654752440f));
  v128_t neg = wasm_f32x4_lt(x, vsplat(0.0f));
  v128_t half = vsplat(0.5f);
  v128_t in0 = wasm_f32x4_lt(a, vsplat(0.84375f));
  v128_t in1 = wasm_v128_andnot(wasm_f32x4_lt(a, vsplat(1.25f)), in0);
  // Each lane takes one of three formulas; one that no lane takes is skipped (a lane's
  // result does not depend on which others were computed).
  v128_t r0 = half, r1 = half, r2 = half;
  if (wasm_v128_any_true(in0)) {
    // a < 0.84375: erf(a) = a + a·P(a²)/Q(a²); ½ ± ½·erf(a).
    v128_t erf0 = vfma(a, vrational(wasm_f32x4_mul(a, a), ERF_PP, 5, ERF_QQ, 5), a);
    r0 = wasm_f32x4_add(half, wasm_f32x4_mul(half, wasm_v128_xor(erf0, wasm_v128_and(neg, vsplat(-0.0f)))));
  }
  if (wasm_v128_any_true(in1)) {
    // a < 1.25: erf(a) = erx + P(a − 1)/Q(a − 1), erfc(a) = (1 − erx) − P/Q.
    v128_t pq1 = vrational(wasm_f32x4_sub(a, vsplat(1.0f)), ERF_PA, 7, ERF_QA, 6);
    v128_t erf1 = wasm_f32x4_add(vsplat(ERF_ERX), pq1);
    v128_t erfc1 = wasm_f32x4_sub(vsplat(1.0f - ERF_ERX), pq1);
    r1 = wasm_v128_bitselect(wasm_f32x4_mul(half, erfc1), wasm_f32x4_add(half, wasm_f32x4_mul(half, erf1)), neg);
  }
  if (!wasm_i32x4_all_true(wasm_v128_or(in0, in1))) {
    // a ≥ 1.25 (or NaN): erfc(a) = e^(−a² − 0.5625 + R(1/a²)/S(1/a²))/a, with −a² formed from
    // a split a = hi + (a − hi) (hi: the top 12 significant bits, so hi² is exact).
    v128_t s = wasm_f32x4_div(vsplat(1.0f), wasm_f32x4_mul(a, a));
    v128_t rs = wasm_v128_bitselect(vrational(s, ERF_RA, 8, ERF_SA, 8), vrational(s, ERF_RB, 7, ERF_SB, 7),
                                    wasm_f32x4_lt(a, vsplat(1.0f / 0.35f)));
    v128_t hi = wasm_v128_and(a, wasm_i32x4_splat((int)0xfffff000u));
    v128_t e1 = vexp(wasm_f32x4_sub(wasm_f32x4_neg(wasm_f32x4_mul(hi, hi)), vsplat(0.5625f)));
    v128_t e2 = vexp(vfma(wasm_f32x4_sub(hi, a), wasm_f32x4_add(hi, a), rs));
    v128_t erfc2 = wasm_f32x4_div(wasm_f32x4_mul(e1, e2), a);
    // Beyond a = 10 erfc is below the smallest subnormal: the lower tail is 0, the upper 1.
    v128_t lo2 = wasm_v128_andnot(wasm_f32x4_mul(half, erfc2), wasm_f32x4_ge(a, vsplat(10.0f)));
    r2 = wasm_v128_bitselect(lo2, wasm_f32x4_sub(vsplat(1.0f), lo2), neg);
  }
  v128_t r = wasm_v128_bitselect(r0, wasm_v128_bitselect(r1, r2, in1), in0);
  return wasm_v128_bitselect(x, r, visnan(x));
}
