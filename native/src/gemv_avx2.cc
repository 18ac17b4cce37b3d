// Decode-sized products: C (m×n) = alpha·A·Wᵀ + beta·C with m ≤ 8 rows of A and W the
// row-major n×k weight of a linear layer (f32 or bf16), as every linear layer computes it
// while generating. The packed GEMM would repack all of W on every call (a strided gather
// for Wᵀ) and keep such a product on one thread; here W is read once, in place, 8 rows at a
// time (8 sequential streams), transposed 8×8 in registers, and the columns are split over
// the thread pool: the product runs at memory bandwidth.
//
// Every element is computed exactly as the packed GEMM computes it (gemm_driver.inc.h), so
// a row gets the same bits alone, in a decode batch of 8, or inside a prefill of hundreds:
// per k slice of 256 (KC of every packed kernel), acc = fma(a_p, w_p, acc) in order of p
// from 0, then c = acc·alpha (first slice, beta 0), fma(acc, alpha, c) (beta 1 or a later
// slice) or fma(acc, alpha, beta·c). A test compares it bit for bit with the packed GEMM.
#include "gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu.h"
#include "threadpool.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace lorakit {
namespace {

#include "simd_v_avx2.inc.h"

// The k slice of the packed kernels (KC in gemm_avx2.cc, gemm_avx512.cc, gemm_portable.cc).
constexpr int64_t kSlice = 256;
#ifdef LORAKIT_GEMM_KC
static_assert(LORAKIT_GEMM_KC == kSlice, "the decode path must slice k as the packed kernels do");
#endif
// Columns per thread task, and the weight bytes below which one thread does it all (a task
// handed to the pool costs a few µs: a 256 KiB slice takes ~10 µs to stream).
constexpr int64_t kColUnit = 64;
constexpr int64_t kMinBytesPerThread = 256 * 1024;

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float widen(float x) { return x; }
inline float widen(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// r[q] (lane j) ← r[j] (lane q): 8 rows of 8 become 8 columns of 8.
inline void transpose8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Fetches up to n lines from the cursor pf (advanced) toward end into L1.
inline void fetch_lines(const char*& pf, const char* end, int n) {
  for (int q = 0; q < n && pf < end; q++, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
}

// Columns [j0, j0+nr) (nr ≤ 8) of C for the M rows of A, over all of k.
template <int M, class TB>
void columns8(const GemmTask& t, const TB* w, int64_t j0, int nr) {
  const int64_t k = t.k;
  const TB* rows[8];
  for (int j = 0; j < 8; j++) rows[j] = w + (j0 + std::min(j, nr - 1)) * t.ldb;  // a short block repeats its last row
  const __m256 va = _mm256_set1_ps(t.alpha);
  const char* pf = t.prefetch != nullptr ? *t.prefetch : nullptr;
  const char* const pf_end = t.prefetch_end;
  for (int64_t pc = 0; pc < k; pc += kSlice) {
    const int64_t kc = std::min(kSlice, k - pc);
    __m256 acc[M];
    for (int i = 0; i < M; i++) acc[i] = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
      if (pf != nullptr) fetch_lines(pf, pf_end, t.prefetch_per_step);
      __m256 col[8];
      for (int j = 0; j < 8; j++) col[j] = load8(rows[j] + pc + p);
      transpose8(col);
      for (int q = 0; q < 8; q++)
        for (int i = 0; i < M; i++)
          acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(t.a[i * t.lda + pc + p + q]), col[q], acc[i]);
    }
    for (; p < kc; p++) {
      if (pf != nullptr) fetch_lines(pf, pf_end, t.prefetch_per_step);
      const __m256 col = _mm256_setr_ps(widen(rows[0][pc + p]), widen(rows[1][pc + p]), widen(rows[2][pc + p]),
                                        widen(rows[3][pc + p]), widen(rows[4][pc + p]), widen(rows[5][pc + p]),
                                        widen(rows[6][pc + p]), widen(rows[7][pc + p]));
      for (int i = 0; i < M; i++) acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(t.a[i * t.lda + pc + p]), col, acc[i]);
    }
    const float beta = pc == 0 ? t.beta : 1.f;
#pragma GCC unroll 8
    for (int i = 0; i < M; i++) store8(acc[i], t.c + i * t.ldc + j0, nr, va, beta);
  }
  if (pf != nullptr) *t.prefetch = pf;
}

template <int M, class TB>
void columns(const GemmTask& t, int64_t j0, int64_t j1) {
  const TB* w = static_cast<const TB*>(t.b);
  for (int64_t j = j0; j < j1; j += 8) columns8<M, TB>(t, w, j, static_cast<int>(std::min<int64_t>(8, j1 - j)));
}

template <class TB>
void columns_m(const GemmTask& t, int64_t j0, int64_t j1) {
  switch (t.m) {
    case 1: return columns<1, TB>(t, j0, j1);
    case 2: return columns<2, TB>(t, j0, j1);
    case 3: return columns<3, TB>(t, j0, j1);
    case 4: return columns<4, TB>(t, j0, j1);
    case 5: return columns<5, TB>(t, j0, j1);
    case 6: return columns<6, TB>(t, j0, j1);
    case 7: return columns<7, TB>(t, j0, j1);
    default: return columns<8, TB>(t, j0, j1);
  }
}

}  // namespace

bool gemv_applies(const GemmBatch& g) {
  return g.batch == 1 && !g.transA && g.transB && g.m >= 1 && g.m <= kGemvMaxRows && g.k >= 1 &&
         (cpu_path() == CpuPath::Avx2 || cpu_path() == CpuPath::Avx512);
}

void gemv_run(const GemmBatch& g) {
  GemmTask t;
  t.transB = true;
  t.bBf16 = g.bBf16;
  t.m = g.m;
  t.n = g.n;
  t.k = g.k;
  t.a = g.a;
  t.lda = g.k;
  t.b = g.b;
  t.ldb = g.k;
  t.c = g.c;
  t.ldc = g.n;
  t.alpha = g.alpha;
  t.beta = g.beta;
  t.prefetch = g.prefetch;
  t.prefetch_end = g.prefetch_end;
  t.prefetch_per_step = g.prefetch_per_step;
  auto run = [&](int64_t j0, int64_t j1) {
    if (t.bBf16)
      columns_m<uint16_t>(t, j0, j1);
    else
      columns_m<float>(t, j0, j1);
  };
  const double bytes = static_cast<double>(g.n) * g.k * (g.bBf16 ? 2 : 4);
  const int64_t units = (g.n + kColUnit - 1) / kColUnit;
  const int64_t parts =
      std::min<int64_t>({static_cast<int64_t>(num_threads()), units,
                         std::max<int64_t>(1, static_cast<int64_t>(bytes / kMinBytesPerThread))});
  if (parts <= 1) {
    run(0, g.n);
    return;
  }
  t.prefetch = nullptr;  // one cursor cannot be shared by threads
  parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      const int64_t s = std::min(g.n, units * p / parts * kColUnit);
      const int64_t e = std::min(g.n, units * (p + 1) / parts * kColUnit);
      if (s < e) run(s, e);
    }
  });
}

}  // namespace lorakit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // not x86_64: the packed GEMM does everything

namespace lorakit {
bool gemv_applies(const GemmBatch&) { return false; }
void gemv_run(const GemmBatch&) {}
}  // namespace lorakit

#endif
