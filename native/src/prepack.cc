// Prepacked frozen weights (layout in prepack_internal.h). Exports:
//   prepackLayout() → { panel, slice } where this CPU has the kernels, else null
//   prepackWeight(w, n, k, out)          W (n×k row-major) → panels; w, out both Float32Array
//                                        or both Uint16Array (bf16), out packedElements long
//   unpackWeight(packed, n, k, out)      the inverse: panels → row-major W, bit for bit
//   gatherPackedRows(packed, n, k, ids, out)  rows ids of W widened to f32 (ids.length×k):
//                                        an embedding table tied to a packed output layer
//   gemmPacked(m, n, k, a, packed, c, alpha, beta)   c (m×n) = alpha·a (m×k)·Wᵀ + beta·c
//     (beta 0 never reads c). ≤ 8 rows stream the panels split by output columns over the
//     thread pool; more rows go through the 6×16 packed GEMM, split like gemm_run. Every
//     element equals the row-major GEMM's (the same FMA order), bit for bit.
//   gemmPackedShared(m, k, a, ws, ns, cs, alphas, betas)   several products of one input a
//     (a layer's q/k/v or gate/up projections): cs[i] (m×ns[i]) = alphas[i]·a·Wᵢᵀ + betas[i]·cs[i],
//     each exactly as gemmPacked computes it. ≤ 8 rows: one pool dispatch over all their
//     columns together (a small product such as k_proj no longer runs on one thread while
//     the others wait for the next call); more rows: one gemmPacked after another.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cpu.h"
#include "prepack_internal.h"
#include "register.h"
#include "threadpool.h"

namespace lorakit {

bool prepack_supported() {
#if defined(__x86_64__)
  return cpu_path() == CpuPath::Avx2 || cpu_path() == CpuPath::Avx512;
#else
  return false;
#endif
}

namespace {

// Offset of W[j][p] in the panels of element type T.
template <class T>
inline int64_t packed_offset(int64_t npad, int64_t k, int64_t j, int64_t p) {
  const int64_t pc = p / kPackSlice * kPackSlice;
  const int64_t kc = std::min(kPackSlice, k - pc);
  return pc * npad + (j / kPackPanel) * kc * kPackPanel + (p - pc) * kPackPanel + packed_lane<T>(j % kPackPanel);
}

// Panels [q0, q1) of every slice from the row-major W (rows past n are zeros), or back.
template <class T, bool PACK>
void convert_panels(T* packed, T* rowmajor, int64_t n, int64_t k, int64_t q0, int64_t q1) {
  const int64_t npad = packed_npad(n);
  for (int64_t pc = 0; pc < k; pc += kPackSlice) {
    const int64_t kc = std::min(kPackSlice, k - pc);
    for (int64_t q = q0; q < q1; q++) {
      T* panel = packed + pc * npad + q * kc * kPackPanel;
      for (int64_t jc = 0; jc < kPackPanel; jc++) {
        const int64_t j = q * kPackPanel + jc;
        const int64_t jj = packed_lane<T>(jc);
        if (j >= n) {
          if (PACK)
            for (int64_t p = 0; p < kc; p++) panel[p * kPackPanel + jj] = T(0);
          continue;
        }
        T* row = rowmajor + j * k + pc;
        if (PACK)
          for (int64_t p = 0; p < kc; p++) panel[p * kPackPanel + jj] = row[p];
        else
          for (int64_t p = 0; p < kc; p++) row[p] = panel[p * kPackPanel + jj];
      }
    }
  }
}

template <class T, bool PACK>
void convert_all(T* packed, T* rowmajor, int64_t n, int64_t k) {
  const int64_t panels = packed_npad(n) / kPackPanel;
  // ~64 KiB of W per task at least: packing is a memory-bound copy.
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, k));
  parallel_for(panels, grain, [&](int64_t q0, int64_t q1) { convert_panels<T, PACK>(packed, rowmajor, n, k, q0, q1); });
}

