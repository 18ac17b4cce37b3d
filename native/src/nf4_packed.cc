// Prepacked NF4 weights: a frozen bitsandbytes NF4 weight W [out, in] rearranged once into
// 16-column panels that decode streams front to back, with the absmax of every block already
// expanded to f32 (double quantisation decoded at pack time: the same f32 values nf4Scales
// gives, so nothing is rounded differently). The codes are the checkpoint's own nibbles, only
// reordered, so unpacking gives back the bitsandbytes bytes exactly.
//
// Layout (requires in % 8 == 0 and in % blocksize == 0, blocksize a power of two ≥ 8):
//   codes   panel p (columns 16p..16p+15) is 8·in bytes; the codes of k..k+3 (k a multiple of
//           4) for its 16 columns are the 32 bytes at 8·k, in the order two 256-bit vpshufb
//           lookups want them (see code_place): the low nibbles of the 32 bytes are the
//           indices of k and k+1, the high nibbles those of k+2 and k+3. Columns past `out`
//           hold code 0 (with scale 0).
//   scales  panel p, block slot b (k = b·blocksize..): 16 f32, absmax[(j·in)/blocksize + b].
// Dequantising is four byte-table lookups (vpshufb: one table per byte of the f32 map value)
// and two rounds of unpacking, which leave the weights of columns 0–7 and 8–15 at k and k+1
// in four vectors: no lane-crossing permute (vpermps is several times slower on the AMD
// cores this was measured on). On AVX-512 the decode kernel reads the same layout with one
// 16-lane vpermps of the map per panel row instead (fast on Zen 5; nf4_decode_avx512.inc.h),
// its indices made by a mask, a dword permute and zero-extensions, or where the CPU has VBMI
// by one byte permute per k and a shift (avx512_vbmi: 1.5× the kernel alone with the weights
// in L2 at one row, 2× at two). Both fetch the next panels' codes and scales ahead: from
// memory the VBMI kernel with it read 1.45–1.66× the codes per second of the kernel before at
// 1–4 rows, 1.17× at 8 (bench/nf4-kernel --against); the other one 1.01–1.28×.
//
// Exports:
//   nf4PackedLayout() → { panel: 16 } on AVX2/AVX-512 CPUs, else null
//   nf4Pack(packed u8, scales f32, blocksize, out, in, codes u8, pscales f32)
//   nf4Unpack(codes u8, out, in, packed u8)                  the bitsandbytes bytes back
//   nf4GemmPacked(backward, rows, in, out, a, codes, pscales, blocksize, qmap, c, beta)
//     as nf4Gemm (forward c = a·Wᵀ, backward c = a·W; beta 1 accumulates). ≤ 8 forward rows
//     take the decode kernel (codes dequantised in registers, split by output columns over
//     the pool); more rows dequantise one 256×16 slice of a panel at a time (vectorised) into
//     the panel GEMM's micro kernel (on AVX-512: four panels' slices at a time into a 6×64
//     tile of 16-lane FMAs, forward and backward, the backward's slices dequantised 16×16
//     blocks at a time and transposed; avx512::gemm_panels_wide). Every element is computed as nf4Gemm computes it (per
//     256-deep slice acc = fma(qmap[code]·absmax, a, acc) in order of k, then c = acc or
//     c + acc), so the bits do not depend on the layout, the row count or the thread count.
#include "nf4_packed.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"

