// AVX2+FMA instance of the hot kernels (ops_kernels_impl.h); see ops_simd_avx512.cc.
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

#define LK_TGT __attribute__((target("avx2,fma")))
#define LK_INL __attribute__((always_inline, target("avx2,fma"))) static inline

namespace lorakit {
namespace ops {
namespace avx2 {

struct V {
  using R = __m256;
  static constexpr int64_t N = 8;
  LK_INL R load(const float* p) { return _mm256_loadu_ps(p); }
  LK_INL void store(float* p, R x) { _mm256_storeu_ps(p, x); }
  LK_INL __m256i mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  LK_INL R load_part(const float* p, int64_t n, float fill) {
    __m256i m = mask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  LK_INL void store_part(float* p, R x, int64_t n) { _mm256_maskstore_ps(p, mask(n), x); }
  LK_INL R set1(float x) { return _mm256_set1_ps(x); }
  LK_INL R zero() { return _mm256_setzero_ps(); }
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
  LK_INL R add(R a, R b) { return _mm256_add_ps(a, b); }
  LK_INL R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  LK_INL R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  LK_INL R div(R a, R b) { return _mm256_div_ps(a, b); }
  LK_INL R fmadd(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  LK_INL R max(R a, R b) { return _mm256_max_ps(a, b); }
  LK_INL R sqrt(R a) { return _mm256_sqrt_ps(a); }
  LK_INL float hsum(R a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  LK_INL float hmax(R a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // exp as in the AVX-512 version: the same clamp, Cody–Waite reduction and polynomial,
  // then 2^n applied as 2^⌊n/2⌋ · 2^(n−⌊n/2⌋). Both factors are normal for every n the clamp
  // allows (−150…128), the first product is exact and the second rounds once, so this is
  // vscalefps's result bit for bit: gradual underflow to 0 (a single 2^n factor cannot go
  // below 2^−126 and used to flush exp(x) to 0 for x < −87.0, normal results included),
  // +inf past 88.72, NaN kept (max/min return their second operand when one is NaN).
  LK_INL R exp(R x) {
    x = _mm256_min_ps(_mm256_set1_ps(89.f), _mm256_max_ps(_mm256_set1_ps(-104.f), x));
    R n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    R r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    R p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.f)));
    const __m256i ni = _mm256_cvtps_epi32(n);  // NaN gives INT_MIN; p is NaN then anyway
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const R s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const R s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  }
};

}  // namespace avx2
}  // namespace ops
}  // namespace lorakit

#define LK_NS avx2
#define LK_TABLE kKernelsAvx2
#define LK_ISA_NAME "avx2"
#include "ops_kernels_impl.h"
#endif
