// AVX2 + FMA GEMM kernels (6×16 register tile). Compiled without -march: the target
// pragma gives every function here the AVX2/FMA target; gemm_core.cc calls in only when
// cpu_path() == Avx2.
#include "gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace lorakit {
namespace avx2 {
namespace {

#include "simd_v_avx2.inc.h"
using V = VecAvx2<true>;

#include "gemm_driver.inc.h"

void pack_a_any(const GemmTask& t, int64_t i0, int64_t mr, int64_t k0, int64_t kc, float* ap) {
  pack_a_panels_generic<6>(t.a, t.lda, t.transA, i0, mr, k0, kc, ap);
}

}  // namespace
}  // namespace avx2

void gemm_serial_avx2(const GemmTask& t) {
  using namespace avx2;
  if (t.m <= 0 || t.n <= 0) return;
  if (t.k <= 0 || t.alpha == 0.f) {
    scale_c(t);
    return;
  }
  packed_gemm<V, 6, 2, 256, 256, 96, true>(t, pack_b_any<16>, pack_a_any);
}

double fma_chains_avx2(int64_t iters) {
  constexpr int NC = 12;
  __m256 acc[NC];
  for (int q = 0; q < NC; q++) acc[q] = _mm256_set1_ps(0.001f * q);
  const __m256 x = _mm256_set1_ps(0.9999999f), y = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int q = 0; q < NC; q++) acc[q] = _mm256_fmadd_ps(acc[q], x, y);
  }
  __m256 s = acc[0];
  for (int q = 1; q < NC; q++) s = _mm256_add_ps(s, acc[q]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  volatile float sink = out[0] + out[7];
  (void)sink;
  return static_cast<double>(iters) * NC * 8 * 2;
}

}  // namespace lorakit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
