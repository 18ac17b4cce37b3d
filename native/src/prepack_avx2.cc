// AVX2+FMA kernels over prepacked weights (prepack_internal.h): the decode path (≤ 8 rows)
// streams the panels once, with several independent FMA chains per row (a single chain per
// 8 columns is latency-bound: 4 cycles per 8 multiply-adds), and the prefill path feeds the
// panels to the same 6×16 packed GEMM as gemm_avx2.cc (its B "packing" is a contiguous copy
// of a panel slice, widened for bf16, instead of a transposing gather of W).
//
// Every element is computed exactly as the packed GEMM computes it (gemm_driver.inc.h): per
// k slice of 256, acc = fma(a_p, w_p, acc) from zero in order of p, then c = acc·alpha (first
// slice, beta 0), fma(acc, alpha, c) (beta 1 or a later slice) or fma(acc, alpha, beta·c).
// So a row's bits do not depend on m, on the path or on the thread split; tests compare
// both paths with the row-major GEMM bit for bit.
#include "prepack_internal.h"

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
namespace prepack_avx2 {
namespace {

#include "simd_v_avx2.inc.h"
using V = VecAvx2<false>;

#include "gemm_driver.inc.h"

static_assert(kPackPanel == 16, "one panel is one 6x16 B panel");

// One 16-value panel row as columns 0..7 (lo) and 8..15 (hi) in f32. A bf16 row is stored
// with columns 4..7 and 8..11 swapped (prepack_internal.h), so the in-lane unpacks with zero
// low halves put every column in place: bf16 → f32 is exactly that 16-bit shift.
inline void row16(const float* p, __m256& lo, __m256& hi) {
  lo = _mm256_loadu_ps(p);
  hi = _mm256_loadu_ps(p + 8);
}
inline void row16(const uint16_t* p, __m256& lo, __m256& hi) {
  const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i z = _mm256_setzero_si256();
  lo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, r));
  hi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, r));
}

// One k slice (depth kc) of G adjacent panels (bp: the first; panel g at bp + g·kc·16) for
// M rows of A (row i at a + i·lda, already at the slice's first k): C's 16·G columns at c
// (row i at c + i·ldc, the first `valid` columns exist) get the slice's contribution.
// `ahead`: where the W this thread reads next begins (ahead_bytes of it, contiguous): each
// step prefetches the next PB bytes of it into L2 (at PB = 32, a line every other step), so
// the next tile is on its way while this one computes. decode_rows says which tiles fetch.
template <int M, int G, class TB, int PB = static_cast<int>(G * 16 * sizeof(TB))>
inline void tile(const TB* __restrict bp, int64_t kc, const float* a, int64_t lda, float* c, int64_t ldc,
                 float alpha, float beta, int64_t valid, const void* ahead, int64_t ahead_bytes) {
  constexpr int kLines = PB >= 64 ? PB / 64 : 1;
  const char* pf = static_cast<const char*>(ahead);
  constexpr int NV = 2 * G;
  __m256 acc[M][NV];
#pragma GCC unroll 8
  for (int i = 0; i < M; i++)
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) acc[i][v] = _mm256_setzero_ps();
  const float* ar[M];
  for (int i = 0; i < M; i++) ar[i] = a + i * lda;
  // One panel row at a time, used by every row of A at once: only its two widened vectors are
  // live, so the accumulators, A's broadcasts (hoisted when they fit too) and the panel fit the
  // 16 registers. Widening all G panel rows first kept 2·G vectors live: the bf16 one-row tile
  // spilled two of them to the stack every p (a stand-alone copy of that loop streamed 47–57
  // GB/s from L2 on this host, 60–63 without the spills). Each accumulator still takes its FMAs
  // in order of p, so the bits do not change.
  constexpr bool kHoist = NV * M + M + 3 <= 16;
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; p++) {
    if (pf != nullptr && p * PB < ahead_bytes && (p * PB) % 64 == 0) {
      const char* line = pf + p * PB;
#pragma GCC unroll 4
      for (int l = 0; l < kLines; l++) _mm_prefetch(line + 64 * l, _MM_HINT_T1);
    }
    __m256 x[kHoist ? M : 1];
    if constexpr (kHoist)
#pragma GCC unroll 8
      for (int i = 0; i < M; i++) x[i] = _mm256_set1_ps(ar[i][p]);
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
      __m256 lo, hi;
      row16(bp + g * kc * 16 + p * 16, lo, hi);
#pragma GCC unroll 8
      for (int i = 0; i < M; i++) {
        const __m256 xi = kHoist ? x[i] : _mm256_set1_ps(ar[i][p]);
        acc[i][2 * g] = _mm256_fmadd_ps(xi, lo, acc[i][2 * g]);
        acc[i][2 * g + 1] = _mm256_fmadd_ps(xi, hi, acc[i][2 * g + 1]);
      }
    }
  }
  // Every accumulator by a constant index: with row and vector loops that stopped at a break,
  // GCC kept acc addressable and stored every accumulator to the stack on each trip of the k
  // loop (3 to 6 bf16 rows ran 1.15–1.9× slower from memory; bench/prepack).
  const __m256 va = _mm256_set1_ps(alpha);
