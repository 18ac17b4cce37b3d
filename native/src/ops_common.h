// Shared pieces of the element-wise / fused kernels (ops_*.cc): argument checking that
// turns bad calls into JavaScript errors, thread-split helpers, and the table of
// ISA-specific hot kernels (AVX-512, AVX2+FMA, portable; emu16 for tests) chosen at run time.
#pragma once
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "threadpool.h"

namespace lorakit {
namespace ops {

// ---------------------------------------------------------------------------------------
// Argument checking. Kernels throw ArgError before touching any memory; the export
// wrapper (Wrap) turns it into a JavaScript exception.

struct ArgError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct F32 {
  float* p = nullptr;
  int64_t n = 0;
  explicit operator bool() const { return p != nullptr; }
};

struct Args {
  const Napi::CallbackInfo& info;
  const char* op;

  [[noreturn]] void fail(const std::string& msg) const { throw ArgError(std::string(op) + ": " + msg); }

  F32 f32(size_t i, const char* name) const {
    Napi::Value v = info[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      fail(std::string(name) + " must be a Float32Array");
    auto a = v.As<Napi::Float32Array>();
    return F32{a.Data(), static_cast<int64_t>(a.ElementLength())};
  }
  // True when argument i is a Uint16Array (bf16 bit patterns where an op accepts them).
  bool is_u16(size_t i) const {
    Napi::Value v = info[i];
    return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
  }
  const uint16_t* u16(size_t i, const char* name, int64_t need) const {
    if (!is_u16(i)) fail(std::string(name) + " must be a Uint16Array");
    auto a = info[i].As<Napi::Uint16Array>();
    if (static_cast<int64_t>(a.ElementLength()) < need)
      fail(std::string(name) + " has " + std::to_string(a.ElementLength()) + " elements, needs " +
           std::to_string(need));
    return a.Data();
  }
  // A Float32Array, or {nullptr, 0} for null/undefined.
  F32 f32_opt(size_t i, const char* name) const {
    Napi::Value v = info[i];
    if (v.IsNull() || v.IsUndefined()) return F32{};
    return f32(i, name);
  }
  const int32_t* i32(size_t i, const char* name, int64_t need) const {
    Napi::Value v = info[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      fail(std::string(name) + " must be an Int32Array");
    auto a = v.As<Napi::Int32Array>();
    if (static_cast<int64_t>(a.ElementLength()) < need)
      fail(std::string(name) + " has " + std::to_string(a.ElementLength()) + " elements, needs " +
           std::to_string(need));
    return a.Data();
  }
  const uint8_t* u8(size_t i, const char* name, int64_t need) const {
    Napi::Value v = info[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      fail(std::string(name) + " must be a Uint8Array");
    auto a = v.As<Napi::Uint8Array>();
    if (static_cast<int64_t>(a.ElementLength()) < need)
      fail(std::string(name) + " has " + std::to_string(a.ElementLength()) + " elements, needs " +
           std::to_string(need));
    return a.Data();
  }
  double num(size_t i, const char* name) const {
    Napi::Value v = info[i];
    if (!v.IsNumber()) fail(std::string(name) + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }
  // A non-negative integer size (or index) that fits comfortably in int64.
  int64_t size(size_t i, const char* name) const {
    double d = num(i, name);
    if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<int64_t>(d)))
      fail(std::string(name) + " must be a non-negative integer, got " + std::to_string(d));
    return static_cast<int64_t>(d);
  }
  int64_t integer(size_t i, const char* name) const {
    double d = num(i, name);
    if (!(d >= -9007199254740991.0 && d <= 9007199254740991.0) ||
        d != static_cast<double>(static_cast<int64_t>(d)))
      fail(std::string(name) + " must be an integer");
    return static_cast<int64_t>(d);
  }
  bool flag(size_t i) const { return info[i].ToBoolean().Value(); }
  std::vector<int64_t> dims(size_t i, const char* name) const {
    Napi::Value v = info[i];
    if (!v.IsArray()) fail(std::string(name) + " must be an array of sizes");
    auto a = v.As<Napi::Array>();
    std::vector<int64_t> out(a.Length());
    for (uint32_t k = 0; k < a.Length(); k++) {
      Napi::Value e = a.Get(k);
      if (!e.IsNumber()) fail(std::string(name) + " must hold numbers");
      double d = e.As<Napi::Number>().DoubleValue();
      if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<int64_t>(d)))
        fail(std::string(name) + " must hold non-negative integers");
      out[k] = static_cast<int64_t>(d);
    }
    return out;
  }
  void need(const F32& a, int64_t n, const char* name) const {
    if (a.n < n)
      fail(std::string(name) + " has " + std::to_string(a.n) + " elements, needs " + std::to_string(n));
  }
};

// Checked product of sizes (throws on overflow past 2^53).
inline int64_t checked_mul(const Args& A, int64_t a, int64_t b) {
  if (a != 0 && b > 9007199254740991LL / a) A.fail("sizes overflow");
  return a * b;
}

using KernelFn = void (*)(const Args&);

template <KernelFn F>
Napi::Value Wrap(const Napi::CallbackInfo& info) {
  try {
    const char* name = static_cast<const char*>(info.Data());
    F(Args{info, name ? name : "lorakit native"});
  } catch (const ArgError& e) {
    Napi::RangeError::New(info.Env(), e.what()).ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    Napi::Error::New(info.Env(), e.what()).ThrowAsJavaScriptException();
  }
  return info.Env().Undefined();
}

// exports[name] = the wrapped kernel (its name prefixes every error message).
template <KernelFn F>
void Export(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New(env, Wrap<F>, name, const_cast<char*>(name)));
}

// ---------------------------------------------------------------------------------------
// Threading. Work below `grain` items per chunk stays on the calling thread.

constexpr int64_t kGrainCheap = 1 << 16;  // memory-bound element-wise work (elements)
constexpr int64_t kGrainMath = 1 << 13;   // exp/tanh/erf-bound work (elements)

// Rows per chunk so that a chunk holds at least `elems` elements.
inline int64_t row_grain(int64_t cols, int64_t elems) {
  if (cols <= 0) return 1 << 20;
  int64_t g = elems / cols;
  return g < 1 ? 1 : g;
}

// Splits [0, n) into at most num_threads() chunks of at least `grain` items and calls
// fn(chunk, begin, end) for each, chunk ids 0..count-1; returns count. For kernels that
// keep per-chunk partial results (reduced afterwards in chunk order, deterministically).
template <class F>
int64_t parallel_chunks(int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return 0;
  if (grain < 1) grain = 1;
  int64_t nc = std::min<int64_t>((n + grain - 1) / grain, num_threads());
  if (nc < 1) nc = 1;
  if (nc == 1) {
    fn(int64_t{0}, int64_t{0}, n);
    return 1;
  }
  parallel_for(nc, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) fn(c, n * c / nc, n * (c + 1) / nc);
  });
  return nc;
}

