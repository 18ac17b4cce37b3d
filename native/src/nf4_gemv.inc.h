// The NF4 decode path, included by nf4_gemm.cc inside its AVX2 target region: x·Wᵀ for at
// most 8 rows of x, with W read as 4-bit codes straight from the packed weight (8 rows of W
// at a time, 8 codes of each per 32-bit lane) and dequantised in registers — no panel is
// packed. Each element is computed exactly as the panel GEMM above computes it (per KC slice
// acc = fma(w, x, acc) in order of k, then c = acc or c + acc), so a row's bits do not depend
// on how many rows share the call; a test compares the two bit for bit.
// Not a header: no include guard on purpose.

namespace nf4gemv {

constexpr int KC = 256;  // the panel GEMM's slice depth

// Codes of positions q = 0..7 from 32 bits of packed weight (4 bytes, two codes per byte,
// the first in the high nibble), in lane order.
template <int Q>
static inline __m256i code(__m256i v) {
  constexpr int shift = 8 * (Q / 2) + (Q % 2 == 0 ? 4 : 0);
  return _mm256_and_si256(_mm256_srli_epi32(v, shift), _mm256_set1_epi32(15));
}

// quantMap[code] per lane: the 16-entry map as two 8-entry permutes, picked by bit 3.
static inline __m256 lookup(__m256i c, __m256 lo, __m256 hi) {
  const __m256 a = _mm256_permutevar8x32_ps(lo, c);
  const __m256 b = _mm256_permutevar8x32_ps(hi, c);
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
}

static inline uint32_t load32(const uint8_t* p) {
  uint32_t u;
  std::memcpy(&u, p, 4);
  return u;
}

template <int M, int Q>
static inline void step(const float* const* ar, int64_t k, __m256i v, __m256 s, __m256 lo, __m256 hi, __m256 (&acc)[M]) {
  const __m256 w = _mm256_mul_ps(lookup(code<Q>(v), lo, hi), s);
  for (int i = 0; i < M; i++) acc[i] = _mm256_fmadd_ps(w, _mm256_set1_ps(ar[i][k + Q]), acc[i]);
}

// Output columns [j0, j0+nb) (nb ≤ 8) for the M rows of x.
template <int M>
static void columns8(const Nf4Problem& p, int64_t j0, int nb) {
  const int64_t C = p.in;
  const int shift = __builtin_ctzll(static_cast<unsigned long long>(p.blocksize));  // a power of two (applies())
  int64_t row[8];
  for (int j = 0; j < 8; j++) row[j] = (j0 + (j < nb ? j : nb - 1)) * C;  // a short block repeats its last row
  const float* ar[M];
  for (int i = 0; i < M; i++) ar[i] = p.a + i * C;
  const __m256 lo = _mm256_loadu_ps(p.qmap), hi = _mm256_loadu_ps(p.qmap + 8);
  for (int64_t k0 = 0; k0 < C; k0 += KC) {
    const int64_t kc = C - k0 < KC ? C - k0 : KC;
    __m256 acc[M];
    for (int i = 0; i < M; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t k = k0; k < k0 + kc; k += 8) {
      int32_t words[8];
      float sc[8];
      for (int j = 0; j < 8; j++) {
        words[j] = static_cast<int32_t>(load32(p.packed + ((row[j] + k) >> 1)));
        sc[j] = p.scales[(row[j] + k) >> shift];
      }
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words));
      const __m256 s = _mm256_loadu_ps(sc);
      step<M, 0>(ar, k, v, s, lo, hi, acc);
      step<M, 1>(ar, k, v, s, lo, hi, acc);
      step<M, 2>(ar, k, v, s, lo, hi, acc);
      step<M, 3>(ar, k, v, s, lo, hi, acc);
      step<M, 4>(ar, k, v, s, lo, hi, acc);
      step<M, 5>(ar, k, v, s, lo, hi, acc);
      step<M, 6>(ar, k, v, s, lo, hi, acc);
      step<M, 7>(ar, k, v, s, lo, hi, acc);
    }
    const bool accumulate = k0 > 0 || p.beta != 0.f;
    for (int i = 0; i < M; i++) {
      float* ci = p.c + i * p.out + j0;
      alignas(32) float t[8];
      _mm256_store_ps(t, acc[i]);
      for (int j = 0; j < nb; j++) ci[j] = accumulate ? ci[j] + t[j] : t[j];
    }
  }
}

template <int M>
static void columns(const Nf4Problem& p, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; j += 8) columns8<M>(p, j, static_cast<int>(j1 - j < 8 ? j1 - j : 8));
}

// Whether the decode path takes p: forward, ≤ 8 rows, whole 8-code groups that never straddle
// a byte or an absmax block (in-features a multiple of 8, block size a power of two ≥ 8, as
// every bitsandbytes block size is).
static bool applies(const Nf4Problem& p) {
  const bool pow2 = p.blocksize > 0 && (p.blocksize & (p.blocksize - 1)) == 0;
  return !p.backward && p.rows >= 1 && p.rows <= 8 && p.in % 8 == 0 && p.blocksize % 8 == 0 && pow2;
}

static void run(const Nf4Problem& p, int64_t j0, int64_t j1) {
  switch (p.rows) {
    case 1: return columns<1>(p, j0, j1);
    case 2: return columns<2>(p, j0, j1);
    case 3: return columns<3>(p, j0, j1);
    case 4: return columns<4>(p, j0, j1);
    case 5: return columns<5>(p, j0, j1);
    case 6: return columns<6>(p, j0, j1);
    case 7: return columns<7>(p, j0, j1);
    default: return columns<8>(p, j0, j1);
  }
}

}  // namespace nf4gemv