namespace lorakit {
namespace {

constexpr int64_t kPanel = 16;

// One packed weight as the kernels read it.
struct PackedNf4 {
  int64_t out = 0, in = 0, blocksize = 64;
  int shift = 6;  // log2(blocksize)
  const uint8_t* codes = nullptr;
  const float* scales = nullptr;
  const float* qmap = nullptr;
  int64_t slots() const { return in / blocksize; }
  int64_t panels() const { return (out + kPanel - 1) / kPanel; }
  // The codes of panel q (8·in bytes) and its scales (slots · 16).
  const uint8_t* panel_codes(int64_t q) const { return codes + q * 8 * in; }
  const float* panel_scales(int64_t q) const { return scales + q * slots() * kPanel; }
};

struct Problem {
  PackedNf4 w;
  bool backward = false;
  int64_t rows = 0;
  const float* a = nullptr;
  float* c = nullptr;
  bool accumulate = false;  // beta != 0
};

// Where the code of column jj (0..15) at k sits within its panel: byte offset and whether it
// is the high nibble. One index vector (32 nibbles) covers k and k+1 (k even): its byte
// position pos (0..15) of half h holds, by pos/4, 0: column 4h + pos%4 at k, 1: column
// 8 + 4h + pos%4 at k, 2 and 3: the same at k+1 — the order the byte-plane unpacking leaves
// them in. k..k+3 share 32 bytes: k, k+1 in the low nibbles, k+2, k+3 in the high ones.
struct Place {
  int64_t byte;
  bool high;
};
inline Place code_place(int64_t jj, int64_t k) {
  const int64_t h = (jj % 8) / 4;
  const int64_t pos = (k % 2) * 8 + (jj / 8) * 4 + jj % 4;
  return {(k / 4) * 32 + h * 16 + pos, (k % 4) >= 2};
}
inline int nibble(const uint8_t* b, Place pl) { return pl.high ? b[pl.byte] >> 4 : b[pl.byte] & 15; }
inline void set_nibble(uint8_t* b, Place pl, int code) {
  b[pl.byte] = static_cast<uint8_t>(pl.high ? (b[pl.byte] & 0x0f) | (code << 4) : (b[pl.byte] & 0xf0) | code);
}
// The bitsandbytes code of flat element i (the first of each byte in the high nibble).
inline int bnb_code(const uint8_t* packed, int64_t i) { return (i & 1) ? packed[i >> 1] & 15 : packed[i >> 1] >> 4; }
inline void set_bnb_code(uint8_t* packed, int64_t i, int code) {
  uint8_t& b = packed[i >> 1];
  b = static_cast<uint8_t>((i & 1) ? (b & 0xf0) | code : (b & 0x0f) | (code << 4));
}

bool packable(int64_t in, int64_t bs) {
  return bs >= 8 && (bs & (bs - 1)) == 0 && in % 8 == 0 && in % bs == 0;
}

#if defined(__x86_64__)  // only the x86 kernels below widen a panel into it
float* scratch(size_t count) {
  thread_local float* buf = nullptr;
  thread_local size_t cap = 0;
  if (cap < count) {
    std::free(buf);
    buf = static_cast<float*>(std::aligned_alloc(64, ((count * sizeof(float) + 63) / 64) * 64));
    cap = count;
  }
  return buf;
}
#endif

// Panels [p0, p1) of the bitsandbytes bytes into the packed layout (PACK) or back.
template <bool PACK>
void convert(uint8_t* bnb, const float* absmax, uint8_t* codes, float* pscales, int64_t out, int64_t in, int64_t bs,
             int64_t p0, int64_t p1) {
  const int64_t slots = in / bs;
  for (int64_t p = p0; p < p1; p++) {
    uint8_t* panel = codes + p * 8 * in;
    if (PACK) std::memset(panel, 0, static_cast<size_t>(8 * in));
    for (int64_t jj = 0; jj < kPanel; jj++) {
      const int64_t j = p * kPanel + jj;
      if (j >= out) break;
      for (int64_t k = 0; k < in; k++) {
        if (PACK)
          set_nibble(panel, code_place(jj, k), bnb_code(bnb, j * in + k));
        else
          set_bnb_code(bnb, j * in + k, nibble(panel, code_place(jj, k)));
      }
    }
    if (PACK)
      for (int64_t b = 0; b < slots; b++)
        for (int64_t jj = 0; jj < kPanel; jj++) {
          const int64_t j = p * kPanel + jj;
          pscales[(p * slots + b) * kPanel + jj] = j < out ? absmax[j * in / bs + b] : 0.f;
        }
  }
}

#if defined(__x86_64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace avx2 {
#define NF4_VW 8
#include "nf4_micro.inc.h"
#include "simd_v_avx2.inc.h"
#undef NF4_VW
static_assert(NR == kPanel, "the micro kernel's panel is the packed panel");

// The map as four byte tables (byte t of every f32 value), repeated in both 128-bit halves.
struct Tables {
  __m256i t[4];
  explicit Tables(const float* qmap) {
    alignas(32) uint8_t b[4][32];
    for (int c = 0; c < 16; c++) {
      uint32_t u;
      std::memcpy(&u, qmap + c, 4);
      for (int i = 0; i < 4; i++) b[i][c] = b[i][c + 16] = static_cast<uint8_t>(u >> (8 * i));
    }
    for (int i = 0; i < 4; i++) t[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b[i]));
  }
};

// The two index vectors of k..k+3 from the 32 bytes at src: [0] for k, k+1; [1] for k+2, k+3.
static inline void indices(const uint8_t* src, __m256i (&idx)[2]) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
  const __m256i low4 = _mm256_set1_epi8(15);
  idx[0] = _mm256_and_si256(raw, low4);
  idx[1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
}

// qmap[code] of one index vector (k and k+1 of a panel's 16 columns): r[0] = columns 0–7 at
// k, r[1] = columns 8–15 at k, r[2], r[3] the same at k+1.
static inline void lookup(__m256i idx, const Tables& tb, __m256 (&r)[4]) {
  const __m256i b0 = _mm256_shuffle_epi8(tb.t[0], idx), b1 = _mm256_shuffle_epi8(tb.t[1], idx);
  const __m256i b2 = _mm256_shuffle_epi8(tb.t[2], idx), b3 = _mm256_shuffle_epi8(tb.t[3], idx);
  const __m256i l01 = _mm256_unpacklo_epi8(b0, b1), h01 = _mm256_unpackhi_epi8(b0, b1);
  const __m256i l23 = _mm256_unpacklo_epi8(b2, b3), h23 = _mm256_unpackhi_epi8(b2, b3);
  r[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(l01, l23));
  r[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(l01, l23));
  r[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(h01, h23));
  r[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(h01, h23));
}

// Decode: panel q for the M rows of a (forward only). Per 256-deep slice acc = fma(w, a, acc)
// in order of k for each column, as the micro kernel. (Interleaving two panels for one row,
// for more independent FMA chains, measured no faster: the lookups' shuffles bound it, not
// the chains' latency.)
template <int M>
static void decode_panel(const Problem& p, int64_t q) {
  const PackedNf4& w = p.w;
  const int64_t C = w.in;
  const int shift = w.shift;
  const Tables tb(w.qmap);
  const uint8_t* cp = w.panel_codes(q);
  const float* sp = w.panel_scales(q);
  for (int64_t k0 = 0; k0 < C; k0 += KC) {
    const int64_t k1 = C - k0 < KC ? C : k0 + KC;
    __m256 acc[M][2];
    for (int i = 0; i < M; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t k = k0; k < k1; k += 4) {
      const int64_t so = (k >> shift) * kPanel;
      __m256i idx[2];
      indices(cp + 8 * k, idx);
      const __m256 s0 = _mm256_loadu_ps(sp + so), s1 = _mm256_loadu_ps(sp + so + 8);
      for (int half = 0; half < 2; half++) {
        __m256 r[4];
        lookup(idx[half], tb, r);
        const __m256 w0 = _mm256_mul_ps(r[0], s0), w1 = _mm256_mul_ps(r[1], s1);
        const __m256 w2 = _mm256_mul_ps(r[2], s0), w3 = _mm256_mul_ps(r[3], s1);
        const int64_t kk = k + 2 * half;
        for (int i = 0; i < M; i++) {
          const __m256 x0 = _mm256_broadcast_ss(p.a + i * C + kk), x1 = _mm256_broadcast_ss(p.a + i * C + kk + 1);
          acc[i][0] = _mm256_fmadd_ps(w0, x0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(w1, x0, acc[i][1]);
          acc[i][0] = _mm256_fmadd_ps(w2, x1, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(w3, x1, acc[i][1]);
        }
      }
    }
    // c = acc, or c + acc (store8 with alpha 1: acc·1 and fma(acc, 1, c) round as those do).
    const float beta = k0 > 0 || p.accumulate ? 1.f : 0.f;
    const __m256 one = _mm256_set1_ps(1.f);
    // Every accumulator by a constant index: with a loop that skipped a half by `continue`,
    // GCC kept acc addressable and stored it to the stack inside the k loop.
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
      const int64_t j0 = q * kPanel + 8 * h;
      const int64_t nb = w.out - j0 < 8 ? w.out - j0 : 8;
#pragma GCC unroll 8
      for (int i = 0; i < M; i++)
        if (nb > 0) store8(acc[i][h], p.c + i * w.out + j0, nb, one, beta);
    }
  }
}

template <int M>
static void decode_range(const Problem& p, int64_t q0, int64_t q1) {
  for (int64_t q = q0; q < q1; q++) decode_panel<M>(p, q);
}

#include "nf4_decode_rows.inc.h"

// Forward: bp[kk·16 + j] = W[16q + j, k0 + kk] for the slice [k0, k0+kc) of panel q.
static void dequant_forward(const PackedNf4& w, const Tables& tb, int64_t q, int64_t k0, int64_t kc, float* bp) {
  const uint8_t* cp = w.panel_codes(q);
  const float* sp = w.panel_scales(q);
  for (int64_t k = k0; k < k0 + kc; k += 4) {
    const float* s = sp + (k >> w.shift) * kPanel;
    const __m256 s0 = _mm256_loadu_ps(s), s1 = _mm256_loadu_ps(s + 8);
    __m256i idx[2];
    indices(cp + 8 * k, idx);
    for (int half = 0; half < 2; half++) {
      __m256 r[4];
      lookup(idx[half], tb, r);
      float* d = bp + (k + 2 * half - k0) * NR;
      _mm256_storeu_ps(d, _mm256_mul_ps(r[0], s0));
      _mm256_storeu_ps(d + 8, _mm256_mul_ps(r[1], s1));
      _mm256_storeu_ps(d + NR, _mm256_mul_ps(r[2], s0));
      _mm256_storeu_ps(d + NR + 8, _mm256_mul_ps(r[3], s1));
    }
  }
}

// Backward (a·W): bp[kk·16 + j] = W[k0 + kk, j0 + j] for j < nb, zero beyond (element by
// element, as nf4Gemm's backward packing).
static void dequant_backward(const PackedNf4& w, int64_t k0, int64_t kc, int64_t j0, int nb, float* bp) {
  for (int64_t kk = 0; kk < kc; kk++) {
    const int64_t o = k0 + kk;  // a row of W: column o%16 of panel o/16
    const uint8_t* cp = w.panel_codes(o / kPanel);
    const float* sp = w.panel_scales(o / kPanel) + o % kPanel;
    float* dst = bp + kk * NR;
    for (int j = 0; j < nb; j++) {
      const int64_t i = j0 + j;
      dst[j] = w.qmap[nibble(cp, code_place(o % kPanel, i))] * sp[(i >> w.shift) * kPanel];
    }
    for (int j = nb; j < NR; j++) dst[j] = 0.f;
  }
}

// Panels [q0, q1) of output columns (16 each) through the micro kernel, as nf4_gemm_kernel's
// run_panels: each 256-deep slice of the panel dequantised once, then every row of a through it.
static void gemm_panels(const Problem& p, int64_t q0, int64_t q1) {
  const PackedNf4& w = p.w;
  const bool fwd = !p.backward;
  const int64_t K = fwd ? w.in : w.out;
  const int64_t Ncols = fwd ? w.out : w.in;
  const int64_t lda = K, ldc = Ncols;
  float* bp = scratch(static_cast<size_t>(KC) * NR);
  const Tables tb(w.qmap);
  for (int64_t q = q0; q < q1; q++) {
    const int64_t j0 = q * NR;
    const int nb = static_cast<int>(Ncols - j0 < NR ? Ncols - j0 : NR);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int kc = static_cast<int>(K - k0 < KC ? K - k0 : KC);
      if (fwd)
        dequant_forward(w, tb, q, k0, kc, bp);
      else
        dequant_backward(w, k0, kc, j0, nb, bp);
      const bool acc = k0 > 0 || p.accumulate;
      const float* a = p.a + k0;
      float* c = p.c + j0;
      int64_t n = 0;
      for (; n + MR <= p.rows; n += MR) micro<MR>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc);
      switch (p.rows - n) {
        case 5: micro<5>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc); break;
        case 4: micro<4>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc); break;
        case 3: micro<3>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc); break;
        case 2: micro<2>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc); break;
        case 1: micro<1>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc); break;
        default: break;
      }
    }
  }
}
}  // namespace avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#if defined(__x86_64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
#endif
namespace avx512 {
// Decode on AVX-512: a panel's 16 columns at one k are one register, dequantised by one
// permute of the 16-entry map (vpermps, a single instruction per 16 weights on the Zen 5
// this was measured on) instead of AVX2's four byte-table lookups and four unpacks per two k.
// The index bytes of k, k+1 come as the layout stores them (32-bit groups: columns 0–3 at k,
// 8–11 at k, 0–3 at k+1, 8–11 at k+1 in the low 16 bytes, columns 4–7 and 12–15 likewise in
// the high ones); one dword permute puts k's 16 in column order in the low 128 bits and
// k+1's in the high. Per element the arithmetic is AVX2's: w = map[code]·absmax, then
// acc = fma(w, a, acc) in order of k over each 256-deep slice, then c = acc or c + acc.
constexpr int KC = avx2::KC;  // the panel GEMM's slice depth

// The codes of k..k+3 as the layout stores them: a mask and a shift split the low nibbles
// (k, k+1) from the high ones (k+2, k+3), a dword permute puts k's 16 in column order in the
// low 128 bits and k+1's in the high, and two zero-extensions widen them to dword lanes.
struct Codes {
  __m256i order, low4;
  // Written out: an implicit constructor would not get this region's target.
  Codes() : order(_mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)), low4(_mm256_set1_epi8(15)) {}
  void indices(const uint8_t* src, __m512i (&idx)[4]) const {
    constexpr __mmask16 kAll = 0xFFFF;
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
    const __m256i nib[2] = {_mm256_and_si256(raw, low4), _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4)};
    for (int half = 0; half < 2; half++) {
      const __m256i ord = _mm256_permutevar8x32_epi32(nib[half], order);
      idx[2 * half] = _mm512_maskz_cvtepu8_epi32(kAll, _mm256_castsi256_si128(ord));
      idx[2 * half + 1] = _mm512_maskz_cvtepu8_epi32(kAll, _mm256_extracti128_si256(ord, 1));
    }
  }
};
// With one row, one panel's chain of multiply-adds bounds the loop by the FMA latency, and 4
// panels give 4 independent chains (one row 1.13 → 1.19–1.23× AVX2's kernel; two rows ran
// slower interleaved, 0.96×, than one panel at a time, 1.09×).
constexpr int decode_group(int m) { return m == 1 ? 4 : 1; }
#include "nf4_decode_avx512.inc.h"

