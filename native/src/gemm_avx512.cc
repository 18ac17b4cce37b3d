// AVX-512 (F/BW/VL/DQ + FMA) GEMM kernels. Compiled without -march: the target pragma
// below gives every function in this file the AVX-512 target, and gemm_core.cc calls in
// here only when cpu_path() == Avx512, so an older x86-64 never executes these.
#include "gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "avx512_defined.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
#endif

namespace lorakit {
namespace avx512 {
namespace {

#include "simd_v_avx512.inc.h"
using V = VecAvx512<true>;

#include "gemm_driver.inc.h"

inline __mmask16 mask_n(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const uint16_t* p, __mmask16 m) {
  __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(avx512_defined::slli_epi32<16>(avx512_defined::cvtepu16_epi32(h)));
}

inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = avx512_defined::unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = avx512_defined::unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int g = 0; g < 2; g++)
    for (int j = 0; j < 4; j++) {
      t[8 * g + j] = avx512_defined::shuffle_f32x4<0x88>(r[8 * g + j], r[8 * g + 4 + j]);
      t[8 * g + 4 + j] = avx512_defined::shuffle_f32x4<0xDD>(r[8 * g + j], r[8 * g + 4 + j]);
    }
  for (int j = 0; j < 8; j++) {
    r[j] = avx512_defined::shuffle_f32x4<0x88>(t[j], t[8 + j]);
    r[8 + j] = avx512_defined::shuffle_f32x4<0xDD>(t[j], t[8 + j]);
  }
}

// Packs op(B)[k0:k0+kc, j0:j0+nc] into NR-wide panels; Wᵀ-style (transB) sources go
// through 16×16 register transposes, bf16 sources are widened on the way.
template <int NR, class TB>
void pack_b_simd(const TB* b, int64_t ldb, bool transB, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                 float* bp) {
  constexpr int NV = NR / 16;
  for (int64_t jb = 0; jb < nc; jb += NR) {
    const int64_t nw = imin(NR, nc - jb);
    float* dst = bp + (jb / NR) * kc * NR;
    if (!transB) {
      __mmask16 mk[NV];
      for (int v = 0; v < NV; v++) mk[v] = mask_n(nw - v * 16);
      for (int64_t p = 0; p < kc; p++) {
        const TB* src = b + (k0 + p) * ldb + j0 + jb;
        for (int v = 0; v < NV; v++) _mm512_store_ps(dst + p * NR + v * 16, load16(src + v * 16, mk[v]));
      }
    } else {
      for (int v = 0; v < NV; v++) {
        const int64_t rv = imin(16, nw - v * 16);
        for (int64_t p0 = 0; p0 < kc; p0 += 16) {
          const int64_t kw = imin(16, kc - p0);
          const __mmask16 m = mask_n(kw);
          __m512 r[16];
          for (int q = 0; q < 16; q++)
            r[q] = q < rv ? load16(b + (j0 + jb + v * 16 + q) * ldb + k0 + p0, m) : _mm512_setzero_ps();
          transpose16(r);
          for (int64_t pp = 0; pp < kw; pp++) _mm512_store_ps(dst + (p0 + pp) * NR + v * 16, r[pp]);
        }
      }
    }
  }
}

// Packs rows [i0, i0+rows) of op(A) as MR-row panels; a transA source (k×m) is read one
// contiguous row segment per k.
template <int MR>
void pack_a_simd(const GemmTask& t, int64_t i0, int64_t rows, int64_t k0, int64_t kc, float* ap) {
  if (!t.transA) {
    pack_a_panels_generic<MR>(t.a, t.lda, false, i0, rows, k0, kc, ap);
    return;
  }
  constexpr int NV = (MR + 15) / 16;
  // A masked store is slow on AMD's cores (one per 6 floats cost Xᵀ·dY 2–4 % on Zen 5), so
  // panels the block holds whole (`plain` of them) go through plain stores: MR / 16 vectors,
  // then MR % 16 ≤ 8 floats as one 8-float store whose extra floats land on row p + 1 of the
  // same panel, which the next p overwrites (the last p, where that row is the next panel's,
  // stays masked).
  constexpr int kFull = MR / 16, kRest = MR % 16;
  static_assert(kRest <= 8, "the plain path stores the rest of a row as one 8-float vector");
  constexpr int kWidth = 16 * kFull + (kRest > 0 ? 8 : 0);
  const int64_t panels = (rows + MR - 1) / MR;
  const int64_t plain = rows >= kWidth ? (rows - kWidth) / MR + 1 : 0;
  for (int64_t p = 0; p < kc; p++) {
    const float* src = t.a + (k0 + p) * t.lda + i0;
    const int64_t q_plain = kWidth > MR && p + 1 == kc ? 0 : plain;
    for (int64_t q = 0; q < q_plain; q++) {
      float* d = ap + q * kc * MR + p * MR;
      const float* s = src + q * MR;
      for (int v = 0; v < kFull; v++) _mm512_storeu_ps(d + v * 16, _mm512_loadu_ps(s + v * 16));
      if (kRest > 0) _mm256_storeu_ps(d + kFull * 16, _mm256_loadu_ps(s + kFull * 16));
    }
    for (int64_t q = q_plain; q < panels; q++) {
      const int64_t mr = imin(MR, rows - q * MR);
      float* d = ap + q * kc * MR + p * MR;
      for (int v = 0; v < NV; v++) {
        const __m512 x = _mm512_maskz_loadu_ps(mask_n(mr - v * 16), src + q * MR + v * 16);
        _mm512_mask_storeu_ps(d + v * 16, mask_n(MR - v * 16), x);
      }
    }
  }
}

template <int NR>
void pack_b_any_simd(const GemmTask& t, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* bp) {
  if (t.bBf16)
    pack_b_simd<NR>(static_cast<const uint16_t*>(t.b), t.ldb, t.transB, k0, kc, j0, nc, bp);
  else
    pack_b_simd<NR>(static_cast<const float*>(t.b), t.ldb, t.transB, k0, kc, j0, nc, bp);
}

// Cache blocking of the 6×64 kernel: a KC×NC slice of B (512 KiB) stays in L2, an MC×KC
// block of packed A in L1/L2.
#ifndef LORAKIT_GEMM_KC
#define LORAKIT_GEMM_KC 256
#endif
#ifndef LORAKIT_GEMM_NC
#define LORAKIT_GEMM_NC 512
#endif
#ifndef LORAKIT_GEMM_MC
#define LORAKIT_GEMM_MC 96
#endif

#ifndef LORAKIT_BCAST_PF
#define LORAKIT_BCAST_PF 256
#endif
#ifndef LORAKIT_BCAST_R2
#define LORAKIT_BCAST_R2 8
#endif
#ifndef LORAKIT_BCAST_R3
#define LORAKIT_BCAST_R3 6
#endif
#ifndef LORAKIT_BCAST_R
#define LORAKIT_BCAST_R 8
#endif

// ---- narrow outputs (n ≤ 40: X·Aᵀ, G·B) with a row-major A: op(B) is packed k×NR once (NR = 16·NV,
// zero-padded) and each row of op(A) is broadcast one element at a time into NV
// accumulators per row: C[i][j0..j0+16] = Σ_p A[i,p]·Bp[p, j0..j0+16]. R rows share each
// packed B row load; every row keeps its own accumulators, so a row's result never depends
// on the other rows of its tile. k is summed in the packed kernels' KC slices (an FMA chain
// from zero over each, then store_tile's alpha/beta formula with beta 1 after the first), so
// every element gets the bits every other path gives it (the decode GEMV, the prepacked
// panels, a transposed A read in place, the AVX2 kernels), whichever path its batch takes.
template <int NV, int R>
void bcast_gemm(const GemmTask& t) {
  constexpr int NR = NV * 16;
  float* bp = gemm_scratch(2, static_cast<size_t>(t.k) * NR);
  pack_b_any_simd<NR>(t, 0, t.k, 0, t.n, bp);
  __mmask16 cm[NV];
  for (int v = 0; v < NV; v++) cm[v] = mask_n(t.n - v * 16);
  const __m512 va = _mm512_set1_ps(t.alpha);
  const int64_t k = t.k;
  for (int64_t i0 = 0; i0 < t.m; i0 += R) {
    const int ri = static_cast<int>(imin(R, t.m - i0));
    const float* ar[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) ar[i] = t.a + (i0 + (i < ri ? i : 0)) * t.lda;
    for (int64_t pc = 0; pc < k; pc += LORAKIT_GEMM_KC) {
      const int64_t pend = imin(pc + LORAKIT_GEMM_KC, k);
      const float beta = pc == 0 ? t.beta : 1.f;
      const __m512 vb = _mm512_set1_ps(beta);
      __m512 acc[R][NV];
#pragma GCC unroll 8
      for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
      int64_t p = pc;
      for (; p + 16 <= pend; p += 16) {
#pragma GCC unroll 8
        for (int i = 0; i < R; i++)
          _mm_prefetch(reinterpret_cast<const char*>(ar[i] + p + LORAKIT_BCAST_PF), _MM_HINT_T0);
#pragma GCC unroll 16
        for (int q = 0; q < 16; q++) {
          const float* brow = bp + (p + q) * NR;
          __m512 bv[NV];
#pragma GCC unroll 4
          for (int v = 0; v < NV; v++) bv[v] = _mm512_load_ps(brow + v * 16);
#pragma GCC unroll 8
          for (int i = 0; i < R; i++) {
            const __m512 x = _mm512_set1_ps(ar[i][p + q]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(x, bv[v], acc[i][v]);
          }
        }
      }
      for (; p < pend; p++) {
        const float* brow = bp + p * NR;
        __m512 bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) bv[v] = _mm512_load_ps(brow + v * 16);
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
          const __m512 x = _mm512_set1_ps(ar[i][p]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(x, bv[v], acc[i][v]);
        }
      }
      for (int i = 0; i < ri; i++) {
        float* cr = t.c + (i0 + i) * t.ldc;
        for (int v = 0; v < NV; v++) {
          __m512 y;
          if (beta == 0.f)
            y = _mm512_mul_ps(acc[i][v], va);
          else if (beta == 1.f)
            y = _mm512_fmadd_ps(acc[i][v], va, _mm512_maskz_loadu_ps(cm[v], cr + v * 16));
          else
            y = _mm512_fmadd_ps(acc[i][v], va, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(cm[v], cr + v * 16)));
          _mm512_mask_storeu_ps(cr + v * 16, cm[v], y);
        }
      }
    }
  }
}

