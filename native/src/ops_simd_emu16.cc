// Test-only instance of the hot kernels (ops_kernels_impl.h) with 16 lanes in plain C++:
// an emulation of ops_simd_avx512.cc's V, so the N = 16 code paths (score vectors per tile,
// partial tails, the pv_block widths, the reductions) run and are tested on hosts without
// AVX-512 (CI, this project's AVX2 machines). Every member has exactly the semantics the
// AVX-512 V has: masked partial loads/stores (lanes past n keep `fill` / memory untouched,
// never read or written), fused multiply-adds (std::fma per lane), maxps's operand rule,
// the lane order of avx512_defined.h's reductions and the same exp (clamp, Cody–Waite,
// polynomial, vscalefps), so with the default MXCSR it gives what the AVX-512 table gives,
// bit for bit. It is selected only by LORAKIT_CPU=emu16 or setOpsIsa("emu16"), never by
// detection (it is much slower than any real path); the GEMM keeps its best real path.
#include <cmath>
#include <cstdint>
#include <cstring>

#define LK_TGT
#if defined(__GNUC__)
#define LK_INL __attribute__((always_inline)) static inline
#else
#define LK_INL static inline
#endif

namespace lorakit {
namespace ops {
namespace emu16 {

struct V {
  struct R {
    float v[16];
  };
  static constexpr int64_t N = 16;

