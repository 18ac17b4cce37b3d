#include "cpu.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#define LORAKIT_X86 1
#include <cpuid.h>
#endif

namespace lorakit {
namespace {

#if LORAKIT_X86
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if LORAKIT_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  char vendor[13];
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  vendor[12] = 0;
  f.intel = std::strcmp(vendor, "GenuineIntel") == 0;
  f.amd = std::strcmp(vendor, "AuthenticAMD") == 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  const bool avx = (c >> 28) & 1;
  f.fma = (c >> 12) & 1;
  if (osxsave && avx) {
    const uint64_t xcr0 = read_xcr0();
    f.os_ymm = (xcr0 & 0x6) == 0x6;
    f.os_zmm = f.os_ymm && (xcr0 & 0xE0) == 0xE0;
  }
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = (b >> 5) & 1;
    f.avx512f = (b >> 16) & 1;
    f.avx512dq = (b >> 17) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
    f.avx512vbmi = (c >> 1) & 1;
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512bf16 = (a >> 5) & 1;
  }
  if (!f.os_ymm) f.avx2 = f.fma = false;
  if (!f.os_zmm) f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512bf16 = f.avx512vbmi = false;
#endif
  return f;
}

CpuPath detect_best() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma) return CpuPath::Avx512;
  if (f.avx2 && f.fma) return CpuPath::Avx2;
  return CpuPath::Portable;
}

CpuPath detect_path() {
  CpuPath best = cpu_best_path();
  const char* s = std::getenv("LORAKIT_CPU");
  if (!s || !*s) return best;
  CpuPath want = best;
  if (!std::strcmp(s, "portable") || !std::strcmp(s, "generic")) want = CpuPath::Portable;
  else if (!std::strcmp(s, "avx2")) want = CpuPath::Avx2;
  else if (!std::strcmp(s, "avx512")) want = CpuPath::Avx512;
  // "emu16" swaps only the op kernels for their test-only 16-lane emulation
  // (ops_simd_portable.cc); the GEMM and everything else here keep the best real path.
  else if (!std::strcmp(s, "emu16")) want = best;
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

CpuPath cpu_best_path() {
  static const CpuPath p = detect_best();
  return p;
}

CpuPath cpu_path() {
  static const CpuPath p = detect_path();
  return p;
}

bool cpu_vbmi() {
  static const bool v = [] {
    const char* s = std::getenv("LORAKIT_CPU");
    const bool plain = s != nullptr && !std::strcmp(s, "avx512");
    return cpu_path() == CpuPath::Avx512 && cpu_features().avx512vbmi && !plain;
  }();
  return v;
}

const char* cpu_path_name(CpuPath p) {
  switch (p) {
    case CpuPath::Avx512: return "avx512";
    case CpuPath::Avx2: return "avx2";
    default: return "portable";
  }
}

}  // namespace lorakit
