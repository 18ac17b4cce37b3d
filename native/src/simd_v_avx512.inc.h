// The 16-lane f32 vector the AVX-512 GEMM driver (gemm_driver.inc.h) is written against, shared
// by gemm_avx512.cc and prepack_avx512.cc. Include it inside an avx512f target region.
// kStream: whether the driver may write large results with non-temporal stores (the
// row-major GEMM's kernels may; the prepacked-weight kernels never do).
template <bool kStream>
struct VecAvx512 {
  using reg = __m512;
  static constexpr int W = 16;
  static inline reg zero() { return _mm512_setzero_ps(); }
  static inline reg load(const float* p) { return _mm512_load_ps(p); }
  static inline reg loadu(const float* p) { return _mm512_loadu_ps(p); }
  static inline void storeu(float* p, reg x) { _mm512_storeu_ps(p, x); }
  static inline reg set1(float x) { return _mm512_set1_ps(x); }
  static inline reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static inline reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static inline reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static constexpr bool kCanStream = kStream;
  static inline void stream(float* p, reg x) {
    if constexpr (kStream)
      _mm512_stream_ps(p, x);
    else
      _mm512_storeu_ps(p, x);
  }
  static inline void fence() {
    if constexpr (kStream) _mm_sfence();
  }
};
