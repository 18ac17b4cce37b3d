// loraGroupedNT: the adapter half of a mixed-adapter linear layer in one call (the SGMV of
// Punica / S-LoRA). For each group g of rows that use one adapter:
//   h = s_g·x[rows]·A_gᵀ                      (rows × r)
//   y[rows] += h·B_gᵀ                         (rows × out)
// Each product goes through gemm_run with exactly the arguments the two separate gemm calls
// of the TypeScript path use, so results are bit-identical to it (and to LoraLinear's own
// forward, which serving compares against); only the N-API round trips are saved.
#include <napi.h>

#include <string>
#include <vector>

#include "gemm_internal.h"
#include "register.h"

namespace lorakit {
namespace {

void Throw(Napi::Env env, const std::string& msg) { Napi::RangeError::New(env, msg).ThrowAsJavaScriptException(); }

// loraGroupedNT(x, y, inF, outF, rows: Int32Array, groupStarts: Int32Array (G+1),
//               As: Float32Array[], Bs: Float32Array[], ranks: Int32Array, scales: Float64Array)
Napi::Value LoraGroupedNT(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 10) {
    Throw(env, "loraGroupedNT: expected 10 arguments");
    return env.Undefined();
  }
  auto x = info[0].As<Napi::Float32Array>();
  auto y = info[1].As<Napi::Float32Array>();
  const int64_t inF = info[2].As<Napi::Number>().Int64Value();
  const int64_t outF = info[3].As<Napi::Number>().Int64Value();
  auto rows = info[4].As<Napi::Int32Array>();
  auto starts = info[5].As<Napi::Int32Array>();
  auto As = info[6].As<Napi::Array>();
  auto Bs = info[7].As<Napi::Array>();
  auto ranks = info[8].As<Napi::Int32Array>();
  auto scales = info[9].As<Napi::Float64Array>();
  const int64_t G = static_cast<int64_t>(starts.ElementLength()) - 1;
  if (G < 0 || As.Length() != static_cast<uint32_t>(G) || Bs.Length() != static_cast<uint32_t>(G) ||
      ranks.ElementLength() != static_cast<size_t>(G) || scales.ElementLength() != static_cast<size_t>(G)) {
    Throw(env, "loraGroupedNT: groupStarts must have G+1 entries and As, Bs, ranks, scales G each");
    return env.Undefined();
  }
  const int64_t nx = static_cast<int64_t>(x.ElementLength()) / inF;
  if (inF <= 0 || outF <= 0 || static_cast<int64_t>(y.ElementLength()) != nx * outF) {
    Throw(env, "loraGroupedNT: x must be (N, inF) and y (N, outF)");
    return env.Undefined();
  }
  const int32_t* rw = rows.Data();
  const int32_t* st = starts.Data();
  // Raw pointers, as for rows and starts: TypedArrayOf::operator[](size_t) with an int64_t
  // index is ambiguous with the built-in subscript through napi_value's conversion.
  const int32_t* rk = ranks.Data();
  const double* sc = scales.Data();
  for (int64_t i = 0; i < static_cast<int64_t>(rows.ElementLength()); i++)
    if (rw[i] < 0 || rw[i] >= nx) {
      Throw(env, "loraGroupedNT: row index " + std::to_string(rw[i]) + " out of range");
      return env.Undefined();
    }
  std::vector<float> h, xs, d;
  for (int64_t g = 0; g < G; g++) {
    const int64_t s0 = st[g], s1 = st[g + 1], n = s1 - s0, r = rk[g];
    if (n <= 0) continue;
    if (s1 > static_cast<int64_t>(rows.ElementLength()) || r <= 0) {
      Throw(env, "loraGroupedNT: bad group bounds or rank");
      return env.Undefined();
    }
    auto A = As.Get(static_cast<uint32_t>(g)).As<Napi::Float32Array>();
    auto B = Bs.Get(static_cast<uint32_t>(g)).As<Napi::Float32Array>();
    if (static_cast<int64_t>(A.ElementLength()) != r * inF || static_cast<int64_t>(B.ElementLength()) != outF * r) {
      Throw(env, "loraGroupedNT: A must be (r, inF) and B (outF, r) for group " + std::to_string(g));
      return env.Undefined();
    }
    h.assign(static_cast<size_t>(n * r), 0.0f);
    bool contiguous = true;
    for (int64_t j = 1; j < n && contiguous; j++) contiguous = rw[s0 + j] == rw[s0] + j;
    const float* xin;
    if (contiguous) {
      xin = x.Data() + static_cast<int64_t>(rw[s0]) * inF;
    } else {
      xs.resize(static_cast<size_t>(n * inF));
      for (int64_t j = 0; j < n; j++)
        std::copy(x.Data() + rw[s0 + j] * inF, x.Data() + (rw[s0 + j] + 1) * inF, xs.data() + j * inF);
      xin = xs.data();
    }
    GemmBatch g1;
    g1.transA = false;
    g1.transB = true;
    g1.m = n;
    g1.n = r;
    g1.k = inF;
    g1.a = xin;
    g1.b = A.Data();
    g1.c = h.data();
    g1.alpha = static_cast<float>(sc[g]);
    g1.beta = 0;
    gemm_run(g1);
    GemmBatch g2;
    g2.transA = false;
    g2.transB = true;
    g2.m = n;
    g2.n = outF;
    g2.k = r;
    g2.a = h.data();
    g2.b = B.Data();
    if (contiguous) {
      g2.c = y.Data() + static_cast<int64_t>(rw[s0]) * outF;
      g2.alpha = 1;
      g2.beta = 1;
      gemm_run(g2);
    } else {
      d.assign(static_cast<size_t>(n * outF), 0.0f);
      g2.c = d.data();
      g2.alpha = 1;
      g2.beta = 0;
      gemm_run(g2);
      for (int64_t j = 0; j < n; j++) {
        float* yo = y.Data() + static_cast<int64_t>(rw[s0 + j]) * outF;
        const float* dj = d.data() + j * outF;
        for (int64_t c = 0; c < outF; c++) yo[c] += dj[c];
      }
    }
  }
  return env.Undefined();
}

}  // namespace

void RegisterLoraGrouped(Napi::Env env, Napi::Object exports) {
  exports.Set("loraGroupedNT", Napi::Function::New(env, LoraGroupedNT, "loraGroupedNT"));
}

}  // namespace lorakit