// ---- one side of at most 16: C = alpha·op(A)·op(B) + beta·C where the long operand is
// read in place one k-row at a time (16 lanes along the output's long side) and the short
// one (≤ 16 wide, packed k×16, zero-padded) is broadcast. TSTORE: the long operand is a
// transposed A (k×m; Gᵀ·H), acc[j] holds C[i0..i0+16][j] and tiles are transposed on the
// way out; otherwise the long operand is a row-major op(B) (k×n; dHᵀ·X) and acc[i] holds
// C[i][j0..j0+16]. Nothing big is packed, and every element is computed exactly as the
// packed kernels compute it (an FMA chain from zero over each KC = 256 slice, then
// store_tile's alpha/beta formula), so choosing this path never changes a result.
constexpr int kSmallKC = 256;
static_assert(LORAKIT_GEMM_KC == kSmallKC, "the small-side kernel must slice k like the packed kernels");
#ifndef LORAKIT_SMALL_PF
#define LORAKIT_SMALL_PF 64
#endif

template <bool TSTORE>
void small_side_gemm(const GemmTask& t) {
  const int64_t M = TSTORE ? t.m : t.n;
  const float* big = TSTORE ? t.a : static_cast<const float*>(t.b);
  const int64_t ld = TSTORE ? t.lda : t.ldb;
  float* sp = gemm_scratch(2, static_cast<size_t>(kSmallKC) * 16);
  const __m512 va = _mm512_set1_ps(t.alpha);
  for (int64_t pc = 0; pc < t.k; pc += kSmallKC) {
    const int64_t kc = imin(kSmallKC, t.k - pc);
    const float beta = pc == 0 ? t.beta : 1.f;
    const __m512 vb = _mm512_set1_ps(beta);
    if (TSTORE)
      pack_b_any_simd<16>(t, pc, kc, 0, t.n, sp);
    else
      pack_a_simd<16>(t, 0, t.m, pc, kc, sp);
    for (int64_t i0 = 0; i0 < M; i0 += 16) {
      const __mmask16 mk = mask_n(M - i0);
      __m512 acc[16];
#pragma GCC unroll 16
      for (int s = 0; s < 16; s++) acc[s] = _mm512_setzero_ps();
      const float* g = big + pc * ld + i0;
      if (M - i0 >= 16) {
        for (int64_t p = 0; p < kc; p++) {
          const __m512 x = _mm512_loadu_ps(g + p * ld);
          _mm_prefetch(reinterpret_cast<const char*>(g + p * ld + LORAKIT_SMALL_PF), _MM_HINT_T0);
          const float* sr = sp + p * 16;
#pragma GCC unroll 16
          for (int s = 0; s < 16; s++) acc[s] = _mm512_fmadd_ps(_mm512_set1_ps(sr[s]), x, acc[s]);
        }
      } else {
        for (int64_t p = 0; p < kc; p++) {
          const __m512 x = _mm512_maskz_loadu_ps(mk, g + p * ld);
          const float* sr = sp + p * 16;
#pragma GCC unroll 16
          for (int s = 0; s < 16; s++) acc[s] = _mm512_fmadd_ps(_mm512_set1_ps(sr[s]), x, acc[s]);
        }
      }
      // Row r of the output tile: lanes along C's row, `rows` valid rows, mask `cm`.
      int rows;
      __mmask16 cm;
      float* c0;
      int64_t cstep;
      if (TSTORE) {
        transpose16(acc);
        rows = static_cast<int>(imin(16, M - i0));
        cm = mask_n(t.n);
        c0 = t.c + i0 * t.ldc;
      } else {
        rows = static_cast<int>(t.m);
        cm = mk;
        c0 = t.c + i0;
      }
      cstep = t.ldc;
      for (int r = 0; r < rows; r++) {
        float* cr = c0 + r * cstep;
        __m512 y;
        if (beta == 0.f)
          y = _mm512_mul_ps(acc[r], va);
        else if (beta == 1.f)
          y = _mm512_fmadd_ps(acc[r], va, _mm512_maskz_loadu_ps(cm, cr));
        else
          y = _mm512_fmadd_ps(acc[r], va, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(cm, cr)));
        _mm512_mask_storeu_ps(cr, cm, y);
      }
    }
  }
}

}  // namespace
}  // namespace avx512