// The panel GEMM (more than 8 rows, forward and backward) on AVX-512: four adjacent panels'
// 256-deep slices dequantised one after another (64 columns) and M rows of a through them
// with a 6×64 tile of 16-lane FMAs, where the AVX2 micro kernel's 6×16 tile runs at half
// this width. Per element the arithmetic is the AVX2 kernel's: acc =
// fma(w, a, acc) in order of k from zero per slice, then c = acc or c + acc.
template <int M>
static void micro64(const float* a, int64_t lda, const float* bp, int64_t kc, float* c, int64_t ldc, int nb,
                    bool add) {
  __m512 acc[M][4];
  for (int i = 0; i < M; i++)
    for (int g = 0; g < 4; g++) acc[i][g] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    __m512 wv[4];
    for (int g = 0; g < 4; g++) wv[g] = _mm512_loadu_ps(bp + g * kc * kPanel + k * kPanel);
#pragma GCC unroll 6
    for (int i = 0; i < M; i++) {
      const __m512 x = _mm512_set1_ps(a[i * lda + k]);
      for (int g = 0; g < 4; g++) acc[i][g] = _mm512_fmadd_ps(wv[g], x, acc[i][g]);
    }
  }
  for (int g = 0; g < 4; g++) {
    const int v = nb - 16 * g;
    if (v <= 0) break;
    const __mmask16 cm = static_cast<__mmask16>(v >= 16 ? 0xFFFF : (1u << v) - 1u);
    for (int i = 0; i < M; i++) {
      float* ci = c + i * ldc + 16 * g;
      const __m512 y = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(cm, ci), acc[i][g]) : acc[i][g];
      _mm512_mask_storeu_ps(ci, cm, y);
    }
  }
}

