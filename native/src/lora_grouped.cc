// loraGroupedNT: the adapter half of a mixed-adapter linear layer in one call (the SGMV of
// Punica / S-LoRA). For each group g of rows that use one adapter:
//   h = s_g·x[rows]·A_gᵀ                      (rows × r)
//   y[rows] += h·B_gᵀ                         (rows × out)
// Each product goes through gemm_run with exactly the arguments the two separate gemm calls
// of the TypeScript path use, so results are bit-identical to it (and to LoraLinear's own
// forward, which serving compares against); only the N-API round trips are saved.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "gemm_internal.h"
#include "register.h"
#include "threadpool.h"

namespace lorakit {
namespace {

void Throw(Napi::Env env, const std::string& msg) { Napi::RangeError::New(env, msg).ThrowAsJavaScriptException(); }

// A group costs about as much as this many of its rows on top of them (reading its A and B),
// for dividing groups between threads.
constexpr int64_t kRowsPerGroupCost = 4;
// While a single-row group's two products run, the next group's A (during the first) and B
// (during the second) are fetched into L1, this many 64-byte lines per step of the gemv's k
// loop (32 steps a product at r = 8, hidden 256: room for 16 KiB, twice the 8 KiB array it
// fetches). Adapters sit in L3 or memory between steps, and 8 KiB arrays are too short for the
// hardware prefetchers to ramp up: without it a 64-adapter step's loraGroupedNT calls took
// 1.3–1.5× longer (bench/serve-step --adapters 64 --threads 1, per call; the next group
// fetched two ahead, or into L2 only, read the same).
constexpr int kFetchLinesPerStep = 8;

struct Group {
  const int32_t* rows;  // its n row indices into x and y
  int64_t n, r;
  const float* A;  // (r, inF)
  const float* B;  // (outF, r)
  float scale;
};
struct Dims {
  const float* x;
  float* y;
  int64_t inF, outF;
};

// c (m×n) = alpha·a (m×k)·bᵀ + beta·c through gemm_run, as the TypeScript path's gemm calls.
void product_nt(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c, float alpha, float beta,
                const float* fetch = nullptr, int64_t fetch_floats = 0) {
  GemmBatch g;
  const char* cursor = reinterpret_cast<const char*>(fetch);
  if (fetch != nullptr) {
    g.prefetch = &cursor;
    g.prefetch_end = cursor + fetch_floats * 4;
    g.prefetch_per_step = kFetchLinesPerStep;
  }
  g.transA = false;
  g.transB = true;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.b = b;
  g.c = c;
  g.alpha = alpha;
  g.beta = beta;
  gemm_run(g);
}

// One group's two products: h = s·x[rows]·Aᵀ, then y[rows] += h·Bᵀ (through a buffer when its
// rows are not contiguous). The buffers are the thread's own and kept between groups: a step
// of 50 single-row groups per layer would otherwise allocate for every one.
void run_group(const Group& gr, const Dims& d, const Group* next = nullptr) {
  thread_local std::vector<float> h, xs, dy;
  const int64_t n = gr.n, r = gr.r, inF = d.inF, outF = d.outF;
  h.assign(static_cast<size_t>(n * r), 0.0f);
  bool contiguous = true;
  for (int64_t j = 1; j < n && contiguous; j++) contiguous = gr.rows[j] == gr.rows[0] + j;
  const float* xin;
  if (contiguous) {
    xin = d.x + static_cast<int64_t>(gr.rows[0]) * inF;
  } else {
    xs.resize(static_cast<size_t>(n * inF));
    for (int64_t j = 0; j < n; j++)
      std::copy(d.x + gr.rows[j] * inF, d.x + (gr.rows[j] + 1) * inF, xs.data() + j * inF);
    xin = xs.data();
  }
  product_nt(n, r, inF, xin, gr.A, h.data(), gr.scale, 0, next ? next->A : nullptr, next ? next->r * inF : 0);
  if (contiguous) {
    product_nt(n, outF, r, h.data(), gr.B, d.y + static_cast<int64_t>(gr.rows[0]) * outF, 1, 1, next ? next->B : nullptr,
               next ? next->r * outF : 0);
    return;
  }
  // The rows of y gathered, accumulated with beta = 1 as in place, and scattered back: the
  // same arithmetic as for contiguous rows (a product of its own added afterwards would round
  // differently once r spans more than one k slice of the GEMM).
  dy.resize(static_cast<size_t>(n * outF));
  for (int64_t j = 0; j < n; j++) {
    const float* yo = d.y + static_cast<int64_t>(gr.rows[j]) * outF;
    std::copy(yo, yo + outF, dy.data() + j * outF);
  }
  product_nt(n, outF, r, h.data(), gr.B, dy.data(), 1, 1);
  for (int64_t j = 0; j < n; j++) {
    const float* dj = dy.data() + j * outF;
    std::copy(dj, dj + outF, d.y + static_cast<int64_t>(gr.rows[j]) * outF);
  }
}

// loraGroupedNT(x, y, inF, outF, rows: Int32Array, groupStarts: Int32Array (G+1),
//               As: Float32Array[], Bs: Float32Array[], ranks: Int32Array, scales: Float64Array
//               [, slots: Int32Array (G), addresses: Float64Array (4 per adapter)])
// Without slots, group g uses As[g], Bs[g], ranks[g], scales[g]. With them, group g uses
// adapter slots[g]: ranks and scales are per adapter, and its A and B are read at the
// addresses arrayAddresses gave (A's address and length, then B's) — As and Bs are not read.
// The native backend's prepareLora keeps those arrays alive (it holds them); the layer that
// owns them rebuilds its preparation when one of them changes (LoraLinear.adapterTable).
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
  auto ranks = info[8].As<Napi::Int32Array>();
  auto scales = info[9].As<Napi::Float64Array>();
  const int64_t G = static_cast<int64_t>(starts.ElementLength()) - 1;
  // Reading ~50 groups' arguments below takes 30–40 µs on this thread, long enough for the
  // pool's idle workers to have gone to sleep by the parallel_for: wake them now, so their
  // wake-up (tens of µs on a virtual machine) overlaps it.
  if (G >= 2) wake_pool();
  const bool bySlot = info.Length() >= 12 && info[10].IsTypedArray();
  // Adapters the groups index: the groups themselves, or the slots' table.
  const int64_t S = static_cast<int64_t>(ranks.ElementLength());
  const int32_t* sl = nullptr;
  const double* addr = nullptr;
  Napi::Array As, Bs;
  if (bySlot) {
    if (info[10].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || !info[11].IsTypedArray() ||
        info[11].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      Throw(env, "loraGroupedNT: slots must be an Int32Array and addresses a Float64Array");
      return env.Undefined();
    }
    auto slots = info[10].As<Napi::Int32Array>();
    auto addresses = info[11].As<Napi::Float64Array>();
    if (G < 0 || slots.ElementLength() != static_cast<size_t>(G) || scales.ElementLength() != static_cast<size_t>(S) ||
        addresses.ElementLength() != static_cast<size_t>(4 * S)) {
      Throw(env, "loraGroupedNT: slots must have G entries, ranks and scales one per adapter, addresses four");
      return env.Undefined();
    }
    sl = slots.Data();
    addr = addresses.Data();
  } else {
    As = info[6].As<Napi::Array>();
    Bs = info[7].As<Napi::Array>();
    if (G < 0 || As.Length() != static_cast<uint32_t>(G) || Bs.Length() != static_cast<uint32_t>(G) || S != G ||
        scales.ElementLength() != static_cast<size_t>(G)) {
      Throw(env, "loraGroupedNT: groupStarts must have G+1 entries and As, Bs, ranks, scales G each");
      return env.Undefined();
    }
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
  // Every group checked and its A, B found here, on the JavaScript thread (N-API is not
  // thread-safe); the products run after.
  std::vector<Group> groups;
  groups.reserve(static_cast<size_t>(G));
  for (int64_t g = 0; g < G; g++) {
    const int64_t s0 = st[g], s1 = st[g + 1], n = s1 - s0;
    if (n <= 0) continue;
    const int64_t a = bySlot ? sl[g] : g;
    if (a < 0 || a >= S) {
      Throw(env, "loraGroupedNT: group " + std::to_string(g) + "'s slot " + std::to_string(a) + " out of range");
      return env.Undefined();
    }
    const int64_t r = rk[a];
    if (s1 > static_cast<int64_t>(rows.ElementLength()) || r <= 0) {
      Throw(env, "loraGroupedNT: bad group bounds or rank");
      return env.Undefined();
    }
    const float *pa, *pb;
    int64_t na, nb;
    if (bySlot) {
      pa = reinterpret_cast<const float*>(static_cast<uintptr_t>(addr[4 * a]));
      na = static_cast<int64_t>(addr[4 * a + 1]);
      pb = reinterpret_cast<const float*>(static_cast<uintptr_t>(addr[4 * a + 2]));
      nb = static_cast<int64_t>(addr[4 * a + 3]);
    } else {
      auto A = As.Get(static_cast<uint32_t>(g)).As<Napi::Float32Array>();
      auto B = Bs.Get(static_cast<uint32_t>(g)).As<Napi::Float32Array>();
      pa = A.Data();
      na = static_cast<int64_t>(A.ElementLength());
      pb = B.Data();
      nb = static_cast<int64_t>(B.ElementLength());
    }
    if (na != r * inF || nb != outF * r) {
      Throw(env, "loraGroupedNT: A must be (r, inF) and B (outF, r) for group " + std::to_string(g));
      return env.Undefined();
    }
    groups.push_back({rw + s0, n, r, pa, pb, static_cast<float>(sc[a])});
  }
  const Dims dims{x.Data(), y.Data(), inF, outF};
  // Each row belongs to one group, so groups write disjoint rows of y and may run at once;
  // a group's products are the same gemm_run calls wherever they run, so the bits do not
  // depend on it. Groups too small to split (a decode step's sequences; a prompt chunk whose
  // products gemm_run would keep on one thread) run side by side over the pool, each thread
  // taking a run of consecutive groups of about equal cost: 50 single-row groups one after
  // another on one thread cost a quarter of a serving step, and a step's prompt chunks run
  // one at a time, while the other cores waited, 6 % of the kernel's time there
  // (bench/serve-step --adapters 64 --prefill 2). Larger groups run one at a time, each
  // product threaded inside.
  const auto one_thread = [&](const Group& gr) {
    return gr.n <= kGemvMaxRows ||
           static_cast<double>(gr.n) * gr.r * std::max(inF, outF) < 2 * kGemmMinFmaPerThread;
  };
  std::vector<const Group*> side;
  for (const Group& gr : groups) {
    if (one_thread(gr))
      side.push_back(&gr);
    else
      run_group(gr, dims);
  }
  // Each thread takes the consecutive groups whose cost midpoint falls in its share of the
  // total, a group costing kRowsPerGroupCost (reading its A and B) plus its rows.
  const int64_t parts = std::min<int64_t>(num_threads(), static_cast<int64_t>(side.size()));
  std::vector<int64_t> bound(static_cast<size_t>(parts) + 1, static_cast<int64_t>(side.size()));
  int64_t total = 0;
  for (const Group* gr : side) total += kRowsPerGroupCost + gr->n;
  int64_t before = 0;  // cost of the groups ahead of i
  for (int64_t i = 0, p = 1; i < static_cast<int64_t>(side.size()); i++) {
    const int64_t c = kRowsPerGroupCost + side[i]->n;
    while (p < parts && 2 * before + c >= 2 * (total * p / parts)) bound[p++] = i;
    before += c;
  }
  bound[0] = 0;
  parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++)
      for (int64_t i = bound[p]; i < bound[p + 1]; i++)
        run_group(*side[i], dims, i + 1 < bound[p + 1] ? side[i + 1] : nullptr);
  });
  return env.Undefined();
}