inline float widen(float x) { return x; }
inline float widen(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <class T>
void gather_rows(const T* packed, int64_t n, int64_t k, const int32_t* ids, int64_t count, float* out) {
  const int64_t npad = packed_npad(n);
  for (int64_t r = 0; r < count; r++)
    for (int64_t p = 0; p < k; p++) out[r * k + p] = widen(packed[packed_offset<T>(npad, k, ids[r], p)]);
}

// Below this many weight bytes a decode product stays on one thread (a pool task costs a few
// µs; 256 KiB stream in ~10 µs), and below kMinFmaPerThread multiply-adds per thread a larger
// product does (gemm_core.cc says why 1e6). Column splits are whole groups of 4 panels.
constexpr double kMinBytesPerThread = 256 * 1024;
constexpr double kMinFmaPerThread = 1.0e6;
constexpr int64_t kColUnit = 64, kRowUnit = 24;

void scale_only(const PackedProduct& g) {
  for (int64_t i = 0; i < g.m * g.n; i++) g.c[i] = g.beta == 0.f ? 0.f : g.c[i] * g.beta;
}

#if defined(__x86_64__)
// The decode kernel for g: AVX-512's where the CPU has it (2–8 rows, or one bf16 row), else AVX2's.
void decode_cols(const PackedProduct& g, int64_t j0, int64_t j1) {
  if ((g.m >= 2 || g.bf16) && cpu_path() == CpuPath::Avx512)
    packed_decode_avx512(g, j0, j1);
  else
    packed_decode_avx2(g, j0, j1);
}
#endif

void run_packed(const PackedProduct& g) {
  if (g.m <= 0 || g.n <= 0) return;
  if (g.k <= 0 || g.alpha == 0.f) {
    if (g.beta != 1.f) scale_only(g);
    return;
  }
#if defined(__x86_64__)
  const int nt = num_threads();
  const int64_t units = (g.n + kColUnit - 1) / kColUnit;
  auto split_cols = [&](int64_t parts, auto&& fn) {
    if (parts <= 1) return fn(int64_t{0}, g.n);
    parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; p++) {
        const int64_t s = std::min(g.n, units * p / parts * kColUnit);
        const int64_t e = std::min(g.n, units * (p + 1) / parts * kColUnit);
        if (s < e) fn(s, e);
      }
    });
  };
  if (g.m <= kGemvMaxRows) {
    const double bytes = static_cast<double>(g.n) * g.k * (g.bf16 ? 2 : 4);
    const int64_t parts = std::min<int64_t>(
        {static_cast<int64_t>(nt), units, std::max<int64_t>(1, static_cast<int64_t>(bytes / kMinBytesPerThread))});
    split_cols(parts, [&](int64_t j0, int64_t j1) { decode_cols(g, j0, j1); });
    return;
  }
  // Prefill: the widest packed kernel this CPU has (column splits are multiples of 64).
  auto gemm_fn = cpu_path() == CpuPath::Avx512 ? packed_gemm_avx512 : packed_gemm_avx2;
  const double fma = static_cast<double>(g.m) * g.n * g.k;
  const int64_t want = static_cast<int64_t>(std::max(1.0, std::min<double>(nt, fma / kMinFmaPerThread)));
  const bool by_rows = g.m >= g.n || g.n <= 48;
  if (!by_rows || want <= 1) {
    split_cols(std::min(want, units), [&](int64_t j0, int64_t j1) { gemm_fn(g, 0, g.m, j0, j1); });
    return;
  }
  const int64_t rows = (g.m + kRowUnit - 1) / kRowUnit;
  const int64_t parts = std::min(want, rows);
  parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      const int64_t s = std::min(g.m, rows * p / parts * kRowUnit);
      const int64_t e = std::min(g.m, rows * (p + 1) / parts * kRowUnit);
      if (s < e) gemm_fn(g, s, e, 0, g.n);
    }
  });
#endif
}

// Several one-input products (decode: m ≤ 8) with their columns split over the pool together,
// in the same 64-column units run_packed uses within each product: every element is computed
// by decode_cols as when the product runs alone.
void run_packed_shared(const std::vector<PackedProduct>& gs) {
  std::vector<PackedProduct> live;
  for (const auto& g : gs) {
    if (g.m <= 0 || g.n <= 0) continue;
    if (g.k <= 0 || g.alpha == 0.f || g.m > kGemvMaxRows)
      run_packed(g);
    else
      live.push_back(g);
  }
  if (live.empty()) return;
#if defined(__x86_64__)
  std::vector<int64_t> first(live.size() + 1, 0);  // each product's first unit in the shared range
  double bytes = 0;
  for (size_t i = 0; i < live.size(); i++) {
    first[i + 1] = first[i] + (live[i].n + kColUnit - 1) / kColUnit;
    bytes += static_cast<double>(live[i].n) * live[i].k * (live[i].bf16 ? 2 : 4);
  }
  const int64_t units = first.back();
  const int64_t parts = std::min<int64_t>(
      {static_cast<int64_t>(num_threads()), units, std::max<int64_t>(1, static_cast<int64_t>(bytes / kMinBytesPerThread))});
  auto run_units = [&](int64_t u0, int64_t u1) {
    for (size_t i = 0; i < live.size(); i++) {
      const int64_t s = std::max(u0, first[i]) - first[i], e = std::min(u1, first[i + 1]) - first[i];
      if (s < e) decode_cols(live[i], s * kColUnit, std::min(live[i].n, e * kColUnit));
    }
  };
  if (parts <= 1) return run_units(0, units);
  parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) run_units(units * p / parts, units * (p + 1) / parts);
  });
