// AVX-512 kernels over prepacked weights. Prefill: the panels feed the same 6×64 packed GEMM
// as gemm_avx512.cc's general path, its 64-column B panel read as four adjacent 16-column
// panel slices (micro_kernel's SUB layout): f32 panels in place, bf16 ones widened into that
// layout a block at a time, so AVX-512 hosts keep their wide kernel on prepacked weights
// (copying f32 blocks too measured 0.94–0.97× on a 128-token prompt's products). Decode of 2–8 rows: one 16-column panel row is one register, and the 32
// registers hold 16 accumulators (8 rows × 2 panels, 4 × 4, ...), so a batch of a few
// sequences is not held to the 16-register AVX2 tile's rate (bf16 × 8 rows ran slower than
// the row-major path). One bf16 row runs here too (1.06–1.09× the AVX2 kernel from memory;
// G = 8 panels per tile was slower than 4); one f32 row stays on prepack_avx2.cc's kernel,
// which already streams at the bandwidth.
// Every element is computed as the row-major GEMM computes it (FMA chains from zero per
// 256-deep k slice, store_tile's alpha/beta formula), so the results are bit-identical;
// test/kernels/prepack-native.test.ts checks it on the host it runs on.
#include "cpu.h"
#include "prepack_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "avx512_defined.h"

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

// Columns per B block of a prefill product: the block read (256 KiB f32) and the next one
// fetched ahead fit a 1 MiB L2 with the rows of A and C in use (512-column blocks with the
// fetch ahead measured 0.95× the 512-column copy without it).
constexpr int64_t kPrefillNC = 256;

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

// The 6×64 kernel reads a 64-column B panel as four 16-column sub-panels (SUB layout):
// four adjacent f32 panels of a slice are one, read in place; a bf16 block, or one that
// runs past the last panel, is widened or copied (zeros past the last panel) into bp.
template <class TB>
struct PanelsB {
  static constexpr int64_t NR = 64;
  static constexpr bool kSubPanels = true;
  const TB* w;
  int64_t npad, j0;
  const float* operator()(const GemmTask&, int64_t k0, int64_t kc, int64_t jc, int64_t nc, float* bp) const {
    const TB* slice = w + k0 * npad;
    const int64_t col0 = j0 + jc, groups = (nc + NR - 1) / NR;
    if constexpr (sizeof(TB) == 4)
      if (col0 + groups * NR <= npad) return reinterpret_cast<const float*>(slice + col0 * kc);
    for (int64_t v = 0; v < groups * (NR / 16); v++) {
      float* dst = bp + v * kc * 16;
      const int64_t col = col0 + 16 * v;
      if (col >= npad) {
        std::memset(dst, 0, sizeof(float) * 16 * kc);
        continue;
      }
      const TB* src = slice + col * kc;
      for (int64_t p = 0; p < kc; p++) row16(src + p * 16, dst + p * 16);
    }
    return bp;
  }
  // A block's panels are one run of the slice: columns [j0+jc, j0+jc+nc) (within npad). The
  // micro-kernels fetch the next block into L2, spread over their k steps, while they use
  // this one, so an f32 block read in place, or a bf16 block widened, comes from L2 rather
  // than memory (bench/prepack --prefill: f32 1.03–1.06×, bf16 1.01–1.03×; a burst of
  // prefetches per micro-tile instead measured 0.95–1.00× for f32).
  Source source(int64_t k0, int64_t kc, int64_t jc, int64_t nc) const {
    const int64_t col = j0 + jc, end = imin(npad, (j0 + jc + nc + 15) / 16 * 16);
    if (col >= end) return {};
    return {reinterpret_cast<const char*>(w + k0 * npad + col * kc), (end - col) * kc * int64_t{sizeof(TB)}};
  }
};

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
  packed_gemm<V, 6, 4, kPackSlice, kPrefillNC, 96, true>(t, PanelsB<TB>{w, npad, j0}, pack_a6);
}