#pragma GCC unroll 8
  for (int i = 0; i < M; i++)
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++)
      if (v * 8 < valid) store8(acc[i][v], c + i * ldc + v * 8, valid - v * 8, va, beta);
}

// Rows 0..MA (and MA..MA+MB when MB > 0) over panels [j0/16, ⌈j1/16⌉), slice by slice: the
// second row group re-reads a panel slice from L1, so W streams from memory once.
template <int MA, int MB, int G, class TB>
void decode_rows(const PackedProduct& g, int64_t j0, int64_t j1) {
  const TB* w = static_cast<const TB*>(g.w);
  const int64_t npad = packed_npad(g.n), k = g.k, n = g.n;
  const int64_t q0 = j0 / 16, q1 = (j1 + 15) / 16;
  for (int64_t pc = 0; pc < k; pc += kPackSlice) {
    const int64_t kc = imin(kPackSlice, k - pc);
    const float beta = pc == 0 ? g.beta : 1.f;
    const TB* slice = w + pc * npad;
    int64_t q = q0;
    for (; q + G <= q1; q += G) {
      const TB* bp = slice + q * kc * 16;
      const int64_t valid = imin(16 * G, n - 16 * q);
      // The next tile, for the bf16 tiles that fetch it.
      const NextTile<TB> next = sizeof(TB) == 2 ? next_tile(w, npad, k, pc, kc, q, G, q0, q1) : NextTile<TB>{};
      const int64_t next_bytes = next.kc * 16 * G * static_cast<int64_t>(sizeof(TB));
      if constexpr (MB > 0 && sizeof(TB) == 2) {
        // Two row groups: widen the bf16 panel slice once into L1 and run both on it; the
        // first fetches the next bf16 tile (nothing else asks memory for it while the two
        // compute from L1: 7 and 8 rows ran 1.14–1.23× faster with it).
        float* wide = gemm_scratch(3, static_cast<size_t>(kPackSlice) * 16 * G);
        for (int64_t e = 0; e < kc * 16 * G; e += 16)
          row16(bp + e, *reinterpret_cast<__m256*>(wide + e), *reinterpret_cast<__m256*>(wide + e + 8));
        tile<MA, G, float, 16 * G * 2>(wide, kc, g.a + pc, k, g.c + 16 * q, n, g.alpha, beta, valid, next.w,
                                       next_bytes);
        tile<MB, G, float>(wide, kc, g.a + MA * k + pc, k, g.c + MA * n + 16 * q, n, g.alpha, beta, valid, nullptr,
                           0);
      } else {
        // bf16 tiles of 2 to 6 rows fetch the next tile (without, 0.82–0.95× on an AVX2-only
        // Zen 3); one row does not (1.07–1.17× faster without: it asks for two lines every
        // step of 4 cycles), nor does f32 (the hardware prefetcher keeps up: the fetch cost
        // 7–10 %, one row and 7 or 8).
        const bool fetch = sizeof(TB) == 2 && MA > 1;
        tile<MA, G>(bp, kc, g.a + pc, k, g.c + 16 * q, n, g.alpha, beta, valid, fetch ? next.w : nullptr,
                    next_bytes);
        if constexpr (MB > 0)
          tile<MB, G>(bp, kc, g.a + MA * k + pc, k, g.c + MA * n + 16 * q, n, g.alpha, beta, valid, nullptr, 0);
      }
    }
    for (; q < q1; q++) {
      const TB* bp = slice + q * kc * 16;
      const int64_t valid = imin(16, n - 16 * q);
      const bool fetch = sizeof(TB) == 2 && MA > 1 && q + 2 <= q1;
      tile<MA, 1>(bp, kc, g.a + pc, k, g.c + 16 * q, n, g.alpha, beta, valid, fetch ? bp + kc * 16 : nullptr,
                  kc * 16 * static_cast<int64_t>(sizeof(TB)));
      if constexpr (MB > 0)
        tile<MB, 1>(bp, kc, g.a + MA * k + pc, k, g.c + MA * n + 16 * q, n, g.alpha, beta, valid, nullptr, 0);
    }
  }
}

