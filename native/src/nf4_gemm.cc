// NF4 (bitsandbytes 4-bit NormalFloat) kernels: dequantisation of a slice of a packed
// weight, and the fused GEMM whose packing step dequantises a KC×NR panel of W into a
// thread-local buffer (the full-precision W never exists). Exports:
//   nf4Dequant(packed u8, scales f32, blocksize, qmap f32[16], start, count, out f32)
//     out[j] = qmap[code(start+j)] · scales[(start+j)/blocksize]
//   nf4Scales(q u8, code f32[256], nestedAbsmax f32, nestedBlocksize, offset, out f32)
//     out[b] = f32(code[q[b]] · nestedAbsmax[b/nestedBlocksize]) + offset  (double quant)
//   nf4Gemm(backward, rows, in, out, a f32, packed u8, scales f32, blocksize, qmap f32[16], c f32, beta)
//     forward:  c[rows, out] (+)= a[rows, in] · Wᵀ;  backward: c[rows, in] (+)= a[rows, out] · W
// W is [out, in] row-major, flat element i's code in byte i/2 (high nibble for even i).
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cpu.h"
#include "napi_args.h"
#include "nf4_packed.h"
#include "register.h"
#include "threadpool.h"

namespace lorakit {
namespace {

struct Nf4Problem {
  bool backward = false;
  int64_t rows = 0, in = 0, out = 0;
  const float* a = nullptr;
  const uint8_t* packed = nullptr;
  const float* scales = nullptr;
  int64_t blocksize = 64;
  const float* qmap = nullptr;
  float* c = nullptr;
  float beta = 0.f;
};

float* nf4_scratch(size_t count) {
  thread_local float* buf = nullptr;
  thread_local size_t cap = 0;
  if (cap < count) {
    std::free(buf);
    buf = static_cast<float*>(std::aligned_alloc(64, ((count * sizeof(float) + 63) / 64) * 64));
    cap = count;
  }
  return buf;
}

namespace portable {
#define NF4_VW 4
#include "nf4_gemm_kernel.inc.h"
#undef NF4_VW
}  // namespace portable

#if defined(__x86_64__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace avx2 {
#define NF4_VW 8
#include "nf4_gemm_kernel.inc.h"
#undef NF4_VW
#include "nf4_gemv.inc.h"
}  // namespace avx2
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
#endif
namespace avx512 {
#define NF4_VW 16
#include "nf4_gemm_kernel.inc.h"
#undef NF4_VW
}  // namespace avx512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

void nf4_gemm_run(const Nf4Problem& p) {
  const int64_t ncols = p.backward ? p.in : p.out;
#if defined(__x86_64__)
  // Decode-sized products read the codes in place (nf4_gemv.inc.h), split by columns.
  if ((cpu_path() == CpuPath::Avx2 || cpu_path() == CpuPath::Avx512) && avx2::nf4gemv::applies(p)) {
    const int64_t units = (ncols + 63) / 64;
    parallel_for(units, 1, [&](int64_t b, int64_t e) {
      avx2::nf4gemv::run(p, b * 64, e * 64 < ncols ? e * 64 : ncols);
    });
    return;
  }
#endif
  using Fn = void (*)(const Nf4Problem&, int64_t, int64_t);
  Fn fn = portable::run_panels;
  int64_t nr = 2 * 4;
#if defined(__x86_64__)
  const CpuPath path = cpu_path();
  if (path == CpuPath::Avx512) {
    fn = avx512::run_panels;
    nr = 32;
  } else if (path == CpuPath::Avx2) {
    fn = avx2::run_panels;
    nr = 16;
  }
#endif
  const int64_t panels = (ncols + nr - 1) / nr;
  parallel_for(panels, 1, [&](int64_t b, int64_t e) { fn(p, b, e); });
}

Napi::Value Nf4Dequant(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "nf4Dequant";
  if (info.Length() < 7) return fail(env, "nf4Dequant: expected 7 arguments"), env.Undefined();
  const uint8_t* packed;
  const float *scales, *qmap;
  float* out;
  size_t lp, ls, lq, lo;
  int64_t bs, start, count;
  if (!get_arr(info, 0, napi_uint8_array, fn, "packed", packed, lp) ||
      !get_arr(info, 1, napi_float32_array, fn, "scales", scales, ls) || !get_int(info, 2, fn, "blocksize", bs) ||
      !get_arr(info, 3, napi_float32_array, fn, "qmap", qmap, lq) || !get_int(info, 4, fn, "start", start) ||
      !get_int(info, 5, fn, "count", count) || !get_arr(info, 6, napi_float32_array, fn, "out", out, lo))
    return env.Undefined();
  if (bs <= 0 || lq < 16 || static_cast<int64_t>(lo) < count || static_cast<int64_t>(lp) * 2 < start + count ||
      (count > 0 && static_cast<int64_t>(ls) <= (start + count - 1) / bs))
    return fail(env, "nf4Dequant: a buffer is too short for the requested range", true), env.Undefined();
  parallel_for(count, 16384, [&](int64_t b, int64_t e) {
    int64_t j = b;
    while (j < e) {
      const int64_t i0 = start + j;
      const int64_t blk = i0 / bs;
      const int64_t left = (blk + 1) * bs - i0;
      const int64_t run = left < e - j ? left : e - j;
      const float s = scales[blk];
      for (int64_t u = 0; u < run; u++) {
        const int64_t i = i0 + u;
        const uint8_t byte = packed[i >> 1];
        const int code = (i & 1) ? (byte & 15) : (byte >> 4);
        out[j + u] = qmap[code] * s;
      }
      j += run;
    }
  });
  return env.Undefined();
}

// f32(code·absmax2) + offset with two roundings (no FMA contraction), as bitsandbytes does.
float nested_scale(float code, float absmax2, float offset) {
  volatile float t = code * absmax2;
  return t + offset;
}

Napi::Value Nf4Scales(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "nf4Scales";
  if (info.Length() < 6) return fail(env, "nf4Scales: expected 6 arguments"), env.Undefined();
  const uint8_t* q;
  const float *code, *nested;
  float* out;
  size_t lq, lc, ln, lo;
  int64_t nbs;
  if (!get_arr(info, 0, napi_uint8_array, fn, "q", q, lq) ||
      !get_arr(info, 1, napi_float32_array, fn, "code", code, lc) ||
      !get_arr(info, 2, napi_float32_array, fn, "nestedAbsmax", nested, ln) ||
      !get_int(info, 3, fn, "nestedBlocksize", nbs) || !info[4].IsNumber() ||
      !get_arr(info, 5, napi_float32_array, fn, "out", out, lo))
    return env.Undefined();
  const float offset = static_cast<float>(info[4].As<Napi::Number>().DoubleValue());
  if (nbs <= 0 || lc < 256 || lo < lq || (lq > 0 && ln <= (lq - 1) / static_cast<size_t>(nbs)))
    return fail(env, "nf4Scales: a buffer is too short", true), env.Undefined();
  for (size_t b = 0; b < lq; b++) out[b] = nested_scale(code[q[b]], nested[b / nbs], offset);
  return env.Undefined();
}

Napi::Value Nf4Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "nf4Gemm";
  if (info.Length() < 11) return fail(env, "nf4Gemm: expected 11 arguments"), env.Undefined();
  Nf4Problem p;
  p.backward = info[0].ToBoolean().Value();
  size_t la, lp, ls, lq, lc;
  const float* a;
  float* c;
  if (!get_int(info, 1, fn, "rows", p.rows) || !get_int(info, 2, fn, "in", p.in) ||
      !get_int(info, 3, fn, "out", p.out) || !get_arr(info, 4, napi_float32_array, fn, "a", a, la) ||
      !get_arr(info, 5, napi_uint8_array, fn, "packed", p.packed, lp) ||
      !get_arr(info, 6, napi_float32_array, fn, "scales", p.scales, ls) ||
      !get_int(info, 7, fn, "blocksize", p.blocksize) ||
      !get_arr(info, 8, napi_float32_array, fn, "qmap", p.qmap, lq) ||
      !get_arr(info, 9, napi_float32_array, fn, "c", c, lc) || !info[10].IsNumber())
    return env.Undefined();
  p.a = a;
  p.c = c;
  p.beta = static_cast<float>(info[10].As<Napi::Number>().DoubleValue());
  const int64_t K = p.backward ? p.out : p.in;
  const int64_t Nc = p.backward ? p.in : p.out;
  const int64_t numel = p.in * p.out;
  if (p.blocksize <= 0 || lq < 16 || static_cast<int64_t>(la) < p.rows * K ||
      static_cast<int64_t>(lc) < p.rows * Nc || static_cast<int64_t>(lp) * 2 < numel ||
      (numel > 0 && static_cast<int64_t>(ls) <= (numel - 1) / p.blocksize))
    return fail(env, "nf4Gemm: a buffer is too short for the sizes given", true), env.Undefined();
  if (p.rows == 0 || Nc == 0) return env.Undefined();
  if (K == 0) {
    if (p.beta == 0.f)
      for (int64_t i = 0; i < p.rows * Nc; i++) c[i] = 0.f;
    return env.Undefined();
  }
  nf4_gemm_run(p);
  return env.Undefined();
}

}  // namespace

void RegisterNf4(Napi::Env env, Napi::Object exports) {
  exports.Set("nf4Dequant", Napi::Function::New(env, Nf4Dequant));
  exports.Set("nf4Scales", Napi::Function::New(env, Nf4Scales));
  exports.Set("nf4Gemm", Napi::Function::New(env, Nf4Gemm));
  RegisterNf4Packed(env, exports);
}

}  // namespace lorakit
