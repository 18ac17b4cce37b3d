// N-API exports of the GEMM family:
//   gemm(transA, transB, m, n, k, batch, a, strideA, b, strideB, c, strideC, alpha, beta)
//     C[i] = alpha·op(A[i])·op(B[i]) + beta·C[i]; a, c Float32Array; b Float32Array or
//     Uint16Array (bf16); strides in elements (0 = shared operand; C needs ≥ m·n when
//     batch > 1). The arrays are used in place (no copies); every length is checked.
//   fmaPeak(threads, ms) → GFLOP/s of independent FMA chains on the selected path.
//   cpuFeatures() → { path, best, arch, vendor, avx2, fma, avx512f, ..., avx512bf16, avx512vbmi, vbmi }.
#include <cmath>
#include <string>

#include "cpu.h"
#include "gemm_internal.h"
#include "register.h"
#include "threadpool.h"

namespace lorakit {
namespace {

bool throw_type(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return false;
}
bool throw_range(Napi::Env env, const std::string& msg) {
  Napi::RangeError::New(env, msg).ThrowAsJavaScriptException();
  return false;
}

std::string num_str(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.007199254740992e15)
    return std::to_string(static_cast<long long>(v));
  return std::to_string(v);
}

bool get_count(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t& out) {
  Napi::Env env = info.Env();
  if (!info[i].IsNumber()) return throw_type(env, std::string("gemm: ") + name + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != std::floor(v) || v > 4294967296.0 * 65536.0)
    return throw_range(env, std::string("gemm: ") + name + " must be a non-negative integer, got " + num_str(v));
  out = static_cast<int64_t>(v);
  return true;
}

bool get_f32(const Napi::CallbackInfo& info, size_t i, const char* name, float& out) {
  if (!info[i].IsNumber())
    return throw_type(info.Env(), std::string("gemm: ") + name + " must be a number");
  out = static_cast<float>(info[i].As<Napi::Number>().DoubleValue());
  return true;
}

// Checks that `len` elements hold batch matrices of `count` elements `stride` apart.
bool check_len(Napi::Env env, const char* name, size_t len, int64_t batch, int64_t stride, double count,
               const std::string& dims) {
  if (batch == 0 || count == 0) return true;
  const double need = static_cast<double>(batch - 1) * static_cast<double>(stride) + count;
  if (need > static_cast<double>(len))
    return throw_range(env, std::string("gemm: ") + name + " has " + std::to_string(len) + " elements but " +
                                dims + " need " + num_str(need));
  return true;
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 14) {
    throw_type(env,
               "gemm(transA, transB, m, n, k, batch, a, strideA, b, strideB, c, strideC, alpha, beta): expected 14 "
               "arguments, got " +
                   std::to_string(info.Length()));
    return env.Undefined();
  }
  GemmBatch g;
  g.transA = info[0].ToBoolean().Value();
  g.transB = info[1].ToBoolean().Value();
  if (!get_count(info, 2, "m", g.m) || !get_count(info, 3, "n", g.n) || !get_count(info, 4, "k", g.k) ||
      !get_count(info, 5, "batch", g.batch) || !get_count(info, 7, "strideA", g.strideA) ||
      !get_count(info, 9, "strideB", g.strideB) || !get_count(info, 11, "strideC", g.strideC) ||
      !get_f32(info, 12, "alpha", g.alpha) || !get_f32(info, 13, "beta", g.beta))
    return env.Undefined();

