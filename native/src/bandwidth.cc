// readBandwidth(threads, mib) → GB/s: how fast this machine streams memory it only reads,
// the ceiling of decoding (every frozen weight is read once per token). A buffer of `mib`
// MiB (far larger than the caches) is summed by `threads` threads, each over its own
// contiguous slice with independent accumulators; the best of several passes counts.
// Benchmarks report decode speed as a fraction of this number measured in the same run.
#include <napi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "register.h"

namespace lorakit {
namespace {

// 16 independent sums keep the loads, not the adds, the limit (the compiler vectorises them).
float sum_slice(const float* p, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) acc[j] += p[i + j];
  for (; i < n; i++) acc[0] += p[i];
  float s = 0;
  for (float a : acc) s += a;
  return s;
}

double read_bandwidth(int threads, int64_t mib) {
  const int64_t n = mib * (int64_t{1} << 20) / 4;
  void* mem = nullptr;
  if (posix_memalign(&mem, 64, static_cast<size_t>(n) * 4) != 0) return 0;
  float* buf = static_cast<float*>(mem);
  for (int64_t i = 0; i < n; i++) buf[i] = 1e-6f * static_cast<float>(i & 1023);
  double best = 0;
  volatile float sink = 0;
  for (int pass = 0; pass < 5; pass++) {
    std::vector<float> part(threads, 0.f);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int t = 1; t < threads; t++)
      ts.emplace_back([&, t] { part[t] = sum_slice(buf + n * t / threads, n * (t + 1) / threads - n * t / threads); });
    part[0] = sum_slice(buf, n / threads);
    for (auto& th : ts) th.join();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (float v : part) sink = sink + v;
    best = std::max(best, static_cast<double>(n) * 4 / secs / 1e9);
  }
  std::free(mem);
  return best;
}

Napi::Value ReadBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double threads = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 1;
  const double mib = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 512;
  if (!(threads >= 1 && threads <= 1024) || threads != std::floor(threads)) {
    Napi::RangeError::New(env, "readBandwidth: threads must be an integer in [1, 1024]").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!(mib >= 1 && mib <= 65536) || mib != std::floor(mib)) {
    Napi::RangeError::New(env, "readBandwidth: mib must be an integer in [1, 65536]").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, read_bandwidth(static_cast<int>(threads), static_cast<int64_t>(mib)));
}

}  // namespace

void RegisterBandwidth(Napi::Env env, Napi::Object exports) {
  exports.Set("readBandwidth", Napi::Function::New(env, ReadBandwidth, "readBandwidth"));
}

}  // namespace lorakit
