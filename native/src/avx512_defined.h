// AVX-512 intrinsics whose unmasked GCC forms read an undefined register.
//
// GCC 12's avx512fintrin.h builds _mm512_max_ps, _mm512_min_ps, _mm512_sqrt_ps,
// _mm512_scalef_ps, _mm512_roundscale_ps, _mm512_unpacklo/hi_ps, _mm512_shuffle_f32x4,
// _mm512_cvtepu16_epi32, _mm512_slli_epi32 and _mm512_extractf64x4_pd (hence
// _mm512_reduce_add_ps / _mm512_reduce_max_ps) on a masked builtin whose pass-through
// operand is _mm512_undefined_ps(): a self-initialised variable that -Wmaybe-uninitialized
// reports at every inlined use (GCC bug 105593, fixed in GCC 13). The zero-masking forms
// with every lane selected are the same instruction: the all-ones mask folds away, and the
// pass-through is a defined zero that no lane ever takes. The reductions keep GCC's order
// of operations exactly (upper half op lower half, then 128-bit halves, then pairs), so the
// results are bit for bit those of the intrinsics they replace.
#pragma once
#if defined(__x86_64__)
#include <immintrin.h>

#define LK512_INL __attribute__((always_inline, target("avx512f,avx512dq"))) static inline

namespace lorakit {
namespace avx512_defined {

constexpr __mmask16 kAll16 = 0xFFFF;
constexpr __mmask8 kAll8 = 0xFF;

LK512_INL __m512 max_ps(__m512 a, __m512 b) { return _mm512_maskz_max_ps(kAll16, a, b); }
LK512_INL __m512 min_ps(__m512 a, __m512 b) { return _mm512_maskz_min_ps(kAll16, a, b); }
LK512_INL __m512 sqrt_ps(__m512 a) { return _mm512_maskz_sqrt_ps(kAll16, a); }
LK512_INL __m512 scalef_ps(__m512 a, __m512 b) { return _mm512_maskz_scalef_ps(kAll16, a, b); }
// Round to the nearest integer (ties to even), no exception flags.
LK512_INL __m512 round_nearest_ps(__m512 a) {
  return _mm512_maskz_roundscale_ps(kAll16, a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

LK512_INL __m512 unpacklo_ps(__m512 a, __m512 b) { return _mm512_maskz_unpacklo_ps(kAll16, a, b); }
LK512_INL __m512 unpackhi_ps(__m512 a, __m512 b) { return _mm512_maskz_unpackhi_ps(kAll16, a, b); }
template <int IMM>
LK512_INL __m512 shuffle_f32x4(__m512 a, __m512 b) {
  return _mm512_maskz_shuffle_f32x4(kAll16, a, b, IMM);
}
// 16 uint16 lanes zero-extended to 32 bits.
LK512_INL __m512i cvtepu16_epi32(__m256i a) { return _mm512_maskz_cvtepu16_epi32(kAll16, a); }
template <unsigned IMM>
LK512_INL __m512i slli_epi32(__m512i a) {
  return _mm512_maskz_slli_epi32(kAll16, a, IMM);
}

// The upper (1) or lower (0) 256 bits of a.
LK512_INL __m256 upper_half(__m512 a) {
  return _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(kAll8, _mm512_castps_pd(a), 1));
}
LK512_INL __m256 lower_half(__m512 a) {
  return _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(kAll8, _mm512_castps_pd(a), 0));
}

// _mm512_reduce_add_ps, same association: ((hi+lo) folded to 128 bits, then {2,3,0,1}).
LK512_INL float reduce_add_ps(__m512 a) {
  const __m256 t3 = _mm256_add_ps(upper_half(a), lower_half(a));
  const __m128 t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_extractf128_ps(t3, 0));
  const __m128 t8 = _mm_add_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
  return t8[0] + t8[1];
}

// _mm512_reduce_max_ps, same operand order (which decides what a NaN lane gives).
LK512_INL float reduce_max_ps(__m512 a) {
  const __m256 t3 = _mm256_max_ps(upper_half(a), lower_half(a));
  const __m128 t6 = _mm_max_ps(_mm256_extractf128_ps(t3, 1), _mm256_extractf128_ps(t3, 0));
  const __m128 t8 = _mm_max_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m128 t10 = _mm_max_ps(t8, _mm_shuffle_ps(t8, t8, _MM_SHUFFLE(0, 1, 0, 1)));
  return _mm_cvtss_f32(t10);
}

}  // namespace avx512_defined
}  // namespace lorakit

#undef LK512_INL
#endif  // __x86_64__
