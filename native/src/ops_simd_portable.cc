// Portable instance of the hot kernels (plain C++, any architecture) and the run-time
// dispatcher that picks the AVX-512, AVX2+FMA or portable table (cpu.h's detector, which
// also checks that the OS saves ymm/zmm state; LORAKIT_CPU lowers it), or the test-only
// 16-lane emulation (ops_simd_emu16.cc) when asked for by name, never by detection.
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "cpu.h"

#define LK_TGT
#if defined(__GNUC__)
#define LK_INL __attribute__((always_inline)) static inline
#else
#define LK_INL static inline
#endif

namespace lorakit {
namespace ops {
namespace portable {

struct V {
  using R = float;
  static constexpr int64_t N = 1;
  LK_INL R load(const float* p) { return *p; }
  LK_INL void store(float* p, R x) { *p = x; }
  LK_INL R load_part(const float* p, int64_t n, float fill) { return n > 0 ? *p : fill; }
  LK_INL void store_part(float* p, R x, int64_t n) {
    if (n > 0) *p = x;
  }
  LK_INL R set1(float x) { return x; }
  LK_INL R zero() { return 0.f; }
  // dst[d·dstride + j] = src[j·sstride + d] for j, d < 8 (an 8×8 block transposed).
  LK_INL void transpose8(const float* src, int64_t sstride, float* dst, int64_t dstride) {
    for (int j = 0; j < 8; j++)
      for (int d = 0; d < 8; d++) dst[d * dstride + j] = src[j * sstride + d];
  }
  LK_INL R add(R a, R b) { return a + b; }
  LK_INL R sub(R a, R b) { return a - b; }
  LK_INL R mul(R a, R b) { return a * b; }
  LK_INL R div(R a, R b) { return a / b; }
  LK_INL R fmadd(R a, R b, R c) { return a * b + c; }
  LK_INL R max(R a, R b) { return a > b ? a : b; }
  LK_INL R sqrt(R a) { return std::sqrt(a); }
  LK_INL float hsum(R a) { return a; }
  LK_INL float hmax(R a) { return a; }
  LK_INL R exp(R a) { return std::exp(a); }
};

}  // namespace portable
}  // namespace ops
}  // namespace lorakit

#define LK_NS portable
#define LK_TABLE kKernelsPortable
#define LK_ISA_NAME "portable"
#include "ops_kernels_impl.h"

namespace lorakit {
namespace ops {
namespace {

// The emulated 16-lane table: plain C++, so any CPU runs it; only by name.
constexpr int kEmu16 = 100;

int parse_level(const char* s) {
  if (!s) return -1;
  if (std::strcmp(s, "emu16") == 0) return kEmu16;
  if (std::strcmp(s, "portable") == 0) return 0;
  if (std::strcmp(s, "avx2") == 0) return 1;
  if (std::strcmp(s, "avx512") == 0) return 2;
  return -1;
}

const Kernels* table_for(int level) {
  if (level == kEmu16) return &kKernelsEmu16;
#if defined(__x86_64__)
  if (level >= 2) return &kKernelsAvx512;
  if (level == 1) return &kKernelsAvx2;
#else
  (void)level;
#endif
  return &kKernelsPortable;
}

// The best level the CPU (and OS) supports, from the shared detector (cpu.h).
int cpu_level() { return static_cast<int>(cpu_best_path()); }

std::atomic<const Kernels*>& active() {
  static std::atomic<const Kernels*> a{[] {
    // LORAKIT_CPU=emu16: the emulated 16-lane table (the GEMM keeps its best path).
    const char* env = std::getenv("LORAKIT_CPU");
    if (env && std::strcmp(env, "emu16") == 0) return table_for(kEmu16);
    // cpu_path(): the best level, lowered by LORAKIT_CPU=portable|avx2|avx512.
    return table_for(static_cast<int>(cpu_path()));
  }()};
  return a;
}

}  // namespace

const Kernels& kernels() { return *active().load(std::memory_order_relaxed); }

const char* isa_name() { return kernels().name; }

const char* set_isa(const char* s) {
  int want = parse_level(s);
  if (want == kEmu16) {
    active().store(table_for(kEmu16));
    return isa_name();
  }
  if (want < 0) want = cpu_level();
  if (want > cpu_level()) want = cpu_level();
  active().store(table_for(want));
  return isa_name();
}

}  // namespace ops
}  // namespace lorakit