// Backward (a·W) packing of one 16-column panel (inputs j0..j0+15, all of them inside `in`)
// for outputs [k0, k0+kc) into bp[kk·16 + j] = W[k0 + kk, j0 + j]: each 16 outputs × 16
// inputs block dequantised by the forward path (inputs as its k), then transposed; the same
// values as dequant_backward's element-by-element lookups, at a fraction of the cost.
static void dequant_backward16(const PackedNf4& w, const avx2::Tables& tb, int64_t k0, int64_t kc, int64_t j0,
                               float* bp, float* tmp) {
  for (int64_t o0 = k0; o0 < k0 + kc; o0 += kPanel) {
    avx2::dequant_forward(w, tb, o0 / kPanel, j0, kPanel, tmp);  // tmp[i·16 + jj] = W[o0 + jj, j0 + i]
    const int64_t rows = k0 + kc - o0 < kPanel ? k0 + kc - o0 : kPanel;
    for (int64_t jj = 0; jj < rows; jj++)
      for (int64_t i = 0; i < kPanel; i++) bp[(o0 - k0 + jj) * kPanel + i] = tmp[i * kPanel + jj];
  }
}

// Slice [k0, k0+kc) of four adjacent panels from q, dequantised into bp one panel after
// another (kc·16 values each): forward panels are 16 output columns, backward ones 16 input
// columns (the reduction over outputs; a panel ending past `in` element by element).
static void dequant_four(const PackedNf4& w, const avx2::Tables& tb, bool backward, int64_t q, int64_t k0,
                         int64_t kc, float* bp, float* tmp) {
  for (int g = 0; g < 4; g++) {
    float* dst = bp + g * kc * kPanel;
    if (!backward) {
      avx2::dequant_forward(w, tb, q + g, k0, kc, dst);
      continue;
    }
    const int64_t jg = (q + g) * kPanel;
    const int valid = static_cast<int>(w.in - jg < kPanel ? w.in - jg : kPanel);
    if (valid == kPanel)
      dequant_backward16(w, tb, k0, kc, jg, dst, tmp);
    else
      avx2::dequant_backward(w, k0, kc, jg, valid > 0 ? valid : 0, dst);
  }
}

