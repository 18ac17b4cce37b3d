// AVX2 + FMA GEMM kernels (6×16 register tile, 4×16 for ragged row tails). Compiled
// without -march: the target pragma gives every function here the AVX2/FMA target;
// gemm_core.cc calls in only when cpu_path() == Avx2.
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

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

// pack_b_generic<16>'s layout with vector moves: a row-major B row segment is two 8-float
// copies; a transposed B (X·Wᵀ: W row-major n×k) goes through 8×8 register transposes
// instead of one scalar store per element (a 128-row product spent ~15 % packing B).
// bf16 is widened by the same exact 16-bit shift. Ragged panels take the generic code.
template <class TB>
void pack_b16(const TB* b, int64_t ldb, bool transB, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* bp) {
  for (int64_t jb = 0; jb < nc; jb += 16) {
    float* dst = bp + (jb / 16) * kc * 16;
    const int64_t nw = imin(16, nc - jb);
    if (nw < 16) {
      pack_b_generic<16>(b, ldb, transB, k0, kc, j0 + jb, nw, dst);
      continue;
    }
    if (!transB) {
      for (int64_t p = 0; p < kc; p++) {
        const TB* src = b + (k0 + p) * ldb + j0 + jb;
        _mm256_store_ps(dst + p * 16, load8(src));
        _mm256_store_ps(dst + p * 16 + 8, load8(src + 8));
      }
      continue;
    }
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8)
      for (int h = 0; h < 2; h++) {
        __m256 r[8];
        for (int q = 0; q < 8; q++) r[q] = load8(b + (j0 + jb + 8 * h + q) * ldb + k0 + p);
        V::transpose8(r);
        for (int q = 0; q < 8; q++) _mm256_store_ps(dst + (p + q) * 16 + 8 * h, r[q]);
      }
    for (; p < kc; p++)
      for (int j = 0; j < 16; j++) dst[p * 16 + j] = to_f32(b[(j0 + jb + j) * ldb + k0 + p]);
  }
}

void pack_b_fast(const GemmTask& t, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* bp) {
  if (t.bBf16)
    pack_b16(static_cast<const uint16_t*>(t.b), t.ldb, t.transB, k0, kc, j0, nc, bp);
  else
    pack_b16(static_cast<const float*>(t.b), t.ldb, t.transB, k0, kc, j0, nc, bp);
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
  // V's blocking (simd_v_avx2.inc.h) picks the B-stationary order, NC and MC.
  packed_gemm<V, 6, 2, 256, 256, 96, true>(t, pack_b_fast, pack_a_any);
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
