// Scaled-dot-product attention with GQA, FlashAttention-2 style: key tiles with an
// online softmax (the T×S score matrix never exists), lse saved for the backward, which
// recomputes P tile by tile. The per-tile kernels live in ops_kernels_impl.h.
//
// Threads: the forward deals (batch, head, 32-query tile) items round-robin. The backward
// runs per (batch, kv head) pair, which owns its dk/dv slices and the dq rows of its query
// heads, so nothing races; when there are fewer pairs than threads it splits each pair's
// keys into 64-key tiles instead (dk/dv rows stay disjoint) and gives every extra worker a
// private dq that is summed at the end.
//
// The forward also takes k and v as bf16 (a KV cache kept in bf16): each key tile is widened
// exactly to f32 as it is packed, so the result is bit for bit that of the f32 forward over
// the widened values. The backward is f32 only.
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops_common.h"

namespace lorakit {
namespace ops {
namespace {

struct Dims {
  int64_t B, T, S, H, Hkv, D, kvCap, offset;
  float scale;
  bool causal;
};

Dims read_dims(const Args& A) {
  Dims d;
  d.B = A.size(3, "B");
  d.T = A.size(4, "T");
  d.S = A.size(5, "S");
  d.H = A.size(6, "H");
  d.Hkv = A.size(7, "Hkv");
  d.D = A.size(8, "D");
  d.kvCap = A.size(9, "kvCapacity");
  d.scale = static_cast<float>(A.num(10, "scale"));
  d.offset = A.size(11, "offset");
  d.causal = A.flag(12);
  if (d.H > 0 && (d.Hkv < 1 || d.Hkv > d.H)) A.fail("Hkv must be in [1, H]");
  if (d.H > 0 && d.H % d.Hkv != 0) A.fail("H must be a multiple of Hkv (grouped-query heads)");
  if (d.S > d.kvCap) A.fail("S must not exceed kvCapacity");
  return d;
}

// k and v are Float32Arrays, or (bf16_kv, the forward only) both Uint16Arrays of bf16 bits.
AttnArgs make_args(const Args& A, const Dims& d, F32& q, F32& k, F32& v, bool bf16_kv = false) {
  q = A.f32(0, "q");
  const int64_t nq = checked_mul(A, checked_mul(A, checked_mul(A, d.B, d.T), d.H), d.D);
  const int64_t nkv = checked_mul(A, checked_mul(A, checked_mul(A, d.B, d.kvCap), d.Hkv), d.D);
  A.need(q, nq, "q");
  AttnArgs a{};
  if (bf16_kv) {
    a.k16 = A.u16(1, "k", nkv);
    a.v16 = A.u16(2, "v", nkv);
  } else {
    k = A.f32(1, "k");
    v = A.f32(2, "v");
    A.need(k, nkv, "k");
    A.need(v, nkv, "v");
    a.k = k.p;
    a.v = v.p;
  }
  a.q = q.p;
  a.B = d.B;
  a.T = d.T;
  a.S = d.S;
  a.H = d.H;
  a.Hkv = d.Hkv;
  a.D = d.D;
  a.kvCap = d.kvCap;
  a.offset = d.offset;
  a.scale = d.scale;
  a.causal = d.causal;
  return a;
}

bool worth_threads(const Dims& d) {
  // ~4 flops per (query, key, channel); below ~0.5 MFLOP stay on the caller.
  const double work = 4.0 * d.B * d.H * static_cast<double>(d.T) * d.S * d.D;
  return work > 5e5;
}

// Query positions per forward work item. An item packs every key tile its queries see, so
// a long prompt (T queries over T keys) packs each tile about T/tq times: kAttnBq query rows
// per item (a decode step's tiles) made a 128-token prompt on the 125M shape (tq = 10) spend
// ~20 % of its forward repacking keys. Prompts take kPromptRows rows per item instead, as
// long as every thread still gets 4 items to balance with. The tile size changes no bits: each
// row's running max, sum and accumulator go over the same key tiles in the same order.
constexpr int64_t kPromptRows = 96;
int64_t forward_query_tile(const Dims& d, int64_t G) {
  const int64_t small = std::max<int64_t>(1, kAttnBq / G);
  const int64_t want_items = 4 * static_cast<int64_t>(num_threads());
  const int64_t per_pair = (want_items + d.B * d.Hkv - 1) / (d.B * d.Hkv);  // tiles per (batch, KV head)
  const int64_t fit = (d.T + per_pair - 1) / per_pair;
  return std::max(small, std::min(std::max<int64_t>(1, kPromptRows / G), fit));
}

// attention(q, k, v, B, T, S, H, Hkv, D, kvCapacity, scale, offset, causal, out, lse);
// k and v both Float32Arrays, or both Uint16Arrays of bf16 bits.
void Attention(const Args& A) {
  Dims d = read_dims(A);
  F32 q, k, v;
  const bool bf16_kv = A.is_u16(1) || A.is_u16(2);
  if (bf16_kv && !(A.is_u16(1) && A.is_u16(2))) A.fail("k and v must both be Float32Arrays or both Uint16Arrays");
  AttnArgs a = make_args(A, d, q, k, v, bf16_kv);
  F32 out = A.f32(13, "out"), lse = A.f32(14, "lse");
  A.need(out, d.B * d.T * d.H * d.D, "out");
  A.need(lse, d.B * d.H * d.T, "lse");
  a.out_w = out.p;
  a.lse_w = lse.p;
  if (d.B * d.H * d.T == 0) return;
  // One work item per (batch, KV head, query tile): the query heads sharing a KV head are
  // processed together so each tile of its keys is packed once per item.
  const int64_t G = d.H / d.Hkv;
  const int64_t tq = forward_query_tile(d, G);
  const int64_t qt = (d.T + tq - 1) / tq;
  const int64_t pairs = d.B * d.Hkv, items = pairs * qt;
  const auto fn = kernels().attn_fwd;
  auto run = [&](int64_t c) {
    // Claim c runs query tile qt-1 - c/pairs: a causal forward's last tiles see the most keys,
    // so the costly items go first and the cheap ones fill in at the end.
    const int64_t tile = qt - 1 - c / pairs, bg = c % pairs;
    const int64_t t0 = tile * tq;
    fn(a, bg / d.Hkv, bg % d.Hkv, t0, std::min(d.T, t0 + tq));
  };
  const int64_t nw = worth_threads(d) ? std::min<int64_t>(items, num_threads()) : 1;
  if (nw <= 1) {
    for (int64_t c = 0; c < items; c++) run(c);
    return;
  }
  // Items are claimed one at a time rather than dealt round-robin: a thread the OS runs late
  // (or one dealt the costlier tiles) no longer leaves the others waiting. Every row is
  // computed the same way whichever thread runs it, so the bits do not depend on the split.
  std::atomic<int64_t> next{0};
  parallel_for(nw, 1, [&](int64_t, int64_t) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < items;
         c = next.fetch_add(1, std::memory_order_relaxed))
      run(c);
  });
}

// attentionRows(q, ks, vs, rows, H, Hkv, D, scale, out): the attention of a continuous batch in
// one call. Sequence n has rows[3n] query tokens (their q and out rows follow the previous
// sequence's: (Σ tokens, H, D)), sitting at positions rows[3n+1].. after what its own cache
// holds; ks[n], vs[n] are that cache's keys and values for this layer ((rows[3n+2] capacity,
// Hkv, D), Float32Arrays or both Uint16Arrays of bf16 bits) with the new rows already
// written. Each sequence attends causally over its own keys. The work items are exactly those
// of `attention` called per sequence (B = 1, S = offset + tokens), so every output is bit for
// bit the same; one call saves a call's fixed cost per sequence and threads across them all.
void AttentionRows(const Args& A) {
  F32 q = A.f32(0, "q");
  Napi::Value kv = A.info[1], vv = A.info[2];
  if (!kv.IsArray() || !vv.IsArray()) A.fail("ks and vs must be arrays of the caches' key and value buffers");
  auto ka = kv.As<Napi::Array>(), va = vv.As<Napi::Array>();
  const int64_t N = ka.Length();
  if (static_cast<int64_t>(va.Length()) != N) A.fail("ks and vs must hold one buffer per sequence each");
  const int32_t* rows = A.i32(3, "rows", 3 * N);
  const int64_t H = A.size(4, "H"), Hkv = A.size(5, "Hkv"), D = A.size(6, "D");
  const float scale = static_cast<float>(A.num(7, "scale"));
  F32 out = A.f32(8, "out");
  if (H < 1 || Hkv < 1 || Hkv > H || H % Hkv != 0) A.fail("H must be a positive multiple of Hkv (grouped-query heads)");
  auto kind = [](const Napi::Value& x) -> int {  // 1: Float32Array, 2: Uint16Array, 0: other
    if (!x.IsTypedArray()) return 0;
    const napi_typedarray_type t = x.As<Napi::TypedArray>().TypedArrayType();
    return t == napi_float32_array ? 1 : t == napi_uint16_array ? 2 : 0;
  };
  std::vector<AttnArgs> args(N);
  int64_t tokens = 0;
  double work = 0;
  for (int64_t n = 0; n < N; n++) {
    const int64_t T = rows[3 * n], off = rows[3 * n + 1], cap = rows[3 * n + 2];
    if (T < 0 || off < 0 || cap < 0 || off + T > cap)
      A.fail("sequence " + std::to_string(n) + ": needs 0 <= tokens, 0 <= offset and offset + tokens <= capacity");
    const Napi::Value kn = ka.Get(static_cast<uint32_t>(n)), vn = va.Get(static_cast<uint32_t>(n));
    const int kk = kind(kn), vk = kind(vn);
    if (kk == 0 || kk != vk)
      A.fail("sequence " + std::to_string(n) + ": k and v must both be Float32Arrays or both Uint16Arrays");
    const int64_t nkv = checked_mul(A, checked_mul(A, cap, Hkv), D);
    const int64_t kl = static_cast<int64_t>(kn.As<Napi::TypedArray>().ElementLength());
    const int64_t vl = static_cast<int64_t>(vn.As<Napi::TypedArray>().ElementLength());
    if (kl < nkv || vl < nkv)
      A.fail("sequence " + std::to_string(n) + ": k and v need " + std::to_string(nkv) + " elements");
    AttnArgs& a = args[n];
    a = AttnArgs{};
    if (kk == 2) {
      a.k16 = kn.As<Napi::Uint16Array>().Data();
      a.v16 = vn.As<Napi::Uint16Array>().Data();
    } else {
      a.k = kn.As<Napi::Float32Array>().Data();
      a.v = vn.As<Napi::Float32Array>().Data();
    }
    a.B = 1;
    a.T = T;
    a.S = off + T;
    a.H = H;
    a.Hkv = Hkv;
    a.D = D;
    a.kvCap = cap;
    a.offset = off;
    a.scale = scale;
    a.causal = true;
    tokens += T;
    work += 4.0 * H * static_cast<double>(T) * a.S * D;
  }
  const int64_t nq = checked_mul(A, checked_mul(A, tokens, H), D);
  A.need(q, nq, "q");
  A.need(out, nq, "out");
  if (tokens == 0) return;
  thread_local std::vector<float> lse;  // the forward's lse, not returned
  lse.resize(tokens * H);
  // The work items of `attention` per sequence: (KV head, query tile), tq queries per tile.
  const int64_t G = H / Hkv;
  const int64_t tq = std::max<int64_t>(1, kAttnBq / G);
  struct Item {
    int64_t n, g, t0, t1;
  };
  std::vector<Item> items;
  int64_t at = 0;
  for (int64_t n = 0; n < N; n++) {
    AttnArgs& a = args[n];
    a.q = q.p + at * H * D;
    a.out_w = out.p + at * H * D;
    a.lse_w = lse.data() + at * H;
    at += a.T;
    for (int64_t g = 0; g < Hkv; g++)
      for (int64_t t0 = 0; t0 < a.T; t0 += tq) items.push_back({n, g, t0, std::min(a.T, t0 + tq)});
  }
  const auto fn = kernels().attn_fwd;
  parallel_items(static_cast<int64_t>(items.size()), work > 5e5, [&](int64_t i, int64_t) {
    const Item& it = items[i];
    fn(args[it.n], 0, it.g, it.t0, it.t1);
  });
}

// attentionBackward(q, k, v, B, T, S, H, Hkv, D, kvCapacity, scale, offset, causal,
//                   out, lse, dout, dq|null, dk|null, dv|null)
void AttentionBackward(const Args& A) {
  Dims d = read_dims(A);
  F32 q, k, v;
  AttnArgs a = make_args(A, d, q, k, v);
  const int64_t nq = d.B * d.T * d.H * d.D, nkv = d.B * d.kvCap * d.Hkv * d.D;
  F32 out = A.f32(13, "out"), lse = A.f32(14, "lse"), dout = A.f32(15, "dout");
  F32 dq = A.f32_opt(16, "dq"), dk = A.f32_opt(17, "dk"), dv = A.f32_opt(18, "dv");
  A.need(out, nq, "out");
  A.need(dout, nq, "dout");
  A.need(lse, d.B * d.H * d.T, "lse");
  if (dq) A.need(dq, nq, "dq");
  if (dk) A.need(dk, nkv, "dk");
  if (dv) A.need(dv, nkv, "dv");
  if (dq) std::memset(dq.p, 0, sizeof(float) * nq);
  if ((!dq && !dk && !dv) || d.B * d.H * d.T == 0 || d.S == 0) return;
  const bool par = worth_threads(d);
  // Di = rowsum(dout ⊙ out), laid out (B, H, T) like lse.
  std::vector<float> di(d.B * d.H * d.T);
  parallel_for(d.B * d.T, par ? row_grain(d.H * d.D, kGrainCheap / 4) : (1 << 30), [&](int64_t b0, int64_t b1) {
    for (int64_t bt = b0; bt < b1; bt++) {
      const int64_t b = bt / d.T, t = bt % d.T;
      for (int64_t h = 0; h < d.H; h++) {
        const float* o = out.p + (bt * d.H + h) * d.D;
        const float* g = dout.p + (bt * d.H + h) * d.D;
        float s = 0;
        for (int64_t i = 0; i < d.D; i++) s += o[i] * g[i];
        di[(b * d.H + h) * d.T + t] = s;
      }
    }
  });
  a.out = out.p;
  a.lse = lse.p;
  a.dout = dout.p;
  a.di = di.data();
  const auto fn = kernels().attn_bwd;
  const int64_t pairs = d.B * d.Hkv;
  const int64_t nt = num_threads();
  if (!par || nt <= 1 || pairs >= nt) {
    parallel_items(pairs, par, [&](int64_t pr, int64_t) {
      fn(a, pr / d.Hkv, pr % d.Hkv, 0, d.S, dq.p, dk.p, dv.p);
    });
    return;
  }
  const int64_t tiles = (d.S + kAttnBk - 1) / kAttnBk;
  const int64_t items = pairs * tiles;
  const int64_t nw = std::min<int64_t>(items, nt);
  std::vector<std::vector<float>> priv(dq ? nw : 0);
  parallel_items(items, true, [&](int64_t it, int64_t w) {
    const int64_t pr = it / tiles, s0 = (it % tiles) * kAttnBk;
    float* dqw = nullptr;
    if (dq) {
      if (w == 0) {
        dqw = dq.p;
      } else {
        if (priv[w].empty()) priv[w].assign(nq, 0.f);
        dqw = priv[w].data();
      }
    }
    fn(a, pr / d.Hkv, pr % d.Hkv, s0, std::min(d.S, s0 + kAttnBk), dqw, dk.p, dv.p);
  });
  if (dq) {
    parallel_for(nq, kGrainCheap, [&](int64_t b0, int64_t b1) {
      for (size_t w = 1; w < priv.size(); w++) {
        if (priv[w].empty()) continue;
        const float* p = priv[w].data();
        for (int64_t i = b0; i < b1; i++) dq.p[i] += p[i];
      }
    });
  }
}

}  // namespace

void RegisterAttention(Napi::Env env, Napi::Object exports) {
  Export<Attention>(env, exports, "attention");
  Export<AttentionBackward>(env, exports, "attentionBackward");
  Export<AttentionRows>(env, exports, "attentionRows");
}

}  // namespace ops
}  // namespace lorakit