// Calls fn(item, worker) for items 0..n-1 dealt round-robin to the workers (better
// balance than contiguous chunks when item costs fall or rise along the range, as in
// causal attention). `parallel` false runs everything on the caller as worker 0.
// Returns the number of workers used.
template <class F>
int64_t parallel_items(int64_t n, bool parallel, F&& fn) {
  if (n <= 0) return 0;
  int64_t nw = parallel ? std::min<int64_t>(n, num_threads()) : 1;
  if (nw <= 1) {
    for (int64_t i = 0; i < n; i++) fn(i, int64_t{0});
    return 1;
  }
  parallel_for(nw, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; w++)
      for (int64_t i = w; i < n; i += nw) fn(i, w);
  });
  return nw;
}

// ---------------------------------------------------------------------------------------
// The ISA-specific hot kernels (ops_simd_*.cc, all generated from ops_kernels_impl.h).

struct AttnArgs {
  const float* q;
  const float* k;
  const float* v;
  // Forward only: when set, k and v are bf16 bit patterns (a KV cache kept in bf16) read
  // through these instead of k and v, widened exactly to f32 tile by tile.
  const uint16_t* k16;
  const uint16_t* v16;
  const float* out;   // backward only
  const float* lse;   // backward reads; forward writes through lse_out
  const float* dout;  // backward only
  const float* di;    // backward: rowsum(dout ⊙ out), laid out like lse (B,H,T)
  float* out_w;       // forward output
  float* lse_w;       // forward lse output
  int64_t B, T, S, H, Hkv, D, kvCap, offset;
  float scale;
  bool causal;
};

