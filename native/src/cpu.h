// Run-time CPU feature detection for the native kernels. The addon is compiled without
// -march flags; each ISA-specific function carries its own target attribute and is only
// called when the running CPU (and the OS, for the zmm/ymm register state) supports it.
#pragma once

namespace lorakit {

enum class CpuPath { Portable = 0, Avx2 = 1, Avx512 = 2 };

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512bf16 = false;
  bool avx512vbmi = false;  // vpermb (byte permutes across the 512-bit register)
  bool os_ymm = false;  // XCR0 has SSE+AVX state enabled
  bool os_zmm = false;  // XCR0 has opmask + zmm state enabled
  // The vendor, for tuning that differs between Intel's and AMD's cores (prefetch hints); never
  // for what a kernel computes.
  bool intel = false;
  bool amd = false;
};

// What the CPU and OS support (detected once).
const CpuFeatures& cpu_features();
// The best path the hardware supports.
CpuPath cpu_best_path();
// The path in use: the best one, lowered by LORAKIT_CPU=portable|avx2|avx512 (a request
// above what the hardware supports falls back to the best supported one). LORAKIT_CPU=emu16
// selects the op kernels' 16-lane emulation and leaves this path at the best one.
CpuPath cpu_path();
const char* cpu_path_name(CpuPath p);
// Whether kernels may use AVX-512 VBMI (vpermb) on top of the AVX-512 path: the CPU has it,
// the path is AVX-512, and LORAKIT_CPU does not name avx512 (which keeps to the F/BW/VL/DQ
// kernels, so a VBMI host can test the ones AVX-512 hosts without VBMI run).
bool cpu_vbmi();

}  // namespace lorakit