// One panel row (16 values) as 16 f32 lanes. A bf16 row is zero-extended in its stored
// order, columns 4..7 and 8..11 swapped (prepack_internal.h): its lanes are put back in
// column order once per tile, when the accumulators are stored (in_order).
inline __m512 wrow(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 wrow(const uint16_t* p) {
  const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(avx512_defined::slli_epi32<16>(avx512_defined::cvtepu16_epi32(r)));
}
template <class TB>
inline __m512 in_order(__m512 v) {
  if constexpr (sizeof(TB) == 4) {
    return v;
  } else {
    const __m512i swap = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15);
    return _mm512_maskz_permutexvar_ps(avx512_defined::kAll16, swap, v);  // GCC 12: avx512_defined.h
  }
}

// One k slice (depth kc) of G adjacent panels at bp for M rows of A (row i at a + i·lda, at
// the slice's first k): C's 16·G columns at c (row i at c + i·ldc; the first `valid` exist)
// get the slice's contribution. Each element is one FMA chain from zero in order of p, then
// the packed GEMM's alpha/beta formula: the bits of every other path.
// `ahead`: the W this thread reads next, prefetched G·16 values per step (the cache level
// below says which), as prepack_avx2.cc's bf16 tile does (without it, G bf16 panel streams read slower than one).
// f32 tiles here (2–8 rows) take it too: 8 rows streamed 1.14–1.29× faster with it, 4 rows
// 0.99–1.03× (bench/prepack --against); one f32 row, on prepack_avx2.cc, is faster without.
// f32 lines are fetched into L2 (T1); bf16 ones into L1 (T0) on AMD's cores and into L2 on
// Intel's (Bf16Locality: 3 = T0, 2 = T1). On a Zen 5, T0 streamed bf16 1.02–1.13× faster
// than T1 at 1 and 8 rows on the 125M and Qwen2.5-0.5B shapes, while f32 read no faster with
// it (0.95–1.01×) and routing one f32 row here with T0 read 0.92× of the AVX2 kernel. On an
// Intel Xeon (48 KiB L1d, 2 MiB L2) T1 streamed bf16 1.20–1.22× faster at 1 row, 1.14–1.15×
// at 4 and 1.04–1.07× at 8: there the next tile's 32 KiB fetched into L1 next to the current
// one's evicted lines before they were read.
template <int M, int G, class TB, int Bf16Locality>
inline void decode_tile(const TB* __restrict bp, int64_t kc, const float* a, int64_t lda, float* c, int64_t ldc,
                        float alpha, float beta, int64_t valid, const TB* ahead, int64_t ahead_kc) {
  // W bytes one step reads; a step of 32 bytes (one bf16 panel) prefetches a line every other step.
  constexpr int kStepBytes = static_cast<int>(G * 16 * sizeof(TB));
  constexpr int kLines = kStepBytes >= 64 ? kStepBytes / 64 : 1;
  __m512 acc[M][G];
#pragma GCC unroll 8
  for (int i = 0; i < M; i++)
#pragma GCC unroll 4
    for (int q = 0; q < G; q++) acc[i][q] = _mm512_setzero_ps();
  const float* ar[M];
  for (int i = 0; i < M; i++) ar[i] = a + i * lda;
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; p++) {
    if (ahead != nullptr && p < ahead_kc && (p * kStepBytes) % 64 == 0) {
      const char* line = reinterpret_cast<const char*>(ahead + p * 16 * G);
#pragma GCC unroll 4
      for (int l = 0; l < kLines; l++) __builtin_prefetch(line + 64 * l, 0, sizeof(TB) == 2 ? Bf16Locality : 2);
    }
    __m512 w[G];
#pragma GCC unroll 4
    for (int q = 0; q < G; q++) w[q] = wrow(bp + q * kc * 16 + p * 16);
#pragma GCC unroll 8
    for (int i = 0; i < M; i++) {
      const __m512 x = _mm512_set1_ps(ar[i][p]);
#pragma GCC unroll 4
      for (int q = 0; q < G; q++) acc[i][q] = _mm512_fmadd_ps(x, w[q], acc[i][q]);
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int q = 0; q < G; q++) {
    const int64_t j = 16 * q;
    if (j >= valid) break;
    const int64_t nr = valid - j < 16 ? valid - j : 16;
    const __mmask16 mk = static_cast<__mmask16>(nr == 16 ? 0xFFFF : (1u << nr) - 1u);
    for (int i = 0; i < M; i++) {
      float* d = c + i * ldc + j;
      const __m512 v = in_order<TB>(acc[i][q]);
      __m512 y;
      if (beta == 0.f)
        y = _mm512_mul_ps(v, va);
      else if (beta == 1.f)
        y = _mm512_fmadd_ps(v, va, _mm512_maskz_loadu_ps(mk, d));
      else
        y = _mm512_fmadd_ps(v, va, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(mk, d)));
      _mm512_mask_storeu_ps(d, mk, y);
    }
  }
}

