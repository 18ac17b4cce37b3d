// Portable C++ GEMM (any architecture, baseline instruction set only): the same blocked
// driver with a 4×8 tile of 4-float vector-extension registers (SSE2 / NEON / scalar).
#include <cstdint>
#include <cstring>

#include "gemm_internal.h"

// GCC/Clang vector extensions: 4 floats, lowered to SSE2 on x86-64, NEON on arm64 and
// plain scalars elsewhere.
typedef float f32x4 __attribute__((vector_size(16)));

namespace lorakit {
namespace portable {
namespace {

struct V {
  using reg = f32x4;
  static constexpr int W = 4;
  static inline reg zero() { return reg{0.f, 0.f, 0.f, 0.f}; }
  static inline reg load(const float* p) {
    reg r;
    std::memcpy(&r, p, sizeof r);
    return r;
  }
  static inline reg loadu(const float* p) { return load(p); }
  static inline void storeu(float* p, reg x) { std::memcpy(p, &x, sizeof x); }
  static inline reg set1(float x) { return reg{x, x, x, x}; }
  static inline reg fmadd(reg a, reg b, reg c) { return a * b + c; }
  static inline reg mul(reg a, reg b) { return a * b; }
  static inline reg add(reg a, reg b) { return a + b; }
  static constexpr bool kCanStream = false;
  static inline void stream(float* p, reg x) { storeu(p, x); }
  static inline void fence() {}
};

#include "gemm_driver.inc.h"

void pack_a_any(const GemmTask& t, int64_t i0, int64_t mr, int64_t k0, int64_t kc, float* ap) {
  pack_a_panels_generic<4>(t.a, t.lda, t.transA, i0, mr, k0, kc, ap);
}

}  // namespace
}  // namespace portable

void gemm_serial_portable(const GemmTask& t) {
  using namespace portable;
  if (t.m <= 0 || t.n <= 0) return;
  if (t.k <= 0 || t.alpha == 0.f) {
    scale_c(t);
    return;
  }
  packed_gemm<V, 4, 2, 256, 256, 96, true>(t, pack_b_any<8>, pack_a_any);
}

double fma_chains_portable(int64_t iters) {
  constexpr int NC = 12;
  f32x4 acc[NC];
  for (int q = 0; q < NC; q++) acc[q] = portable::V::set1(0.001f * q);
  volatile float vx = 0.9999999f, vy = 1e-7f;
  const f32x4 x = portable::V::set1(vx), y = portable::V::set1(vy);
  for (int64_t it = 0; it < iters; it++)
    for (int q = 0; q < NC; q++) acc[q] = acc[q] * x + y;
  float s = 0;
  for (int q = 0; q < NC; q++) s += acc[q][0] + acc[q][3];
  volatile float sink = s;
  (void)sink;
  return static_cast<double>(iters) * NC * 4 * 2;
}

}  // namespace lorakit
