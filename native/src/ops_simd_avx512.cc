// AVX-512 instance of the hot kernels (ops_kernels_impl.h). Compiled with function-level
// target attributes only, so the rest of the addon stays runnable on any x86-64; the
// dispatcher picks this table only when the CPU reports AVX-512F/BW/VL/DQ.
#if defined(__x86_64__)
// Only the multiply-adds the kernels write (V::fmadd) are fused: the compiler's own
// contraction of a V::mul into a V::add would make this table's bits depend on its choices,
// and the emu16 table (ops_simd_emu16.cc) could no longer reproduce them.
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "avx512_defined.h"

#define LK_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define LK_INL __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,fma"))) static inline

namespace lorakit {
namespace ops {
namespace avx512 {

struct V {
  using R = __m512;
  static constexpr int64_t N = 16;
  LK_INL R load(const float* p) { return _mm512_loadu_ps(p); }
  LK_INL void store(float* p, R x) { _mm512_storeu_ps(p, x); }
  LK_INL __mmask16 mask(int64_t n) { return static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u); }
  LK_INL R load_part(const float* p, int64_t n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), mask(n), p);
  }
  LK_INL void store_part(float* p, R x, int64_t n) { _mm512_mask_storeu_ps(p, mask(n), x); }
  LK_INL R set1(float x) { return _mm512_set1_ps(x); }
  LK_INL R zero() { return _mm512_setzero_ps(); }
  // dst[d·dstride + j] = src[j·sstride + d] for j, d < 8: an 8×8 block transposed (exact copies).
  LK_INL void transpose8(const float* src, int64_t sstride, float* dst, int64_t dstride) {
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * sstride);
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
      u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
      u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
      u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
      _mm256_storeu_ps(dst + i * dstride, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
      _mm256_storeu_ps(dst + (i + 4) * dstride, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    }
  }
  LK_INL R add(R a, R b) { return _mm512_add_ps(a, b); }
  LK_INL R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  LK_INL R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  LK_INL R div(R a, R b) { return _mm512_div_ps(a, b); }
  LK_INL R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  LK_INL R max(R a, R b) { return avx512_defined::max_ps(a, b); }
  LK_INL R sqrt(R a) { return avx512_defined::sqrt_ps(a); }
  LK_INL float hsum(R a) { return avx512_defined::reduce_add_ps(a); }
  LK_INL float hmax(R a) { return avx512_defined::reduce_max_ps(a); }
  // exp: n = round(x·log2 e), r = x − n·ln 2 (Cody–Waite), degree-6 polynomial (Cephes
  // expf, ≈1 ulp), scaled by 2^n with vscalefps, which handles overflow to +inf and
  // gradual underflow to 0. NaN propagates (max/min keep the NaN operand second).
  LK_INL R exp(R x) {
    x = avx512_defined::min_ps(_mm512_set1_ps(89.f), avx512_defined::max_ps(_mm512_set1_ps(-104.f), x));
    R n = avx512_defined::round_nearest_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)));
    R r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    R p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
    return avx512_defined::scalef_ps(p, n);
  }
};

}  // namespace avx512
}  // namespace ops
}  // namespace lorakit

#define LK_NS avx512
#define LK_TABLE kKernelsAvx512
#define LK_ISA_NAME "avx512"
#include "ops_kernels_impl.h"
#endif