// Panels [q0, q1): groups of four through micro64, the rest through the AVX2 kernel.
static void gemm_panels_wide(const Problem& p, int64_t q0, int64_t q1) {
  const PackedNf4& w = p.w;
  const int64_t K = p.backward ? w.out : w.in, Ncols = p.backward ? w.in : w.out, lda = K, ldc = Ncols;
  float* bp = scratch(static_cast<size_t>(KC) * kPanel * 4 + kPanel * kPanel);
  float* tmp = bp + KC * kPanel * 4;
  const avx2::Tables tb(w.qmap);
  int64_t q = q0;
  for (; q + 4 <= q1; q += 4) {
    const int64_t j0 = q * kPanel;
    const int nb = static_cast<int>(Ncols - j0 < 64 ? Ncols - j0 : 64);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int64_t kc = K - k0 < KC ? K - k0 : KC;
      dequant_four(w, tb, p.backward, q, k0, kc, bp, tmp);
      const bool add = k0 > 0 || p.accumulate;
      const float* a = p.a + k0;
      float* c = p.c + j0;
      int64_t n = 0;
      for (; n + 6 <= p.rows; n += 6) micro64<6>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, add);
      switch (p.rows - n) {
        case 5: micro64<5>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, add); break;
        case 4: micro64<4>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, add); break;
        case 3: micro64<3>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, add); break;
        case 2: micro64<2>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, add); break;
        case 1: micro64<1>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, add); break;
        default: break;
      }
    }
  }
  if (q < q1) avx2::gemm_panels(p, q, q1);
}

}  // namespace avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

