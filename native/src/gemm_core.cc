// GEMM dispatch: picks the ISA path once (cpu_path()), splits a batched product over the
// thread pool, and owns the per-thread packing buffers.
//
// Design (see gemm_driver.inc.h and gemm_avx512.cc):
// - AVX-512: a 6×64 register tile (24 zmm accumulators) for general shapes; KC=256,
//   NC=512 (a 512 KiB packed B slice stays in L2), row-major A read in place, a
//   transposed A packed once per k slice. A 24×16 tile for n ≤ 16 with a transposed A.
//   Narrow outputs with a row-major A (X·Aᵀ, G·B, rank r ≤ 40) pack op(B) k×16·NV once
//   and broadcast each X element into NV accumulators per row, 8/8/6 rows per tile
//   (NV = 1/2/3); the big X is read in place once. A single-k-slice
//   product with a huge C and beta = 0 ((XAᵀ)·Bᵀ) uses streaming stores.
// - AVX2+FMA: 6×16 tile (4×16 for ragged row tails) in BLIS's B-stationary order: a
//   16-column B panel stays in L1 while 132 rows of packed A stream from L2 (NC = 1024);
//   portable: 4×16 tile of plain floats in the AVX-512 path's order; same driver file.
// - Threads: a product of ≥ 2·4M multiply-adds per thread is split over rows (in units of
//   24) or, when much wider than tall, over columns (units of 64); batches split over
//   matrices when they divide evenly. Each thread packs its own B slice (no barriers).
// - bf16 B is widened while packing (an exact shift), so the result equals the f32
//   product of the widened B; avx512_bf16's dot products would round A to bf16 too, so
//   they are not used for this contract.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "cpu.h"
#include "gemm_internal.h"
#include "threadpool.h"

namespace lorakit {
namespace {

// Row splits are multiples of this (a multiple of every kernel's MR), column splits of 64.
constexpr int64_t kRowUnit = 24, kColUnit = 64;

struct Scratch {
  float* p[4] = {nullptr, nullptr, nullptr, nullptr};
  size_t cap[4] = {0, 0, 0, 0};
  ~Scratch() {
    for (float* q : p) std::free(q);
  }
};

GemmSerialFn select_serial() {
#if defined(__x86_64__)
  switch (cpu_path()) {
    case CpuPath::Avx512: return gemm_serial_avx512;
    case CpuPath::Avx2: return gemm_serial_avx2;
    default: break;
  }
#endif
  return gemm_serial_portable;
}

double (*select_chains())(int64_t) {
#if defined(__x86_64__)
  switch (cpu_path()) {
    case CpuPath::Avx512: return fma_chains_avx512;
    case CpuPath::Avx2: return fma_chains_avx2;
    default: break;
  }
#endif
  return fma_chains_portable;
}

}  // namespace

float* gemm_scratch(int slot, size_t count) {
  thread_local Scratch s;
  if (count > s.cap[slot]) {
    std::free(s.p[slot]);
    // Grow generously so a slightly larger request later does not reallocate (a fresh
    // buffer costs a page fault per 4 KiB on first touch).
    size_t cap = std::max(count + count / 4, static_cast<size_t>(4096));
    cap = (cap + 15) & ~static_cast<size_t>(15);
    void* q = nullptr;
    if (posix_memalign(&q, 64, cap * sizeof(float)) != 0) std::abort();
    s.p[slot] = static_cast<float*>(q);
    s.cap[slot] = cap;
  }
  return s.p[slot];
}

void gemm_run(const GemmBatch& g) {
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
  if (g.alpha != 0.f && gemv_applies(g)) {
    gemv_run(g);
    return;
  }
  static const GemmSerialFn fn = select_serial();
  const int64_t lda = g.transA ? g.m : g.k, ldb = g.transB ? g.k : g.n, ldc = g.n;
  const size_t bsz = g.bBf16 ? 2 : 4;

  // Sub-block [i0,i1) × [j0,j1) of matrix bi.
  auto task = [&](int64_t bi, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    GemmTask t;
    t.transA = g.transA;
    t.transB = g.transB;
    t.bBf16 = g.bBf16;
    t.m = i1 - i0;
    t.n = j1 - j0;
    t.k = g.k;
    t.n_full = g.n;
    t.lda = lda;
    t.ldb = ldb;
    t.ldc = ldc;
    t.a = g.a + bi * g.strideA + (g.transA ? i0 : i0 * lda);
    const int64_t boff = bi * g.strideB + (g.transB ? j0 * ldb : j0);
    t.b = static_cast<const char*>(g.b) + boff * bsz;
    t.c = g.c + bi * g.strideC + i0 * ldc + j0;
    t.alpha = g.alpha;
    t.beta = g.beta;
    return t;
  };

  const double fma_per_matrix = static_cast<double>(g.m) * g.n * std::max<int64_t>(g.k, 1);
  const double fma = fma_per_matrix * g.batch;
  int nt = num_threads();
  nt = static_cast<int>(std::max(1.0, std::min<double>(nt, fma / kGemmMinFmaPerThread)));
  if (nt <= 1) {
    for (int64_t bi = 0; bi < g.batch; bi++) fn(task(bi, 0, g.m, 0, g.n));
    return;
  }
  if (g.batch % nt == 0 || g.batch >= 4 * nt || fma_per_matrix < kGemmMinFmaPerThread * 2) {
    parallel_for(g.batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t bi = b0; bi < b1; bi++) fn(task(bi, 0, g.m, 0, g.n));
    });
    return;
  }
  // Split each matrix: by rows unless it is much wider than tall.
  const bool by_rows = g.m >= g.n || g.n <= 48;
  const int64_t unit = by_rows ? kRowUnit : kColUnit;
  const int64_t len = by_rows ? g.m : g.n;
  const int64_t units = (len + unit - 1) / unit;
  const int parts = static_cast<int>(std::min<int64_t>(nt, units));
  for (int64_t bi = 0; bi < g.batch; bi++) {
    if (parts <= 1) {
      fn(task(bi, 0, g.m, 0, g.n));
      continue;
    }
    parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; p++) {
        const int64_t s = std::min(len, units * p / parts * unit);
        const int64_t e = std::min(len, units * (p + 1) / parts * unit);
        if (s >= e) continue;
        fn(by_rows ? task(bi, s, e, 0, g.n) : task(bi, 0, g.m, s, e));
      }
    });
  }
}

double fma_peak_gflops(int threads, double ms) {
  static double (*const chains)(int64_t) = select_chains();
  if (threads < 1) threads = 1;
  if (ms <= 0) ms = 200;
  chains(20000);  // warm up (clock ramp, AVX-512 power state)
  std::vector<double> rate(threads, 0.0);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  auto body = [&](int id) {
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    const auto t0 = std::chrono::steady_clock::now();
    double flops = 0, secs = 0;
    do {
      flops += chains(20000);
      secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (secs * 1000 < ms);
    rate[id] = flops / secs;
  };
  std::vector<std::thread> ts;
  for (int i = 1; i < threads; i++) ts.emplace_back(body, i);
  while (ready.load() < threads - 1) std::this_thread::yield();
  go.store(true, std::memory_order_release);
  body(0);
  for (auto& t : ts) t.join();
  double sum = 0;
  for (double r : rate) sum += r;
  return sum / 1e9;
}

}  // namespace lorakit