// arrayAddresses(arrays: Float32Array[]) → Float64Array: each array's data address and length
// (exact in a double: user-space addresses are under 2^53), for loraGroupedNT's slots.
Napi::Value ArrayAddresses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    Throw(env, "arrayAddresses: expected an array of Float32Arrays");
    return env.Undefined();
  }
  auto arrays = info[0].As<Napi::Array>();
  const uint32_t n = arrays.Length();
  auto out = Napi::Float64Array::New(env, 2 * static_cast<size_t>(n));
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value v = arrays.Get(i);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      Throw(env, "arrayAddresses: element " + std::to_string(i) + " is not a Float32Array");
      return env.Undefined();
    }
    auto a = v.As<Napi::Float32Array>();
    out[2 * i] = static_cast<double>(reinterpret_cast<uintptr_t>(a.Data()));
    out[2 * i + 1] = static_cast<double>(a.ElementLength());
  }
  return out;
}

}  // namespace

void RegisterLoraGrouped(Napi::Env env, Napi::Object exports) {
  exports.Set("loraGroupedNT", Napi::Function::New(env, LoraGroupedNT, "loraGroupedNT"));
  exports.Set("arrayAddresses", Napi::Function::New(env, ArrayAddresses, "arrayAddresses"));
}

}  // namespace lorakit