  auto typed = [&](size_t i) -> napi_typedarray_type {
    if (!info[i].IsTypedArray()) return static_cast<napi_typedarray_type>(-1);
    return info[i].As<Napi::TypedArray>().TypedArrayType();
  };
  if (typed(6) != napi_float32_array) {
    throw_type(env, "gemm: a must be a Float32Array");
    return env.Undefined();
  }
  const napi_typedarray_type bt = typed(8);
  if (bt != napi_float32_array && bt != napi_uint16_array) {
    throw_type(env, "gemm: b must be a Float32Array or a Uint16Array of bf16 values");
    return env.Undefined();
  }
  if (typed(10) != napi_float32_array) {
    throw_type(env, "gemm: c must be a Float32Array");
    return env.Undefined();
  }
  auto a = info[6].As<Napi::Float32Array>();
  auto c = info[10].As<Napi::Float32Array>();
  g.bBf16 = bt == napi_uint16_array;
  size_t blen;
  if (g.bBf16) {
    auto b = info[8].As<Napi::Uint16Array>();
    blen = b.ElementLength();
    g.b = b.Data();
  } else {
    auto b = info[8].As<Napi::Float32Array>();
    blen = b.ElementLength();
    g.b = b.Data();
  }
  const std::string mk = "m=" + std::to_string(g.m) + ", k=" + std::to_string(g.k);
  const std::string kn = "k=" + std::to_string(g.k) + ", n=" + std::to_string(g.n);
  const std::string mn = "m=" + std::to_string(g.m) + ", n=" + std::to_string(g.n);
  const std::string bs = ", batch=" + std::to_string(g.batch);
  if (!check_len(env, "a", a.ElementLength(), g.batch, g.strideA, static_cast<double>(g.m) * g.k,
                 mk + bs + ", strideA=" + std::to_string(g.strideA)) ||
      !check_len(env, "b", blen, g.batch, g.strideB, static_cast<double>(g.k) * g.n, kn + bs + ", strideB=" + std::to_string(g.strideB)) ||
      !check_len(env, "c", c.ElementLength(), g.batch, g.strideC, static_cast<double>(g.m) * g.n,
                 mn + bs + ", strideC=" + std::to_string(g.strideC)))
    return env.Undefined();
  if (g.batch > 1 && g.m * g.n > 0 && g.strideC < g.m * g.n) {
    throw_range(env, "gemm: strideC=" + std::to_string(g.strideC) + " makes the " + std::to_string(g.batch) +
                         " outputs overlap (needs >= m*n = " + std::to_string(g.m * g.n) + ")");
    return env.Undefined();
  }
  g.a = a.Data();
  g.c = c.Data();
  gemm_run(g);
  return env.Undefined();
}

Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double threads = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 1;
  double ms = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 200;
  if (!(threads >= 1 && threads <= 1024) || threads != std::floor(threads)) {
    throw_range(env, "fmaPeak: threads must be an integer in [1, 1024], got " + num_str(threads));
    return env.Undefined();
  }
  if (!(ms > 0 && ms <= 60000)) {
    throw_range(env, "fmaPeak: ms must be in (0, 60000], got " + num_str(ms));
    return env.Undefined();
  }
  return Napi::Number::New(env, fma_peak_gflops(static_cast<int>(threads), ms));
}

Napi::Value CpuFeaturesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpu_features();
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", cpu_path_name(cpu_path()));
  o.Set("best", cpu_path_name(cpu_best_path()));
#if defined(__x86_64__)
  o.Set("arch", "x86_64");
#elif defined(__aarch64__)
  o.Set("arch", "arm64");
#else
  o.Set("arch", "other");
#endif
  o.Set("vendor", f.intel ? "intel" : f.amd ? "amd" : "other");
  o.Set("avx2", f.avx2);
  o.Set("fma", f.fma);
  o.Set("avx512f", f.avx512f);
  o.Set("avx512bw", f.avx512bw);
  o.Set("avx512vl", f.avx512vl);
  o.Set("avx512dq", f.avx512dq);
  o.Set("avx512bf16", f.avx512bf16);
  o.Set("avx512vbmi", f.avx512vbmi);
  o.Set("vbmi", cpu_vbmi());
  o.Set("threads", num_threads());
  return o;
}

}  // namespace

void RegisterGemm(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
  exports.Set("fmaPeak", Napi::Function::New(env, FmaPeak, "fmaPeak"));
  exports.Set("cpuFeatures", Napi::Function::New(env, CpuFeaturesJs, "cpuFeatures"));
}

}  // namespace lorakit