void gemm_serial_avx512(const GemmTask& t) {
  using namespace avx512;
  if (t.m <= 0 || t.n <= 0) return;
  if (t.k <= 0 || t.alpha == 0.f) {
    scale_c(t);
    return;
  }
  // The path may depend on this block's shape (a thread's share of the rows or columns), but
  // every path sums each element in the same KC slices from zero, then the same alpha/beta
  // formula, so the choice never changes a bit.
  const int64_t nsel = t.n_full > 0 ? t.n_full : t.n;
  if (!t.transA && nsel <= 16 && t.k >= 32) {
    bcast_gemm<1, LORAKIT_BCAST_R>(t);
  } else if (!t.transA && nsel <= 32 && t.k >= 32) {
    bcast_gemm<2, LORAKIT_BCAST_R2>(t);
  } else if (!t.transA && nsel <= 40 && t.k >= 32) {
    bcast_gemm<3, LORAKIT_BCAST_R3>(t);
  } else if (t.transA && nsel > 8 && nsel <= 16 && t.m >= 32) {
    small_side_gemm<true>(t);
  } else if (t.m > 8 && t.m <= 16 && !t.transB && !t.bBf16 && t.n >= 64) {
    small_side_gemm<false>(t);
  } else if (t.n <= 16) {
    packed_gemm<V, 24, 1, 256, 2048, 96, false>(t, pack_b_any_simd<16>, pack_a_simd<24>);
  } else {
    packed_gemm<V, 6, 4, LORAKIT_GEMM_KC, LORAKIT_GEMM_NC, LORAKIT_GEMM_MC, true>(t, pack_b_any_simd<64>, pack_a_simd<6>);
  }
}

double fma_chains_avx512(int64_t iters) {
  constexpr int NC = 16;
  __m512 acc[NC];
  for (int q = 0; q < NC; q++) acc[q] = _mm512_set1_ps(0.001f * q);
  const __m512 x = _mm512_set1_ps(0.9999999f), y = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 16
    for (int q = 0; q < NC; q++) acc[q] = _mm512_fmadd_ps(acc[q], x, y);
  }
  __m512 s = acc[0];
  for (int q = 1; q < NC; q++) s = _mm512_add_ps(s, acc[q]);
  volatile float sink = avx512_defined::reduce_add_ps(s);
  (void)sink;
  return static_cast<double>(iters) * NC * 16 * 2;
}

}  // namespace lorakit

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