// Decode on AVX-512 hosts with VBMI (Zen 4/5, Ice Lake and later): the codes of k and k+1 go
// to their dword lanes, in column order, with one byte permute each (vpermb) straight from
// the 32 stored bytes, and vpermps reads only the low 4 bits of each lane's index, so the low
// nibble (k, k+1) needs no masking and the high one (k+2, k+3) only a 4-bit shift: per 64
// weights 2 permutes and 2 shifts where avx512::decode_panels spends 3 masks and shifts, 2
// dword permutes, an extract and 4 zero-extensions. The arithmetic per element, and its
// order, is avx512::decode_panels' (w = map[code]·absmax, acc = fma(w, a, acc) in order of k).
#if defined(__x86_64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx2,fma")
#endif
namespace avx512_vbmi {

constexpr int KC = avx2::KC;  // the panel GEMM's slice depth

// The byte permute that puts the code byte of column jj at k + k1 (k a multiple of 4, k1 0 or
// 1: code_place) into every byte of dword lane jj.
static inline __m512i code_byte_index(int64_t k1) {
  alignas(64) uint8_t t[64];
  for (int64_t jj = 0; jj < kPanel; jj++)
    for (int b = 0; b < 4; b++) t[4 * jj + b] = static_cast<uint8_t>(code_place(jj, k1).byte);
  return _mm512_load_si512(t);
}

struct Codes {
  __m512i at_k, at_k1;
  Codes() : at_k(code_byte_index(0)), at_k1(code_byte_index(1)) {}  // written out, as avx512::Codes'
  void indices(const uint8_t* src, __m512i (&idx)[4]) const {
    constexpr __mmask16 kAll = 0xFFFF;
    constexpr __mmask64 kAllBytes = ~__mmask64{0};
    // The upper 256 bits are never indexed (a masked load measured 0.5–0.8× on Zen 5).
    const __m512i raw = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
    idx[0] = _mm512_maskz_permutexvar_epi8(kAllBytes, at_k, raw);
    idx[1] = _mm512_maskz_permutexvar_epi8(kAllBytes, at_k1, raw);
    idx[2] = _mm512_maskz_srli_epi32(kAll, idx[0], 4);
    idx[3] = _mm512_maskz_srli_epi32(kAll, idx[1], 4);
  }
};
// The cheaper dequantisation leaves more rows chain-bound: 2–4 rows over 4 panels ran
// 1.4–2.0× one panel at a time with the weights in L2, 5 rows over 2 panels 1.17×; 6–8 rows
// are bound by their multiply-adds and ran slower over 2 panels (0.83–0.98×).
constexpr int decode_group(int m) { return m <= 4 ? 4 : m == 5 ? 2 : 1; }
#include "nf4_decode_avx512.inc.h"
}  // namespace avx512_vbmi
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

