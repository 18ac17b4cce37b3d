// The 8-lane f32 vector the AVX2 GEMM driver (gemm_driver.inc.h) is written against, shared
// by gemm_avx2.cc and prepack_avx2.cc. Include it inside an avx2,fma target region.
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
  static inline void stream(float* p, reg x) {
    if constexpr (kStream)
      _mm256_stream_ps(p, x);
    else
      _mm256_storeu_ps(p, x);
  }
  static inline void fence() {
    if constexpr (kStream) _mm_sfence();
  }
};
