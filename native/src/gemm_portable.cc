// Portable C++ GEMM (any architecture, baseline instruction set only): the same blocked
// driver with an 4×16 tile of plain float lanes the compiler may vectorise for the baseline.
#include <cstdint>
#include <cstring>

#include "gemm_internal.h"

namespace lorakit {
namespace portable {
namespace {

struct V {
  struct reg {
    float v[8];
  };
  static constexpr int W = 8;
  static inline reg zero() {
    reg r;
    for (int i = 0; i < 8; i++) r.v[i] = 0.f;
    return r;
  }
  static inline reg load(const float* p) {
    reg r;
    for (int i = 0; i < 8; i++) r.v[i] = p[i];
    return r;
  }
  static inline reg loadu(const float* p) { return load(p); }
  static inline void storeu(float* p, const reg& x) {
    for (int i = 0; i < 8; i++) p[i] = x.v[i];
  }
  static inline reg set1(float x) {
    reg r;
    for (int i = 0; i < 8; i++) r.v[i] = x;
    return r;
  }
  static inline reg fmadd(const reg& a, const reg& b, const reg& c) {
    reg r;
    for (int i = 0; i < 8; i++) r.v[i] = a.v[i] * b.v[i] + c.v[i];
    return r;
  }
  static inline reg mul(const reg& a, const reg& b) {
    reg r;
    for (int i = 0; i < 8; i++) r.v[i] = a.v[i] * b.v[i];
    return r;
  }
  static constexpr bool kCanStream = false;
  static inline void stream(float* p, const reg& x) { storeu(p, x); }
  static inline void fence() {}
  static inline reg add(const reg& a, const reg& b) {
    reg r;
    for (int i = 0; i < 8; i++) r.v[i] = a.v[i] + b.v[i];
    return r;
  }
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
  packed_gemm<V, 4, 2, 256, 256, 96, true>(t, pack_b_any<16>, pack_a_any);
}

double fma_chains_portable(int64_t iters) {
  constexpr int NC = 32;
  float acc[NC];
  for (int q = 0; q < NC; q++) acc[q] = 0.001f * q;
  volatile float vx = 0.9999999f, vy = 1e-7f;
  const float x = vx, y = vy;
  for (int64_t it = 0; it < iters; it++)
    for (int q = 0; q < NC; q++) acc[q] = acc[q] * x + y;
  float s = 0;
  for (int q = 0; q < NC; q++) s += acc[q];
  volatile float sink = s;
  (void)sink;
  return static_cast<double>(iters) * NC * 2;
}

}  // namespace lorakit