// Rows [0, M) over panels [j0/16, ⌈j1/16⌉), slice by slice, G panels at a time.
template <int M, int G, class TB, int Bf16Locality>
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
      const NextTile<TB> ahead = next_tile(w, npad, k, pc, kc, q, G, q0, q1);
      decode_tile<M, G, TB, Bf16Locality>(bp, kc, g.a + pc, k, g.c + 16 * q, n, g.alpha, beta,
                                          imin(16 * G, n - 16 * q), ahead.w, ahead.kc);
    }
    for (; q < q1; q++)
      decode_tile<M, 1, TB, Bf16Locality>(slice + q * kc * 16, kc, g.a + pc, k, g.c + 16 * q, n, g.alpha, beta,
                                          imin(16, n - 16 * q), static_cast<const TB*>(nullptr), 0);
  }
}

// 8–16 accumulators per tile (M·G), within the 32 registers with the G panel rows. One to
// four rows take G4 panels at a time: 4, but 2 for bf16 on Intel's cores, where two panel
// streams per tile read bf16 at 1.08–1.16× four (one row; the 125M and Qwen2.5-0.5B shapes)
// and 1.14–1.22× (2–4 rows; `bench/prepack --against`), while f32 read 0.92–1.19× (kept at 4).
template <class TB, int Bf16Locality, int G4>
void decode_any(const PackedProduct& g, int64_t j0, int64_t j1) {
  switch (g.m) {
    case 1: return decode_rows<1, G4, TB, Bf16Locality>(g, j0, j1);
    case 2: return decode_rows<2, G4, TB, Bf16Locality>(g, j0, j1);
    case 3: return decode_rows<3, G4, TB, Bf16Locality>(g, j0, j1);
    case 4: return decode_rows<4, G4, TB, Bf16Locality>(g, j0, j1);
    case 5: return decode_rows<5, 2, TB, Bf16Locality>(g, j0, j1);
    case 6: return decode_rows<6, 2, TB, Bf16Locality>(g, j0, j1);
    case 7: return decode_rows<7, 2, TB, Bf16Locality>(g, j0, j1);
    default: return decode_rows<8, 2, TB, Bf16Locality>(g, j0, j1);
  }
}

}  // namespace
}  // namespace prepack_avx512

void packed_decode_avx512(const PackedProduct& g, int64_t j0, int64_t j1) {
  static const bool intel = cpu_features().intel;
  if (g.bf16 && intel)
    prepack_avx512::decode_any<uint16_t, 2, 2>(g, j0, j1);
  else if (g.bf16)
    prepack_avx512::decode_any<uint16_t, 3, 4>(g, j0, j1);
  else
    prepack_avx512::decode_any<float, 2, 4>(g, j0, j1);
}

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