struct Kernels {
  const char* name;
  void (*exp_arr)(const float* x, float* y, int64_t n);
  void (*sigmoid_arr)(const float* x, float* y, int64_t n);
  void (*silu_arr)(const float* x, float* y, int64_t n);
  void (*silu_bwd)(const float* x, const float* dy, float* dx, int64_t n, bool acc);
  void (*silu_mul)(const float* g, const float* u, float* o, int64_t n);
  void (*silu_mul_bwd)(const float* g, const float* u, const float* dy, float* dg, float* du, int64_t n,
                       bool acc);
  void (*softmax_rows)(const float* x, float* y, int64_t rows, int64_t C);
  void (*log_softmax_rows)(const float* x, float* y, int64_t rows, int64_t C);
  void (*softmax_bwd_rows)(const float* y, const float* dy, float* dx, int64_t rows, int64_t C, bool acc);
  void (*log_softmax_bwd_rows)(const float* y, const float* dy, float* dx, int64_t rows, int64_t C, bool acc);
  // Per row: lse = log Σ exp(x); loss = lse − x[target] (0 when ignored).
  void (*ce_rows)(const float* x, const int32_t* tgt, int64_t rows, int64_t V, int32_t ignore, float* loss,
                  float* lse);
  void (*ce_bwd_rows)(const float* x, const int32_t* tgt, const float* lse, const float* gs, int64_t rows,
                      int64_t V, int32_t ignore, float* dx, bool acc);
  void (*adamw)(float* p, const float* g, float* m, float* v, int64_t n, float b1, float b2, float step_size,
                float inv_sqrt_bc2, float eps, float decay);
  // Forward for query rows [t0, t1) of head h of batch b.
  // Queries [t0, t1) of every query head sharing KV head g (GQA), batch b.
  void (*attn_fwd)(const AttnArgs& a, int64_t b, int64_t g, int64_t t0, int64_t t1);
  // Backward for keys [s0, s1) of kv head g of batch b: adds into dk, dv rows s0..s1 and
  // into dq (all query heads of group g).
  void (*attn_bwd)(const AttnArgs& a, int64_t b, int64_t g, int64_t s0, int64_t s1, float* dq, float* dk,
                   float* dv);
};

const Kernels& kernels();           // the active table
const char* isa_name();             // "avx512" | "avx2" | "portable" | "emu16"
// Forces a level (clamped to what the CPU has; "emu16", the test-only 16-lane emulation,
// runs anywhere); returns the active one.
const char* set_isa(const char* s);

extern const Kernels kKernelsPortable;
extern const Kernels kKernelsEmu16;  // ops_simd_emu16.cc: AVX-512's V emulated in plain C++
#if defined(__x86_64__)
extern const Kernels kKernelsAvx2;
extern const Kernels kKernelsAvx512;
#endif

// Attention tile sizes shared by every ISA.
constexpr int64_t kAttnBq = 32;  // query rows per forward work item
constexpr int64_t kAttnBk = 64;  // keys per tile

// Registration of each family (ops_register.cc calls them all).
void RegisterElementwise(Napi::Env env, Napi::Object exports);
void RegisterReduce(Napi::Env env, Napi::Object exports);
void RegisterLayout(Napi::Env env, Napi::Object exports);
void RegisterNN(Napi::Env env, Napi::Object exports);
void RegisterAttention(Napi::Env env, Napi::Object exports);
void RegisterOptim(Napi::Env env, Napi::Object exports);

}  // namespace ops
}  // namespace lorakit