#endif
}

// ---- N-API

bool fail(Napi::Env env, const std::string& msg, bool type = false) {
  if (type)
    Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  else
    Napi::RangeError::New(env, msg).ThrowAsJavaScriptException();
  return false;
}

bool get_int(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int64_t& out) {
  if (!info[i].IsNumber()) return fail(info.Env(), std::string(fn) + ": " + name + " must be a number", true);
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != std::floor(v) || v > 4294967296.0 * 65536.0)
    return fail(info.Env(), std::string(fn) + ": " + name + " must be a non-negative integer");
  out = static_cast<int64_t>(v);
  return true;
}

// A Float32Array (bf16 false) or Uint16Array (bf16 true) argument of at least `need` elements.
bool get_weight(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int bf16, double need,
                void*& data, bool& is_bf16) {
  Napi::Env env = info.Env();
  if (!info[i].IsTypedArray()) return fail(env, std::string(fn) + ": " + name + " must be a typed array", true);
  auto ta = info[i].As<Napi::TypedArray>();
  const auto type = ta.TypedArrayType();
  if (type != napi_float32_array && type != napi_uint16_array)
    return fail(env, std::string(fn) + ": " + name + " must be a Float32Array or a Uint16Array of bf16 values", true);
  is_bf16 = type == napi_uint16_array;
  if (bf16 >= 0 && is_bf16 != (bf16 == 1))
    return fail(env, std::string(fn) + ": " + name + " must have the weight's element type", true);
  if (static_cast<double>(ta.ElementLength()) < need)
    return fail(env, std::string(fn) + ": " + name + " has " + std::to_string(ta.ElementLength()) +
                         " elements, needs " + std::to_string(static_cast<long long>(need)));
  data = static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  return true;
}

bool get_f32(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, double need, float*& out) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    return fail(info.Env(), std::string(fn) + ": " + name + " must be a Float32Array", true);
  auto a = info[i].As<Napi::Float32Array>();
  if (static_cast<double>(a.ElementLength()) < need)
    return fail(info.Env(), std::string(fn) + ": " + name + " has " + std::to_string(a.ElementLength()) +
                                " elements, needs " + std::to_string(static_cast<long long>(need)));
  out = a.Data();
  return true;
}

Napi::Value PrepackLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!prepack_supported()) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("panel", static_cast<double>(kPackPanel));
  o.Set("slice", static_cast<double>(kPackSlice));
  return o;
}

// prepackWeight(w, n, k, out) and unpackWeight(packed, n, k, out).
template <bool PACK>
Napi::Value Convert(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = PACK ? "prepackWeight" : "unpackWeight";
  int64_t n = 0, k = 0;
  if (info.Length() < 4) {
    fail(env, std::string(fn) + "(src, n, k, out): expected 4 arguments", true);
    return env.Undefined();
  }
  if (!get_int(info, 1, fn, "n", n) || !get_int(info, 2, fn, "k", k)) return env.Undefined();
  const double rowmajor = static_cast<double>(n) * k, packed = static_cast<double>(packed_elements(n, k));
  void* src = nullptr;
  void* dst = nullptr;
  bool bf16 = false, bf16out = false;
  if (!get_weight(info, 0, fn, PACK ? "w" : "packed", -1, PACK ? rowmajor : packed, src, bf16) ||
      !get_weight(info, 3, fn, "out", bf16 ? 1 : 0, PACK ? packed : rowmajor, dst, bf16out))
    return env.Undefined();
  if (bf16) {
    auto* s = static_cast<uint16_t*>(src);
    auto* d = static_cast<uint16_t*>(dst);
    if (PACK)
      convert_all<uint16_t, true>(d, s, n, k);
    else
      convert_all<uint16_t, false>(s, d, n, k);
  } else {
    auto* s = static_cast<float*>(src);
    auto* d = static_cast<float*>(dst);
    if (PACK)
      convert_all<float, true>(d, s, n, k);
    else
      convert_all<float, false>(s, d, n, k);
  }
  return env.Undefined();
}