template <class TB>
void decode_any(const PackedProduct& g, int64_t j0, int64_t j1) {
  // Independent FMA chains: 2·G·M per slice group (8 to 12), within 16 registers.
  switch (g.m) {
    case 1: return decode_rows<1, 0, 4, TB>(g, j0, j1);
    case 2: return decode_rows<2, 0, 2, TB>(g, j0, j1);
    case 3: return decode_rows<3, 0, 2, TB>(g, j0, j1);
    case 4: return decode_rows<4, 0, 1, TB>(g, j0, j1);
    case 5: return decode_rows<5, 0, 1, TB>(g, j0, j1);
    case 6: return decode_rows<6, 0, 1, TB>(g, j0, j1);
    case 7: return decode_rows<4, 3, 1, TB>(g, j0, j1);
    default: return decode_rows<4, 4, 1, TB>(g, j0, j1);
  }
}

void pack_a6(const GemmTask& t, int64_t i0, int64_t mr, int64_t k0, int64_t kc, float* ap) {
  pack_a_panels_generic<6>(t.a, t.lda, t.transA, i0, mr, k0, kc, ap);
}

template <class TB>
void gemm_any(const PackedProduct& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
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
  // The packed GEMM's B panel for slice k0, columns [j0+jc, j0+jc+nc): the panel slices as
  // stored, one after another (zero-padded columns included), widened to f32.
  auto pack_b = [&](const GemmTask&, int64_t k0, int64_t kc, int64_t jc, int64_t nc, float* bp) -> const float* {
    // f32 panel slices are the B panels already: used in place, not copied.
    if constexpr (sizeof(TB) == 4) return w + k0 * npad + ((j0 + jc) / 16) * kc * 16;
    for (int64_t jb = 0; jb < nc; jb += 16) {
      const TB* src = w + k0 * npad + ((j0 + jc + jb) / 16) * kc * 16;
      float* dst = bp + (jb / 16) * kc * 16;
      for (int64_t e = 0; e < kc * 16; e += 16) {
        __m256 lo, hi;
        row16(src + e, lo, hi);
        _mm256_store_ps(dst + e, lo);
        _mm256_store_ps(dst + e + 8, hi);
      }
    }
    return bp;
  };
  packed_gemm<V, 6, 2, kPackSlice, 256, 96, true>(t, pack_b, pack_a6);
}

}  // namespace
}  // namespace prepack_avx2

void packed_decode_avx2(const PackedProduct& g, int64_t j0, int64_t j1) {
  if (g.bf16)
    prepack_avx2::decode_any<uint16_t>(g, j0, j1);
  else
    prepack_avx2::decode_any<float>(g, j0, j1);
}

void packed_gemm_avx2(const PackedProduct& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  if (i1 <= i0 || j1 <= j0) return;
  if (g.bf16)
    prepack_avx2::gemm_any<uint16_t>(g, i0, i1, j0, j1);
  else
    prepack_avx2::gemm_any<float>(g, i0, i1, j0, j1);
}

}  // namespace lorakit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
