// The 8-lane f32 vector the AVX2 GEMM driver (gemm_driver.inc.h) is written against, shared
// by gemm_avx2.cc and prepack_avx2.cc (gemv_avx2.cc uses its store8). Include it inside an
// avx2,fma target region, after <cstring>.
// kStream: whether the driver may write large results with non-temporal stores (the
// row-major GEMM's kernels may; the prepacked-weight kernels never do).
template <bool kStream>
struct VecAvx2 {
  using reg = __m256;
  static constexpr int W = 8;
  static inline reg zero() { return _mm256_setzero_ps(); }
  static inline reg load(const float* p) { return _mm256_load_ps(p); }
  static inline reg loadu(const float* p) { return _mm256_loadu_ps(p); }
  static inline void storeu(float* p, reg x) { _mm256_storeu_ps(p, x); }
  static inline reg set1(float x) { return _mm256_set1_ps(x); }
  static inline reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static inline reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static inline reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static constexpr bool kCanStream = kStream;
  // The driver's loop order and blocking on AVX2 hosts (packed_gemm_b_stationary in
  // gemm_driver.inc.h): B panels stay in L1 while MC = 132 rows of packed A (132 KiB per
  // 256-deep slice) stream from L2; NC = 1024 columns of packed B (1 MiB) per block, so a
  // 128-row prefill packs its A once per slice. Measured on a Zen 3 EPYC (32 KiB L1d,
  // 512 KiB L2 per core) against the A-stationary order the AVX-512 path keeps.
  static constexpr bool kBStationary = true;
  static constexpr int kStationaryNC = 1024;
  static constexpr int kStationaryMC = 132;
  static inline void stream(float* p, reg x) {
    if constexpr (kStream)
      _mm256_stream_ps(p, x);
    else
      _mm256_storeu_ps(p, x);
  }
  static inline void fence() {
    if constexpr (kStream) _mm_sfence();
  }

  // Columns of the 8×8 block r[0..7] (row i = r[i]) into r[0..7] (r[q] = column q).
  static inline void transpose8(reg (&r)[8]) {
    reg t[8];
    for (int i = 0; i < 4; i++) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    reg u[8];
    for (int h = 0; h < 2; h++) {
      u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
      u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
      u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
      u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
    for (int q = 0; q < 4; q++) {
      r[q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x20);
      r[4 + q] = _mm256_permute2f128_ps(u[q], u[4 + q], 0x31);
    }
  }

  // pack_a_generic's hook (gemm_driver.inc.h): MR full rows of a row-major A (row i at
  // a + i·lda) into one MR-row panel, ap[p·MR + i] = a[i·lda + p], 8 k at a time through a
  // register transpose instead of MR·kc scalar stores. Only for MR 4 and 6; false = not done.
  static constexpr bool kPackARows = true;
  template <int MR>
  static inline bool pack_a_rows(const float* a, int64_t lda, int64_t kc, float* ap) {
    if constexpr (MR != 4 && MR != 6) {
      return false;
    } else {
      int64_t p = 0;
      for (; p + 8 <= kc; p += 8) {
        reg r[8];
        for (int i = 0; i < 8; i++) r[i] = i < MR ? _mm256_loadu_ps(a + i * lda + p) : _mm256_setzero_ps();
        transpose8(r);
        for (int q = 0; q < 8; q++) {
          float* d = ap + (p + q) * MR;
          const __m128 lo = _mm256_castps256_ps128(r[q]);
          _mm_storeu_ps(d, lo);
          // Rows 4, 5: an 8-byte store (AMD's masked stores are microcoded and slow).
          if constexpr (MR == 6) _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(r[q], 1));
        }
      }
      for (; p < kc; p++)
        for (int i = 0; i < MR; i++) ap[p * MR + i] = a[i * lda + p];
      return true;
    }
  }
};

// One vector of an 8-column C row as the packed GEMM stores it: c[0, min(nr, 8)) =
// acc·alpha (beta 0: c is not read), fma(acc, alpha, c) (beta 1) or fma(acc, alpha, beta·c).
// Eight columns load and store C directly; a ragged vector goes through a buffer with the same
// vector operations. (The decode kernels' stores: a buffer filled by a memcpy of run-time
// length for every vector cost a library call and a load that store forwarding cannot serve.)
inline void store8(__m256 acc, float* c, int64_t nr, __m256 va, float beta) {
  alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  float* dst = nr >= 8 ? c : buf;
  if (nr < 8 && beta != 0.f) std::memcpy(buf, c, sizeof(float) * nr);
  __m256 r;
  if (beta == 0.f)
    r = _mm256_mul_ps(acc, va);
  else if (beta == 1.f)
    r = _mm256_fmadd_ps(acc, va, _mm256_loadu_ps(dst));
  else
    r = _mm256_fmadd_ps(acc, va, _mm256_mul_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(dst)));
  _mm256_storeu_ps(dst, r);
  if (nr < 8) std::memcpy(c, buf, sizeof(float) * nr);
}