Napi::Value GatherPackedRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "gatherPackedRows";
  int64_t n = 0, k = 0;
  if (info.Length() < 5) {
    fail(env, "gatherPackedRows(packed, n, k, ids, out): expected 5 arguments", true);
    return env.Undefined();
  }
  if (!get_int(info, 1, fn, "n", n) || !get_int(info, 2, fn, "k", k)) return env.Undefined();
  void* packed = nullptr;
  bool bf16 = false;
  if (!get_weight(info, 0, fn, "packed", -1, static_cast<double>(packed_elements(n, k)), packed, bf16))
    return env.Undefined();
  if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    fail(env, "gatherPackedRows: ids must be an Int32Array", true);
    return env.Undefined();
  }
  auto ids = info[3].As<Napi::Int32Array>();
  const int64_t count = static_cast<int64_t>(ids.ElementLength());
  const int32_t* id = ids.Data();
  for (int64_t r = 0; r < count; r++)
    if (id[r] < 0 || id[r] >= n) {
      fail(env, "gatherPackedRows: id " + std::to_string(id[r]) + " is outside [0, " + std::to_string(n) + ")");
      return env.Undefined();
    }
  float* out = nullptr;
  if (!get_f32(info, 4, fn, "out", static_cast<double>(count) * k, out)) return env.Undefined();
  if (bf16)
    gather_rows(static_cast<const uint16_t*>(packed), n, k, id, count, out);
  else
    gather_rows(static_cast<const float*>(packed), n, k, id, count, out);
  return env.Undefined();
}

Napi::Value GemmPacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "gemmPacked";
  if (info.Length() < 8) {
    fail(env, "gemmPacked(m, n, k, a, packed, c, alpha, beta): expected 8 arguments", true);
    return env.Undefined();
  }
  if (!prepack_supported()) {
    fail(env, "gemmPacked: this CPU has no prepacked kernels (prepackLayout() is null)");
    return env.Undefined();
  }
  PackedProduct g;
  if (!get_int(info, 0, fn, "m", g.m) || !get_int(info, 1, fn, "n", g.n) || !get_int(info, 2, fn, "k", g.k))
    return env.Undefined();
  if (!info[6].IsNumber() || !info[7].IsNumber()) {
    fail(env, "gemmPacked: alpha and beta must be numbers", true);
    return env.Undefined();
  }
  g.alpha = static_cast<float>(info[6].As<Napi::Number>().DoubleValue());
  g.beta = static_cast<float>(info[7].As<Napi::Number>().DoubleValue());
  float* a = nullptr;
  float* c = nullptr;
  void* w = nullptr;
  if (!get_f32(info, 3, fn, "a", static_cast<double>(g.m) * g.k, a) ||
      !get_weight(info, 4, fn, "packed", -1, static_cast<double>(packed_elements(g.n, g.k)), w, g.bf16) ||
      !get_f32(info, 5, fn, "c", static_cast<double>(g.m) * g.n, c))
    return env.Undefined();
  g.a = a;
  g.c = c;
  g.w = w;
  run_packed(g);
  return env.Undefined();
}