bool packed_supported() {
#if defined(__x86_64__)
  return cpu_path() == CpuPath::Avx2 || cpu_path() == CpuPath::Avx512;
#else
  return false;
#endif
}

void run(const Problem& p) {
#if defined(__x86_64__)
  const PackedNf4& w = p.w;
  if (!p.backward && p.rows <= 8) {
    const bool wide = cpu_path() == CpuPath::Avx512;
    const bool vbmi = cpu_vbmi();
    parallel_for(w.panels(), 1, [&](int64_t b, int64_t e) {
      if (vbmi)
        avx512_vbmi::decode(p, b, e);
      else if (wide)
        avx512::decode(p, b, e);
      else
        avx2::decode(p, b, e);
    });
    return;
  }
  const int64_t ncols = p.backward ? w.in : w.out;
  const int64_t panels = (ncols + kPanel - 1) / kPanel;
  const bool wide = cpu_path() == CpuPath::Avx512;
  // Thread ranges in whole groups of four panels where the wide kernel runs them.
  const int64_t unit = wide ? 4 : 1;
  parallel_for((panels + unit - 1) / unit, 1, [&](int64_t b, int64_t e) {
    const int64_t q0 = b * unit, q1 = e * unit < panels ? e * unit : panels;
    if (wide)
      avx512::gemm_panels_wide(p, q0, q1);
    else
      avx2::gemm_panels(p, q0, q1);
  });
#else
  (void)p;
#endif
}

int64_t code_bytes(int64_t out, int64_t in) { return (out + kPanel - 1) / kPanel * kPanel * in / 2; }
int64_t scale_count(int64_t out, int64_t in, int64_t bs) { return (out + kPanel - 1) / kPanel * kPanel * (in / bs); }

// Checks the shape and the packed buffers' lengths (the codes and scales of an out×in weight).
bool check_packed(Napi::Env env, const char* fn, int64_t out, int64_t in, int64_t bs, int64_t lcodes, int64_t lscales,
                  bool need_scales) {
  if (!packable(in, bs))
    return fail(env, std::string(fn) + ": in-features must be a multiple of 8 and of the block size (a power of two ≥ 8)",
                true);
  if (lcodes < code_bytes(out, in) || (need_scales && lscales < scale_count(out, in, bs)))
    return fail(env, std::string(fn) + ": a packed buffer is too short for the sizes given", true);
  return true;
}

Napi::Value Nf4PackedLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!packed_supported()) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("panel", Napi::Number::New(env, static_cast<double>(kPanel)));
  return o;
}

Napi::Value Nf4Pack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "nf4Pack";
  if (info.Length() < 7) return fail(env, "nf4Pack: expected 7 arguments"), env.Undefined();
  uint8_t *bnb, *codes;
  float *absmax, *pscales;
  int64_t lb, la, lc, lsc, bs, out, in;
  if (!get_arr(info, 0, napi_uint8_array, fn, "packed", bnb, lb) ||
      !get_arr(info, 1, napi_float32_array, fn, "scales", absmax, la) || !get_int(info, 2, fn, "blocksize", bs) ||
      !get_int(info, 3, fn, "out", out) || !get_int(info, 4, fn, "in", in) ||
      !get_arr(info, 5, napi_uint8_array, fn, "codes", codes, lc) ||
      !get_arr(info, 6, napi_float32_array, fn, "pscales", pscales, lsc) ||
      !check_packed(env, fn, out, in, bs, lc, lsc, true))
    return env.Undefined();
  if (lb * 2 < out * in || la < out * in / bs)
    return fail(env, "nf4Pack: the NF4 weight is too short for the sizes given", true), env.Undefined();
  const int64_t panels = (out + kPanel - 1) / kPanel;
  parallel_for(panels, 4, [&](int64_t b, int64_t e) { convert<true>(bnb, absmax, codes, pscales, out, in, bs, b, e); });
  return env.Undefined();
}

