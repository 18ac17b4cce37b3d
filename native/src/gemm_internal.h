// Internal interface between the GEMM dispatcher (gemm_core.cc), the N-API bindings
// (gemm.cc) and the per-ISA kernels (gemm_avx512.cc, gemm_avx2.cc, gemm_portable.cc).
// The ISA files are compiled with per-function target attributes (a target pragma around
// their bodies) and are only called after cpu_path() says the CPU supports them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace lorakit {

// One plain 2-D product on a sub-block: C = alpha·op(A)·op(B) + beta·C, op(A) m×k, op(B)
// k×n. Pointers are positioned at element (0,0) of op(A), op(B), C of this sub-block;
// element (i,p) of op(A) is a[i*lda+p] (a[p*lda+i] when transA), element (p,j) of op(B)
// is b[p*ldb+j] (b[j*ldb+p] when transB); b holds bf16 (uint16) values when bBf16.
struct GemmTask {
  bool transA = false, transB = false, bBf16 = false;
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  float alpha = 1, beta = 0;
  // Columns of the whole product this sub-block belongs to (0 = n). Kernels choose their
  // path (and so their summation order) from this, never from m or the sub-block's n, so
  // a thread split by columns computes every element exactly as one thread does.
  int64_t n_full = 0;
  // gemv only: memory the caller reads next (loraGroupedNT: the next adapter group's
  // weights), fetched into L1 while this product runs, prefetch_per_step lines per step of
  // its k loop from *prefetch (advanced as fetched) up to prefetch_end; nothing else.
  const char** prefetch = nullptr;
  const char* prefetch_end = nullptr;
  int prefetch_per_step = 0;
};

// A batched, contiguous problem as JavaScript passes it (strides in elements, 0 = shared).
struct GemmBatch {
  bool transA = false, transB = false, bBf16 = false;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  const float* a = nullptr;
  int64_t strideA = 0;
  const void* b = nullptr;
  int64_t strideB = 0;
  float* c = nullptr;
  int64_t strideC = 0;
  float alpha = 1, beta = 0;
  const char** prefetch = nullptr;  // as in GemmTask (gemv only, single-threaded runs)
  const char* prefetch_end = nullptr;
  int prefetch_per_step = 0;
};

// Products of at most kGemvMaxRows rows of A by Wᵀ (W row-major n×k, f32 or bf16: every
// linear layer while decoding) read W in place at memory bandwidth (gemv_avx2.cc), with the
// packed GEMM's exact per-element arithmetic. gemv_applies says whether gemv_run takes g.
constexpr int64_t kGemvMaxRows = 8;
bool gemv_applies(const GemmBatch& g);
void gemv_run(const GemmBatch& g);

using GemmSerialFn = void (*)(const GemmTask&);

// Serial kernels (one thread, any shape).
void gemm_serial_portable(const GemmTask& t);
#if defined(__x86_64__)
void gemm_serial_avx2(const GemmTask& t);
void gemm_serial_avx512(const GemmTask& t);
// Independent FMA chains for `iters` iterations; returns the flops done.
double fma_chains_avx2(int64_t iters);
double fma_chains_avx512(int64_t iters);
#endif
double fma_chains_portable(int64_t iters);

// Threaded batched GEMM on the selected path.
void gemm_run(const GemmBatch& g);
// Below this many multiply-adds per thread gemm_run keeps a product on fewer threads: 5–10 µs
// of one core's work, a few times what handing a part to a pool thread costs. (4e6 kept a
// serving step's products, 35–51 rows × 256–683 on a hidden-256 model, on one thread: m = 35
// times 256×256 took 22.9 µs on 2 threads, 12.7 with 1e6 on a Zen 5 host.)
constexpr double kGemmMinFmaPerThread = 1.0e6;

// Measured FMA throughput in GFLOP/s of the selected path with `threads` threads, ~ms each.
double fma_peak_gflops(int threads, double ms);

// Per-thread reusable scratch, 64-byte aligned, never shrunk: slot 0..3.
float* gemm_scratch(int slot, size_t count);

}  // namespace lorakit
