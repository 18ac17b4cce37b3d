// AVX-512 prefill over prepacked weights: the panels feed the same 6×64 packed GEMM as
// gemm_avx512.cc's general path (its B "packing" becomes a copy of four 16-column panel
// slices per 64-column panel, widened for bf16), so AVX-512 hosts keep their wide kernel on
// prepacked weights. Decode (≤ 8 rows) runs prepack_avx2.cc's kernel on every x86 host.
// Every element is computed as the row-major GEMM computes it (FMA chains from zero per
// 256-deep k slice, store_tile's alpha/beta formula), so the results are bit-identical;
// test/kernels/prepack-native.test.ts checks it on the host it runs on.
#include "prepack_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
#endif

namespace lorakit {
namespace prepack_avx512 {
namespace {

#include "simd_v_avx512.inc.h"
using V = VecAvx512<false>;

#include "gemm_driver.inc.h"

// 16 panel values of one row to f32 columns 0..15 at dst (32-byte aligned); a bf16 row has
// columns 4..7 and 8..11 swapped (prepack_internal.h), undone by the in-lane unpacks.
inline void row16(const float* src, float* dst) {
  _mm256_store_ps(dst, _mm256_loadu_ps(src));
  _mm256_store_ps(dst + 8, _mm256_loadu_ps(src + 8));
}
inline void row16(const uint16_t* src, float* dst) {
  const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
  const __m256i z = _mm256_setzero_si256();
  _mm256_store_ps(dst, _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, r)));
  _mm256_store_ps(dst + 8, _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, r)));
}

void pack_a6(const GemmTask& t, int64_t i0, int64_t mr, int64_t k0, int64_t kc, float* ap) {
  pack_a_panels_generic<6>(t.a, t.lda, t.transA, i0, mr, k0, kc, ap);
}

template <class TB>
void gemm_any(const PackedProduct& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  constexpr int NR = 64;
  GemmTask t;
  t.m = i1 - i0;
  t.n = j1 - j0;
  t.k = g.k;
  t.n_full = g.n;
  t.a = g.a + i0 * g.k;
  t.lda = g.k;
  t.c = g.c + i0 * g.n + j0;
  t.ldc = g.n;
  t.alpha = g.alpha;
  t.beta = g.beta;
  const TB* w = static_cast<const TB*>(g.w);
  const int64_t npad = packed_npad(g.n);
  // The 6×64 kernel's B panel for slice k0, columns [j0+jc, j0+jc+nc): row p holds the rows
  // p of four consecutive 16-column panel slices; columns past the last panel are zeros.
  auto pack_b = [&](const GemmTask&, int64_t k0, int64_t kc, int64_t jc, int64_t nc, float* bp) {
    const TB* slice = w + k0 * npad;
    for (int64_t jb = 0; jb < nc; jb += NR) {
      float* dst = bp + (jb / NR) * kc * NR;
      for (int v = 0; v < NR / 16; v++) {
        const int64_t col = j0 + jc + jb + 16 * v;
        if (col >= npad) {
          for (int64_t p = 0; p < kc; p++) std::memset(dst + p * NR + 16 * v, 0, sizeof(float) * 16);
          continue;
        }
        const TB* src = slice + (col / 16) * kc * 16;
        for (int64_t p = 0; p < kc; p++) row16(src + p * 16, dst + p * NR + 16 * v);
      }
    }
  };
  packed_gemm<V, 6, 4, kPackSlice, 512, 96, true>(t, pack_b, pack_a6);
}

}  // namespace
}  // namespace prepack_avx512

void packed_gemm_avx512(const PackedProduct& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  if (i1 <= i0 || j1 <= j0) return;
  if (g.bf16)
    prepack_avx512::gemm_any<uint16_t>(g, i0, i1, j0, j1);
  else
    prepack_avx512::gemm_any<float>(g, i0, i1, j0, j1);
}

}  // namespace lorakit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