Napi::Value Nf4Unpack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "nf4Unpack";
  if (info.Length() < 4) return fail(env, "nf4Unpack: expected 4 arguments"), env.Undefined();
  uint8_t *codes, *bnb;
  int64_t lc, lb, out, in;
  if (!get_arr(info, 0, napi_uint8_array, fn, "codes", codes, lc) || !get_int(info, 1, fn, "out", out) ||
      !get_int(info, 2, fn, "in", in) || !get_arr(info, 3, napi_uint8_array, fn, "packed", bnb, lb) ||
      !check_packed(env, fn, out, in, 8, lc, 0, false))
    return env.Undefined();
  if (lb * 2 < out * in)
    return fail(env, "nf4Unpack: the output is too short for the sizes given", true), env.Undefined();
  const int64_t panels = (out + kPanel - 1) / kPanel;
  parallel_for(panels, 4, [&](int64_t b, int64_t e) { convert<false>(bnb, nullptr, codes, nullptr, out, in, 8, b, e); });
  return env.Undefined();
}

Napi::Value Nf4GemmPacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "nf4GemmPacked";
  if (info.Length() < 11) return fail(env, "nf4GemmPacked: expected 11 arguments"), env.Undefined();
  if (!packed_supported())
    return fail(env, "nf4GemmPacked: this CPU has no packed NF4 kernels (nf4PackedLayout() is null)"), env.Undefined();
  Problem p;
  p.backward = info[0].ToBoolean().Value();
  PackedNf4& w = p.w;
  const float* a;
  float* c;
  const uint8_t* codes;
  const float *pscales, *qmap;
  int64_t la, lcodes, lsc, lq, lc;
  if (!get_int(info, 1, fn, "rows", p.rows) || !get_int(info, 2, fn, "in", w.in) ||
      !get_int(info, 3, fn, "out", w.out) || !get_arr(info, 4, napi_float32_array, fn, "a", a, la) ||
      !get_arr(info, 5, napi_uint8_array, fn, "codes", codes, lcodes) ||
      !get_arr(info, 6, napi_float32_array, fn, "pscales", pscales, lsc) ||
      !get_int(info, 7, fn, "blocksize", w.blocksize) || !get_arr(info, 8, napi_float32_array, fn, "qmap", qmap, lq) ||
      !get_arr(info, 9, napi_float32_array, fn, "c", c, lc) || !info[10].IsNumber() ||
      !check_packed(env, fn, w.out, w.in, w.blocksize, lcodes, lsc, true))
    return env.Undefined();
  const int64_t K = p.backward ? w.out : w.in;
  const int64_t N = p.backward ? w.in : w.out;
  if (lq < 16 || la < p.rows * K || lc < p.rows * N)
    return fail(env, "nf4GemmPacked: a buffer is too short for the sizes given", true), env.Undefined();
  w.codes = codes;
  w.scales = pscales;
  w.qmap = qmap;
  w.shift = __builtin_ctzll(static_cast<unsigned long long>(w.blocksize));
  p.a = a;
  p.c = c;
  p.accumulate = info[10].As<Napi::Number>().DoubleValue() != 0;
  if (p.rows == 0 || N == 0) return env.Undefined();
  if (K == 0) {
    if (!p.accumulate)
      for (int64_t i = 0; i < p.rows * N; i++) c[i] = 0.f;
    return env.Undefined();
  }
  run(p);
  return env.Undefined();
}

}  // namespace

void RegisterNf4Packed(Napi::Env env, Napi::Object exports) {
  exports.Set("nf4PackedLayout", Napi::Function::New(env, Nf4PackedLayout));
  exports.Set("nf4Pack", Napi::Function::New(env, Nf4Pack));
  exports.Set("nf4Unpack", Napi::Function::New(env, Nf4Unpack));
  exports.Set("nf4GemmPacked", Napi::Function::New(env, Nf4GemmPacked));
}

}  // namespace lorakit