  LK_INL R load(const float* p) {
    R r;
    for (int i = 0; i < 16; i++) r.v[i] = p[i];
    return r;
  }
  LK_INL void store(float* p, R x) {
    for (int i = 0; i < 16; i++) p[i] = x.v[i];
  }
  // _mm512_mask_loadu_ps(set1(fill), mask(n), p): lanes i < n read p[i], the others are fill
  // and their memory is not touched (it may lie past the end of a buffer).
  LK_INL R load_part(const float* p, int64_t n, float fill) {
    R r;
    for (int i = 0; i < 16; i++) r.v[i] = i < n ? p[i] : fill;
    return r;
  }
  // _mm512_mask_storeu_ps(p, mask(n), x): only lanes i < n are written.
  LK_INL void store_part(float* p, R x, int64_t n) {
    for (int i = 0; i < 16 && i < n; i++) p[i] = x.v[i];
  }
  LK_INL R set1(float x) {
    R r;
    for (int i = 0; i < 16; i++) r.v[i] = x;
    return r;
  }
  LK_INL R zero() { return set1(0.f); }
  // dst[d·dstride + j] = src[j·sstride + d] for j, d < 8 (exact copies, like the shuffles).
  LK_INL void transpose8(const float* src, int64_t sstride, float* dst, int64_t dstride) {
    float t[8][8];
    for (int j = 0; j < 8; j++)
      for (int d = 0; d < 8; d++) t[d][j] = src[j * sstride + d];
    for (int d = 0; d < 8; d++)
      for (int j = 0; j < 8; j++) dst[d * dstride + j] = t[d][j];
  }
  LK_INL R add(R a, R b) {
    for (int i = 0; i < 16; i++) a.v[i] = a.v[i] + b.v[i];
    return a;
  }
  LK_INL R sub(R a, R b) {
    for (int i = 0; i < 16; i++) a.v[i] = a.v[i] - b.v[i];
    return a;
  }
  LK_INL R mul(R a, R b) {
    for (int i = 0; i < 16; i++) a.v[i] = a.v[i] * b.v[i];
    return a;
  }
  LK_INL R div(R a, R b) {
    for (int i = 0; i < 16; i++) a.v[i] = a.v[i] / b.v[i];
    return a;
  }
  // vfmadd: a·b + c rounded once.
  LK_INL R fmadd(R a, R b, R c) {
    for (int i = 0; i < 16; i++) c.v[i] = std::fma(a.v[i], b.v[i], c.v[i]);
    return c;
  }
  // vfnmadd: −(a·b) + c rounded once.
  LK_INL R fnmadd(R a, R b, R c) {
    for (int i = 0; i < 16; i++) c.v[i] = std::fma(-a.v[i], b.v[i], c.v[i]);
    return c;
  }
  // maxps/minps lane rule: a > b ? a : b (a < b ? a : b); a NaN in either operand, or two
  // zeros of either sign, give the second operand.
  LK_INL float max1(float a, float b) { return a > b ? a : b; }
  LK_INL float min1(float a, float b) { return a < b ? a : b; }
  LK_INL R max(R a, R b) {
    for (int i = 0; i < 16; i++) a.v[i] = max1(a.v[i], b.v[i]);
    return a;
  }
  LK_INL R min(R a, R b) {
    for (int i = 0; i < 16; i++) a.v[i] = min1(a.v[i], b.v[i]);
    return a;
  }
  LK_INL R sqrt(R a) {
    for (int i = 0; i < 16; i++) a.v[i] = std::sqrt(a.v[i]);
    return a;
  }
  // avx512_defined::reduce_add_ps: upper 256 bits + lower, then upper 128 + lower, then
  // lanes {0,1} + {2,3}, then lane 0 + lane 1.
  LK_INL float hsum(R a) {
    float t3[8], t6[4];
    for (int i = 0; i < 8; i++) t3[i] = a.v[8 + i] + a.v[i];
    for (int i = 0; i < 4; i++) t6[i] = t3[4 + i] + t3[i];
    const float t80 = t6[0] + t6[2], t81 = t6[1] + t6[3];
    return t80 + t81;
  }
  // avx512_defined::reduce_max_ps with the same operand order at every step.
  LK_INL float hmax(R a) {
    float t3[8], t6[4], t8[4];
    for (int i = 0; i < 8; i++) t3[i] = max1(a.v[8 + i], a.v[i]);
    for (int i = 0; i < 4; i++) t6[i] = max1(t3[4 + i], t3[i]);
    for (int i = 0; i < 4; i++) t8[i] = max1(t6[i], t6[i ^ 2]);
    return max1(t8[0], t8[1]);
  }
  // vrndscaleps to the nearest integer, ties to even (the default rounding mode).
  LK_INL R round_nearest(R a) {
    for (int i = 0; i < 16; i++) a.v[i] = std::nearbyint(a.v[i]);
    return a;
  }
  // vscalefps a·2^floor(b), rounded once (overflow to ±inf, gradual underflow); here b is
  // always an integer or NaN (then the result is NaN, as a NaN b gives a NaN a here too).
  LK_INL R scalef(R a, R b) {
    for (int i = 0; i < 16; i++) {
      const float e = b.v[i];
      a.v[i] = std::isnan(e) ? a.v[i] + e : std::ldexp(a.v[i], static_cast<int>(std::floor(e)));
    }
    return a;
  }
  // ops_simd_avx512.cc's exp, step for step.
  LK_INL R exp(R x) {
    x = min(set1(89.f), max(set1(-104.f), x));
    R n = round_nearest(mul(x, set1(1.44269504088896341f)));
    R r = fnmadd(n, set1(0.693359375f), x);
    r = fnmadd(n, set1(-2.12194440e-4f), r);
    R p = set1(1.9875691500E-4f);
    p = fmadd(p, r, set1(1.3981999507E-3f));
    p = fmadd(p, r, set1(8.3334519073E-3f));
    p = fmadd(p, r, set1(4.1665795894E-2f));
    p = fmadd(p, r, set1(1.6666665459E-1f));
    p = fmadd(p, r, set1(5.0000001201E-1f));
    p = fmadd(mul(p, r), r, add(r, set1(1.f)));
    return scalef(p, n);
  }
};

}  // namespace emu16
}  // namespace ops
}  // namespace lorakit

#define LK_NS emu16
#define LK_TABLE kKernelsEmu16
#define LK_ISA_NAME "emu16"
#include "ops_kernels_impl.h"