// gemmPackedShared(m, k, a, ws, ns, cs, alphas, betas): ws, ns, cs, alphas, betas arrays of
// one length, ws[i] the panels of an ns[i]×k weight.
Napi::Value GemmPackedShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "gemmPackedShared";
  if (info.Length() < 8) {
    fail(env, "gemmPackedShared(m, k, a, ws, ns, cs, alphas, betas): expected 8 arguments", true);
    return env.Undefined();
  }
  if (!prepack_supported()) {
    fail(env, "gemmPackedShared: this CPU has no prepacked kernels (prepackLayout() is null)");
    return env.Undefined();
  }
  int64_t m = 0, k = 0;
  if (!get_int(info, 0, fn, "m", m) || !get_int(info, 1, fn, "k", k)) return env.Undefined();
  float* a = nullptr;
  if (!get_f32(info, 2, fn, "a", static_cast<double>(m) * k, a)) return env.Undefined();
  for (size_t i = 3; i < 8; i++)
    if (!info[i].IsArray()) {
      fail(env, "gemmPackedShared: ws, ns, cs, alphas and betas must be arrays", true);
      return env.Undefined();
    }
  const Napi::Array ws = info[3].As<Napi::Array>(), ns = info[4].As<Napi::Array>(), cs = info[5].As<Napi::Array>(),
                    alphas = info[6].As<Napi::Array>(), betas = info[7].As<Napi::Array>();
  const uint32_t count = ws.Length();
  if (ns.Length() != count || cs.Length() != count || alphas.Length() != count || betas.Length() != count) {
    fail(env, "gemmPackedShared: ws, ns, cs, alphas and betas must have one length");
    return env.Undefined();
  }
  std::vector<PackedProduct> gs(count);
  for (uint32_t i = 0; i < count; i++) {
    const std::string at = "[" + std::to_string(i) + "]";
    Napi::Value w = ws[i], n = ns[i], c = cs[i], al = alphas[i], be = betas[i];
    if (!n.IsNumber() || !al.IsNumber() || !be.IsNumber()) {
      fail(env, "gemmPackedShared: ns" + at + ", alphas" + at + " and betas" + at + " must be numbers", true);
      return env.Undefined();
    }
    const double nv = n.As<Napi::Number>().DoubleValue();
    if (!(nv >= 0) || nv != std::floor(nv) || nv > 4294967296.0 * 65536.0) {
      fail(env, "gemmPackedShared: ns" + at + " must be a non-negative integer");
      return env.Undefined();
    }
    PackedProduct& g = gs[i];
    g.m = m;
    g.k = k;
    g.n = static_cast<int64_t>(nv);
    g.a = a;
    g.alpha = static_cast<float>(al.As<Napi::Number>().DoubleValue());
    g.beta = static_cast<float>(be.As<Napi::Number>().DoubleValue());
    if (!w.IsTypedArray()) {
      fail(env, "gemmPackedShared: ws" + at + " must be a typed array", true);
      return env.Undefined();
    }
    auto wt = w.As<Napi::TypedArray>();
    if (wt.TypedArrayType() != napi_float32_array && wt.TypedArrayType() != napi_uint16_array) {
      fail(env, "gemmPackedShared: ws" + at + " must be a Float32Array or a Uint16Array of bf16 values", true);
      return env.Undefined();
    }
    if (static_cast<double>(wt.ElementLength()) < static_cast<double>(packed_elements(g.n, k))) {
      fail(env, "gemmPackedShared: ws" + at + " has " + std::to_string(wt.ElementLength()) + " elements, needs " +
                    std::to_string(static_cast<long long>(packed_elements(g.n, k))));
      return env.Undefined();
    }
    g.bf16 = wt.TypedArrayType() == napi_uint16_array;
    g.w = static_cast<char*>(wt.ArrayBuffer().Data()) + wt.ByteOffset();
    if (!c.IsTypedArray() || c.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      fail(env, "gemmPackedShared: cs" + at + " must be a Float32Array", true);
      return env.Undefined();
    }
    auto ct = c.As<Napi::Float32Array>();
    if (static_cast<double>(ct.ElementLength()) < static_cast<double>(m) * g.n) {
      fail(env, "gemmPackedShared: cs" + at + " has " + std::to_string(ct.ElementLength()) + " elements, needs " +
                    std::to_string(static_cast<long long>(m * g.n)));
      return env.Undefined();
    }
    g.c = ct.Data();
  }
  run_packed_shared(gs);
  return env.Undefined();
}

Napi::Value PackedElements(const Napi::CallbackInfo& info) {
  int64_t n = 0, k = 0;
  if (!get_int(info, 0, "packedElements", "n", n) || !get_int(info, 1, "packedElements", "k", k))
    return info.Env().Undefined();
  return Napi::Number::New(info.Env(), static_cast<double>(packed_elements(n, k)));
}

}  // namespace

void RegisterPrepack(Napi::Env env, Napi::Object exports) {
  exports.Set("prepackLayout", Napi::Function::New(env, PrepackLayout, "prepackLayout"));
  exports.Set("packedElements", Napi::Function::New(env, PackedElements, "packedElements"));
  exports.Set("prepackWeight", Napi::Function::New(env, Convert<true>, "prepackWeight"));
  exports.Set("unpackWeight", Napi::Function::New(env, Convert<false>, "unpackWeight"));
  exports.Set("gatherPackedRows", Napi::Function::New(env, GatherPackedRows, "gatherPackedRows"));
  exports.Set("gemmPacked", Napi::Function::New(env, GemmPacked, "gemmPacked"));
  exports.Set("gemmPackedShared", Napi::Function::New(env, GemmPackedShared, "gemmPackedShared"));
}

}  // namespace lorakit
