// The NF4 decode kernel on AVX-512 (≤ 8 rows), included by nf4_packed.cc twice: in its AVX-512
// region and in its AVX-512 VBMI region, each defining before it
//   Codes            indices(src, idx): the 32 stored bytes of codes at src (k..k+3, k a
//                    multiple of 4, one panel) to four index vectors, idx[d] holding the codes
//                    of k+d in column order in the low 4 bits of its lanes (the only bits
//                    vpermps reads);
//   decode_group(m)  how many adjacent panels a tile of m rows runs at once (independent
//                    accumulator chains, within the 32 registers);
//   KC               the panel GEMM's slice depth.
// Per element the arithmetic is AVX2's: w = map[code]·absmax, then acc = fma(w, a, acc) in
// order of k over each 256-deep slice, then c = acc or c + acc — so every region's kernel
// gives the same bits as the panel GEMM, for any row count.
// Not a header: no include guard on purpose.

// G adjacent panels from q for the M rows. `ahead`: the codes this thread reads next (the next
// G panels, contiguous after these), fetched a step's worth per step while these are used.
template <int M, int G>
static void decode_panels(const Problem& p, int64_t q, const Codes& codes, const uint8_t* ahead) {
  const PackedNf4& w = p.w;
  const int64_t C = w.in;
  const int shift = w.shift;
  constexpr __mmask16 kAll = 0xFFFF;  // zero-masked forms: GCC 12's unmasked ones read an undefined register
  const __m512 map = _mm512_loadu_ps(w.qmap);
  const uint8_t* cp[G];
  const float* sp[G];
  for (int g = 0; g < G; g++) {
    cp[g] = w.panel_codes(q + g);
    sp[g] = w.panel_scales(q + g);
  }
  const char* ahead_scales = ahead != nullptr ? reinterpret_cast<const char*>(w.panel_scales(q + G)) : nullptr;
  const int64_t scale_bytes = G * w.slots() * kPanel * 4;
  // The next panels' scales, from their start: a line per step, or as many as keep pace with
  // the codes where blocks are short (256·G/blocksize bytes a step; 128 at blocksize 8, G 4).
  const int64_t scale_step = 256 * G / w.blocksize > 64 ? 256 * G / w.blocksize : 64;
  for (int64_t k0 = 0; k0 < C; k0 += KC) {
    const int64_t k1 = C - k0 < KC ? C : k0 + KC;
    __m512 acc[M][G];
    for (int i = 0; i < M; i++)
      for (int g = 0; g < G; g++) acc[i][g] = _mm512_setzero_ps();
    for (int64_t k = k0; k < k1; k += 4) {
      if (ahead != nullptr) {
        // A step reads 32 bytes of codes from each of its G panels: as many of the next ones'.
        const char* line = reinterpret_cast<const char*>(ahead) + 8 * G * k;
        for (int l = 0; l < (32 * G + 63) / 64; l++) _mm_prefetch(line + 64 * l, _MM_HINT_T0);
        const int64_t sl = (k >> 2) * scale_step;
        if (sl < scale_bytes) {
          _mm_prefetch(ahead_scales + sl, _MM_HINT_T0);
          for (int64_t more = sl + 64; more < sl + scale_step && more < scale_bytes; more += 64)
            _mm_prefetch(ahead_scales + more, _MM_HINT_T0);
        }
      }
      for (int g = 0; g < G; g++) {
        const __m512 s = _mm512_loadu_ps(sp[g] + (k >> shift) * kPanel);
        __m512i idx[4];
        codes.indices(cp[g] + 8 * k, idx);
#pragma GCC unroll 4
        for (int d = 0; d < 4; d++) {
          const __m512 wd = _mm512_mul_ps(_mm512_maskz_permutexvar_ps(kAll, idx[d], map), s);
          for (int i = 0; i < M; i++) acc[i][g] = _mm512_fmadd_ps(wd, _mm512_set1_ps(p.a[i * C + k + d]), acc[i][g]);
        }
      }
    }
    const bool add = k0 > 0 || p.accumulate;
    for (int g = 0; g < G; g++) {
      const int64_t j0 = (q + g) * kPanel;
      const int nb = static_cast<int>(w.out - j0 < kPanel ? w.out - j0 : kPanel);
      const __mmask16 cm = static_cast<__mmask16>(nb >= 16 ? 0xFFFF : (1u << nb) - 1u);
      for (int i = 0; i < M; i++) {
        float* ci = p.c + i * w.out + j0;
        const __m512 y = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(cm, ci), acc[i][g]) : acc[i][g];
        _mm512_mask_storeu_ps(ci, cm, y);
      }
    }
  }
}

template <int M>
static void decode_range(const Problem& p, int64_t q0, int64_t q1) {
  constexpr int G = decode_group(M);
  const Codes codes;
  int64_t q = q0;
  for (; q + G <= q1; q += G) decode_panels<M, G>(p, q, codes, q + 2 * G <= q1 ? p.w.panel_codes(q + G) : nullptr);
  for (; q < q1; q++) decode_panels<M, 1>(p, q, codes, nullptr);
}

#include "nf4_decode_rows.inc.h"
