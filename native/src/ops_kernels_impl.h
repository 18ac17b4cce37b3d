// The hot kernels, written once against a tiny vector type V and compiled four times:
// ops_simd_avx512.cc, ops_simd_avx2.cc, ops_simd_portable.cc and ops_simd_emu16.cc (the
// test-only plain-C++ emulation of the AVX-512 V, so the 16-lane paths run on any host)
// each define
//   V        — struct with R (register type), N (lanes) and always-inline operations,
//   LK_TGT   — the function attribute of that ISA (empty for portable),
//   LK_NS    — a namespace name, LK_TABLE — the name of the Kernels table to define,
// and then include this file. Nothing here is compiled for an ISA the CPU may lack
// unless the dispatcher (ops_simd_portable.cc) selected it at run time.
//
// Tails are handled with partial loads/stores, so every element (tail or not) goes
// through the same arithmetic.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "ops_common.h"

namespace lorakit {
namespace ops {
namespace LK_NS {

using R = V::R;
constexpr int64_t W = V::N;

LK_TGT static inline R sigmoid_v(R x) {
  const R one = V::set1(1.f);
  return V::div(one, V::add(one, V::exp(V::sub(V::zero(), x))));
}

LK_TGT static void exp_arr(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, V::exp(V::load(x + i)));
  if (i < n) V::store_part(y + i, V::exp(V::load_part(x + i, n - i, 0.f)), n - i);
}

LK_TGT static void sigmoid_arr(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(y + i, sigmoid_v(V::load(x + i)));
  if (i < n) V::store_part(y + i, sigmoid_v(V::load_part(x + i, n - i, 0.f)), n - i);
}

LK_TGT static void silu_arr(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    R v = V::load(x + i);
    V::store(y + i, V::mul(v, sigmoid_v(v)));
  }
  if (i < n) {
    R v = V::load_part(x + i, n - i, 0.f);
    V::store_part(y + i, V::mul(v, sigmoid_v(v)), n - i);
  }
}

// d silu(x)/dx = s·(1 + x·(1 − s))
LK_TGT static inline R silu_grad_v(R x, R s) {
  const R one = V::set1(1.f);
  return V::mul(s, V::fmadd(x, V::sub(one, s), one));
}

LK_TGT static void silu_bwd(const float* x, const float* dy, float* dx, int64_t n, bool acc) {
  for (int64_t i = 0; i < n; i += W) {
    const int64_t k = std::min<int64_t>(W, n - i);
    R xv = V::load_part(x + i, k, 0.f);
    R g = V::mul(V::load_part(dy + i, k, 0.f), silu_grad_v(xv, sigmoid_v(xv)));
    if (acc) g = V::add(g, V::load_part(dx + i, k, 0.f));
    V::store_part(dx + i, g, k);
  }
}

LK_TGT static void silu_mul(const float* g, const float* u, float* o, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    R gv = V::load(g + i);
    V::store(o + i, V::mul(V::mul(gv, sigmoid_v(gv)), V::load(u + i)));
  }
  if (i < n) {
    const int64_t k = n - i;
    R gv = V::load_part(g + i, k, 0.f);
    V::store_part(o + i, V::mul(V::mul(gv, sigmoid_v(gv)), V::load_part(u + i, k, 0.f)), k);
  }
}

LK_TGT static void silu_mul_bwd(const float* g, const float* u, const float* dy, float* dg, float* du, int64_t n,
                                bool acc) {
  for (int64_t i = 0; i < n; i += W) {
    const int64_t k = std::min<int64_t>(W, n - i);
    R gv = V::load_part(g + i, k, 0.f);
    R s = sigmoid_v(gv);
    R d = V::load_part(dy + i, k, 0.f);
    if (dg) {
      R r = V::mul(V::mul(d, V::load_part(u + i, k, 0.f)), silu_grad_v(gv, s));
      if (acc) r = V::add(r, V::load_part(dg + i, k, 0.f));
      V::store_part(dg + i, r, k);
    }
    if (du) {
      R r = V::mul(d, V::mul(gv, s));
      if (acc) r = V::add(r, V::load_part(du + i, k, 0.f));
      V::store_part(du + i, r, k);
    }
  }
}

LK_TGT static float row_max(const float* x, int64_t n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  R m = V::set1(ninf);
  int64_t i = 0;
  for (; i + W <= n; i += W) m = V::max(m, V::load(x + i));
  if (i < n) m = V::max(m, V::load_part(x + i, n - i, ninf));
  return V::hmax(m);
}

// y = exp(x − m); returns Σ y.
LK_TGT static float row_exp_store(const float* x, float* y, int64_t n, float m) {
  const R mv = V::set1(m);
  R s = V::zero();
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    R e = V::exp(V::sub(V::load(x + i), mv));
    V::store(y + i, e);
    s = V::add(s, e);
  }
  if (i < n) {
    R e = V::exp(V::sub(V::load_part(x + i, n - i, -std::numeric_limits<float>::infinity()), mv));
    V::store_part(y + i, e, n - i);
    s = V::add(s, e);
  }
  return V::hsum(s);
}

// Σ exp(x − m)
LK_TGT static float row_sum_exp(const float* x, int64_t n, float m) {
  const R mv = V::set1(m);
  R s = V::zero();
  int64_t i = 0;
  for (; i + W <= n; i += W) s = V::add(s, V::exp(V::sub(V::load(x + i), mv)));
  if (i < n) s = V::add(s, V::exp(V::sub(V::load_part(x + i, n - i, -std::numeric_limits<float>::infinity()), mv)));
  return V::hsum(s);
}

LK_TGT static void softmax_rows(const float* x, float* y, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    const float m = row_max(xr, C);
    const float s = row_exp_store(xr, yr, C, m);
    const R inv = V::set1(1.f / s);
    int64_t i = 0;
    for (; i + W <= C; i += W) V::store(yr + i, V::mul(V::load(yr + i), inv));
    if (i < C) V::store_part(yr + i, V::mul(V::load_part(yr + i, C - i, 0.f), inv), C - i);
  }
}

LK_TGT static void log_softmax_rows(const float* x, float* y, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    const float m = row_max(xr, C);
    const float sh = m + std::log(row_sum_exp(xr, C, m));
    const R shv = V::set1(sh);
    int64_t i = 0;
    for (; i + W <= C; i += W) V::store(yr + i, V::sub(V::load(xr + i), shv));
    if (i < C) V::store_part(yr + i, V::sub(V::load_part(xr + i, C - i, 0.f), shv), C - i);
  }
}

LK_TGT static void softmax_bwd_rows(const float* y, const float* dy, float* dx, int64_t rows, int64_t C, bool acc) {
  for (int64_t r = 0; r < rows; r++) {
    const float* yr = y + r * C;
    const float* dr = dy + r * C;
    float* xr = dx + r * C;
    R s = V::zero();
    for (int64_t i = 0; i < C; i += W) {
      const int64_t k = std::min<int64_t>(W, C - i);
      s = V::fmadd(V::load_part(yr + i, k, 0.f), V::load_part(dr + i, k, 0.f), s);
    }
    const R dot = V::set1(V::hsum(s));
    for (int64_t i = 0; i < C; i += W) {
      const int64_t k = std::min<int64_t>(W, C - i);
      R g = V::mul(V::load_part(yr + i, k, 0.f), V::sub(V::load_part(dr + i, k, 0.f), dot));
      if (acc) g = V::add(g, V::load_part(xr + i, k, 0.f));
      V::store_part(xr + i, g, k);
    }
  }
}

LK_TGT static void log_softmax_bwd_rows(const float* y, const float* dy, float* dx, int64_t rows, int64_t C,
                                        bool acc) {
  for (int64_t r = 0; r < rows; r++) {
    const float* yr = y + r * C;
    const float* dr = dy + r * C;
    float* xr = dx + r * C;
    R s = V::zero();
    for (int64_t i = 0; i < C; i += W) s = V::add(s, V::load_part(dr + i, std::min<int64_t>(W, C - i), 0.f));
    // dy − eʸ·Σdy as one explicit multiply-add (the FMA tables round once, the portable one
    // twice), never left to the compiler's contraction, which the emu16 table cannot follow.
    const R negsum = V::set1(-V::hsum(s));
    for (int64_t i = 0; i < C; i += W) {
      const int64_t k = std::min<int64_t>(W, C - i);
      R g = V::fmadd(V::exp(V::load_part(yr + i, k, -std::numeric_limits<float>::infinity())), negsum,
                     V::load_part(dr + i, k, 0.f));
      if (acc) g = V::add(g, V::load_part(xr + i, k, 0.f));
      V::store_part(xr + i, g, k);
    }
  }
}

LK_TGT static void ce_rows(const float* x, const int32_t* tgt, int64_t rows, int64_t Vn, int32_t ignore,
                           float* loss, float* lse) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * Vn;
    const float m = row_max(xr, Vn);
    const float l = m + std::log(row_sum_exp(xr, Vn, m));
    lse[r] = l;
    loss[r] = tgt[r] == ignore ? 0.f : l - xr[tgt[r]];
  }
}

LK_TGT static void ce_bwd_rows(const float* x, const int32_t* tgt, const float* lse, const float* gs, int64_t rows,
                               int64_t Vn, int32_t ignore, float* dx, bool acc) {
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * Vn;
    float* dr = dx + r * Vn;
    if (tgt[r] == ignore) {
      if (!acc) std::memset(dr, 0, sizeof(float) * Vn);
      continue;
    }
    const float g = gs[r];
    const R gv = V::set1(g), lv = V::set1(lse[r]);
    for (int64_t i = 0; i < Vn; i += W) {
      const int64_t k = std::min<int64_t>(W, Vn - i);
      R p = V::mul(gv, V::exp(V::sub(V::load_part(xr + i, k, 0.f), lv)));
      if (acc) p = V::add(p, V::load_part(dr + i, k, 0.f));
      V::store_part(dr + i, p, k);
    }
    dr[tgt[r]] -= g;
  }
}

LK_TGT static void adamw(float* p, const float* g, float* m, float* v, int64_t n, float b1, float b2,
                         float step_size, float sqrt_bc2, float eps, float decay) {
  const R vb1 = V::set1(b1), vb2 = V::set1(b2), c1 = V::set1(1.f - b1), c2 = V::set1(1.f - b2);
  const R vss = V::set1(step_size), vbc = V::set1(sqrt_bc2), veps = V::set1(eps), vdec = V::set1(decay);
  for (int64_t i = 0; i < n; i += W) {
    const int64_t k = std::min<int64_t>(W, n - i);
    R gv = V::load_part(g + i, k, 0.f);
    R mv = V::add(V::mul(vb1, V::load_part(m + i, k, 0.f)), V::mul(c1, gv));
    R vv = V::add(V::mul(vb2, V::load_part(v + i, k, 0.f)), V::mul(V::mul(c2, gv), gv));
    R den = V::add(V::div(V::sqrt(vv), vbc), veps);
    R pv = V::mul(V::load_part(p + i, k, 0.f), vdec);
    pv = V::sub(pv, V::mul(vss, V::div(mv, den)));
    V::store_part(m + i, mv, k);
    V::store_part(v + i, vv, k);
    V::store_part(p + i, pv, k);
  }
}

// ---------------------------------------------------------------------------------------
// Attention (FlashAttention-2 style). Keys are processed in tiles of Bk; a tile of K (and
// of V in the backward) is transposed into a D×Bk panel so that one query row's scores
// for the whole tile come out of Bk/W vector accumulators with no horizontal sums.

constexpr int64_t Bk = kAttnBk;
constexpr int64_t NU = Bk / W;  // accumulators per score row

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// s[0..K·W) = Σ_d q[d]·panel[d·Bk + j]: the first K vectors of a score row (K ≤ NU).
template <int K>
LK_TGT static inline void scores_row_k(const float* q, const float* panel, int64_t D, float* s) {
  // The unroll pragmas keep acc[] in registers (GCC left it on the stack otherwise).
  R acc[K];
#pragma GCC unroll 16
  for (int u = 0; u < K; u++) acc[u] = V::zero();
  for (int64_t d = 0; d < D; d++) {
    const R qd = V::set1(q[d]);
    const float* pr = panel + d * Bk;
#pragma GCC unroll 16
    for (int u = 0; u < K; u++) acc[u] = V::fmadd(qd, V::load(pr + u * W), acc[u]);
  }
#pragma GCC unroll 16
  for (int u = 0; u < K; u++) V::store(s + u * W, acc[u]);
}

// scores_row_k for ROWS query rows at once (q[r] → s[r], vectors u0.. of each): each panel
// vector is loaded once for all of them, and ROWS·K accumulator chains run side by side where
// K alone wait on each other's latency. Every lane's sum is scores_row_k's, in the same order.
template <int ROWS, int K>
LK_TGT static inline void scores_rows_k(const float* const* q, const float* panel, int64_t D, float* const* s,
                                        int64_t u0) {
  R acc[ROWS][K];
#pragma GCC unroll 4
  for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 16
    for (int u = 0; u < K; u++) acc[r][u] = V::zero();
  for (int64_t d = 0; d < D; d++) {
    R x[ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; r++) x[r] = V::set1(q[r][d]);
    const float* pr = panel + d * Bk + u0 * W;
#pragma GCC unroll 16
    for (int u = 0; u < K; u++) {
      const R p = V::load(pr + u * W);
#pragma GCC unroll 4
      for (int r = 0; r < ROWS; r++) acc[r][u] = V::fmadd(x[r], p, acc[r][u]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 16
    for (int u = 0; u < K; u++) V::store(s[r] + (u0 + u) * W, acc[r][u]);
}

// s[0..Bk) = Σ_d q[d]·panel[d·Bk + j]
LK_TGT static inline void scores_row(const float* q, const float* panel, int64_t D, float* s) {
  scores_row_k<NU>(q, panel, D, s);
}

// The first nu vectors of a score row (1 ≤ nu ≤ NU): each lane's sum is that of scores_row.
LK_TGT static inline void scores_row_n(const float* q, const float* panel, int64_t D, float* s, int64_t nu) {
  switch (nu) {
    case 1: return scores_row_k<1>(q, panel, D, s);
    case 2: return scores_row_k<(NU >= 2 ? 2 : NU)>(q, panel, D, s);
    case 3: return scores_row_k<(NU >= 3 ? 3 : NU)>(q, panel, D, s);
    case 4: return scores_row_k<(NU >= 4 ? 4 : NU)>(q, panel, D, s);
    case 5: return scores_row_k<(NU >= 5 ? 5 : NU)>(q, panel, D, s);
    case 6: return scores_row_k<(NU >= 6 ? 6 : NU)>(q, panel, D, s);
    case 7: return scores_row_k<(NU >= 7 ? 7 : NU)>(q, panel, D, s);
    default: return scores_row_k<NU>(q, panel, D, s);
  }
}

// Query rows the forward scores and accumulates together: 4 where 32 registers hold 4·4
// score accumulators (AVX-512: 1.2× a 128-token prompt's forward over two rows), else 2.
constexpr int kAttnRows = W >= 16 ? 4 : 2;
// Score vectors a group of ROWS rows accumulates per pass: ROWS·K accumulators, the K panel
// vectors and ROWS broadcasts fit the registers (2·4 + 4 + 2 of AVX2's 16).
template <int ROWS>
constexpr int kScoreVectors = ROWS == 2 || W >= 16 ? 4 : 2;

// scores_rows_k over vectors [u0, u0 + k) for k ≤ K (a template argument per k).
template <int ROWS, int K>
LK_TGT static inline void scores_rows_upto(int64_t k, const float* const* q, const float* panel, int64_t D,
                                           float* const* s, int64_t u0) {
  if constexpr (K > 1)
    if (k < K) return scores_rows_upto<ROWS, K - 1>(k, q, panel, D, s, u0);
  scores_rows_k<ROWS, K>(q, panel, D, s, u0);
}

// The first nu vectors of ROWS score rows (1 ≤ nu ≤ NU), each lane's sum that of scores_row.
template <int ROWS>
LK_TGT static inline void scores_rows_n(const float* const* q, const float* panel, int64_t D, float* const* s,
                                        int64_t nu) {
  constexpr int K = kScoreVectors<ROWS>;
  for (int64_t u0 = 0; u0 < nu; u0 += K) scores_rows_upto<ROWS, K>(std::min<int64_t>(K, nu - u0), q, panel, D, s, u0);
}

// panel[d·Bk + j] = rows[j·stride + d] for j < n, 0 for n ≤ j < pad (≤ Bk). Blocks of 8 keys ×
// 8 channels are moved by an 8×8 transpose (V::transpose8), the rest one float at a time.
LK_TGT static void pack_panel(const float* rows, int64_t stride, int64_t n, int64_t D, float* panel,
                              int64_t pad = Bk) {
  const int64_t n8 = n / 8 * 8, d8 = D / 8 * 8;
  for (int64_t j = 0; j < n8; j += 8)
    for (int64_t d = 0; d < d8; d += 8) V::transpose8(rows + j * stride + d, stride, panel + d * Bk + j, Bk);
  for (int64_t d = 0; d < D; d++) {
    float* pr = panel + d * Bk;
    if (d >= d8)
      for (int64_t j = 0; j < n8; j++) pr[j] = rows[j * stride + d];
    for (int64_t j = n8; j < n; j++) pr[j] = rows[j * stride + d];
    for (int64_t j = n; j < pad; j++) pr[j] = 0.f;
  }
}

// bf16 bits → f32: the bf16 value is the top half of the f32 with the same bits (exact).
LK_TGT static inline float widen_bf16(uint16_t x) {
  const uint32_t u = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// pack_panel for bf16 rows, widened: the panel holds exactly the f32 values of the bf16 rows.
LK_TGT static void pack_panel(const uint16_t* rows, int64_t stride, int64_t n, int64_t D, float* panel,
                              int64_t pad = Bk) {
  for (int64_t d = 0; d < D; d++) {
    float* pr = panel + d * Bk;
    for (int64_t j = 0; j < n; j++) pr[j] = widen_bf16(rows[j * stride + d]);
    for (int64_t j = n; j < pad; j++) pr[j] = 0.f;
  }
}

// dst[j·D + d] = rows[j·stride + d] widened to f32, for j < n.
LK_TGT static void widen_rows(const uint16_t* rows, int64_t stride, int64_t n, int64_t D, float* dst) {
  for (int64_t j = 0; j < n; j++)
    for (int64_t d = 0; d < D; d++) dst[j * D + d] = widen_bf16(rows[j * stride + d]);
}

// ar[c..c+NB·W) = ar·corr + Σ_{j<vis} s[j]·vt[j·vstride + c..], all NB vectors full.
template <int NB>
LK_TGT static inline void pv_block(float* ar, R cv, const float* s, const float* vt, int64_t vstride, int64_t vis,
                                   int64_t c) {
  // The unroll pragmas keep r[] in registers (GCC spilled it to the stack every j otherwise).
  R r[NB];
#pragma GCC unroll 16
  for (int u = 0; u < NB; u++) r[u] = V::mul(V::load(ar + c + u * W), cv);
  const float* vr = vt + c;
  for (int64_t j = 0; j < vis; j++) {
    const R sj = V::set1(s[j]);
#pragma GCC unroll 16
    for (int u = 0; u < NB; u++) r[u] = V::fmadd(sj, V::load(vr + j * vstride + u * W), r[u]);
  }
#pragma GCC unroll 16
  for (int u = 0; u < NB; u++) V::store(ar + c + u * W, r[u]);
}

// ar[0..D) = ar·corr + Σ_{j<vis} s[j]·vt[j·vstride + 0..D), the sum taken in j order for every
// element. Up to 8 vectors of the row are accumulated side by side (j outer): independent FMA
// chains, where one vector at a time is a single chain whose every step waits on the last.
// Each element still goes through the same operations in the same order.
LK_TGT static inline void pv_accumulate(float* ar, R cv, const float* s, const float* vt, int64_t vstride,
                                        int64_t vis, int64_t D) {
  int64_t c = 0;
  for (; c + 8 * W <= D; c += 8 * W) pv_block<8>(ar, cv, s, vt, vstride, vis, c);
  for (; c + 4 * W <= D; c += 4 * W) pv_block<4>(ar, cv, s, vt, vstride, vis, c);
  // The rest (under four vectors, the last maybe partial): one vector at a time.
  for (; c < D; c += W) {
    const int64_t k = std::min<int64_t>(W, D - c);
    R r = V::mul(V::load(ar + c), cv);
    const float* vr = vt + c;
    if (k == W) {
      for (int64_t j = 0; j < vis; j++) r = V::fmadd(V::set1(s[j]), V::load(vr + j * vstride), r);
    } else {
      for (int64_t j = 0; j < vis; j++) r = V::fmadd(V::set1(s[j]), V::load_part(vr + j * vstride, k, 0.f), r);
    }
    V::store(ar + c, r);
  }
}

// pv_accumulate for ROWS rows over the same V tile (row r: accumulator ar[r], factor cv[r],
// probabilities s[r] of its vis[r] keys): their first min(vis) keys in one loop (each V
// vector loaded once for all rows), then the rest of each longer row alone. Every element goes
// through pv_accumulate's operations in the same order.
template <int ROWS>
LK_TGT static inline void pv_rows(float* const* ar, const R* cv, const float* const* s, const int64_t* vis,
                                  const float* vt, int64_t vstride, int64_t D) {
  constexpr int CB = kScoreVectors<ROWS>;  // vectors of a row per pass (the same register budget)
  int64_t both = vis[0];
  for (int r = 1; r < ROWS; r++) both = std::min(both, vis[r]);
  int64_t c = 0;
  for (; c + CB * W <= D; c += CB * W) {
    R acc[ROWS][CB];
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 4
      for (int u = 0; u < CB; u++) acc[r][u] = V::mul(V::load(ar[r] + c + u * W), cv[r]);
    const float* vr = vt + c;
    for (int64_t j = 0; j < both; j++) {
      R x[ROWS];
#pragma GCC unroll 4
      for (int r = 0; r < ROWS; r++) x[r] = V::set1(s[r][j]);
#pragma GCC unroll 4
      for (int u = 0; u < CB; u++) {
        const R v = V::load(vr + j * vstride + u * W);
#pragma GCC unroll 4
        for (int r = 0; r < ROWS; r++) acc[r][u] = V::fmadd(x[r], v, acc[r][u]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < ROWS; r++) {
      for (int64_t j = both; j < vis[r]; j++) {
        const R x = V::set1(s[r][j]);
#pragma GCC unroll 4
        for (int u = 0; u < CB; u++) acc[r][u] = V::fmadd(x, V::load(vr + j * vstride + u * W), acc[r][u]);
      }
#pragma GCC unroll 4
      for (int u = 0; u < CB; u++) V::store(ar[r] + c + u * W, acc[r][u]);
    }
  }
  if (c < D)  // under CB vectors left: each row alone (pv_accumulate from column c on)
    for (int r = 0; r < ROWS; r++) pv_accumulate(ar[r] + c, cv[r], s[r], vt + c, vstride, vis[r], D - c);
}

// One row's online softmax over a tile's scores sr (vis of them in nu vectors): its running
// max m and sum l move on, sr becomes exp(sr − max) (0 past vis), and the factor its
// accumulator is scaled by is returned. (A function, not a lambda: Clang compiles a lambda
// without its enclosing function's target attribute.)
LK_TGT static inline float online_softmax(float* sr, int64_t vis, int64_t nu, float& m, float& l) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t j = vis; j < Bk; j++) sr[j] = ninf;
  R mx = V::load(sr);
  for (int64_t u = 1; u < nu; u++) mx = V::max(mx, V::load(sr + u * W));
  const float mold = m;
  const float mnew = std::max(mold, V::hmax(mx));
  const float corr = std::exp(mold - mnew);
  const R mv = V::set1(mnew);
  R ps = V::zero();
  for (int64_t u = 0; u < nu; u++) {
    R e = V::exp(V::sub(V::load(sr + u * W), mv));
    V::store(sr + u * W, e);
    ps = V::add(ps, e);
  }
  l = l * corr + V::hsum(ps);
  m = mnew;
  return corr;
}

struct FwdScratch {
  std::vector<float> qs, acc, panel, m, l;
  std::vector<float> vtile;  // bf16 V: the tile's rows widened (Bk × D)
  float s[kAttnRows][Bk];
};

// The thread's scratch, through a call that is never inlined: a thread_local named inside the
// hot loops let GCC re-derive its address there (a __tls_get_addr call per key in the P·V
// loop, with every accumulator spilled to the stack around it: ~40 % of a prompt's forward).
__attribute__((noinline)) static FwdScratch& fwd_scratch() {
  thread_local FwdScratch sc;
  return sc;
}

// Rows i .. i+ROWS−1 of a forward item against one key tile (row r sees vis[r] > 0 of its
// keys in panel, its values in vt): scores, online softmax and P·V, the rows together where
// ROWS > 1 (each row's arithmetic is the one-row path's, so the bits do not depend on ROWS).
template <int ROWS>
LK_TGT static inline void attn_tile_rows(FwdScratch& sc, const float* qs, float* acc, int64_t i, int64_t Dp,
                                         int64_t D, const int64_t* vis, const float* vt, int64_t vstride) {
  const float* q[ROWS];
  float* s[ROWS];
  float* ar[ROWS];
  R cv[ROWS];
  int64_t nu = 0;
  for (int r = 0; r < ROWS; r++) {
    q[r] = qs + (i + r) * Dp;
    s[r] = sc.s[r];
    ar[r] = acc + (i + r) * Dp;
    nu = std::max(nu, (vis[r] + W - 1) / W);
  }
  if constexpr (ROWS == 1)
    scores_row_n(q[0], sc.panel.data(), D, s[0], nu);
  else
    scores_rows_n<ROWS>(q, sc.panel.data(), D, s, nu);
  for (int r = 0; r < ROWS; r++)
    cv[r] = V::set1(online_softmax(s[r], vis[r], (vis[r] + W - 1) / W, sc.m[i + r], sc.l[i + r]));
  if constexpr (ROWS == 1)
    pv_accumulate(ar[0], cv[0], s[0], vt, vstride, vis[0], D);
  else
    pv_rows<ROWS>(ar, cv, s, vis, vt, vstride, D);
}

// attn_tile_rows for the first g ≤ ROWS rows (a template argument per count).
template <int ROWS>
LK_TGT static inline void attn_tile_group(int g, FwdScratch& sc, const float* qs, float* acc, int64_t i, int64_t Dp,
                                          int64_t D, const int64_t* vis, const float* vt, int64_t vstride) {
  if constexpr (ROWS > 1)
    if (g < ROWS) return attn_tile_group<ROWS - 1>(g, sc, qs, acc, i, Dp, D, vis, vt, vstride);
  attn_tile_rows<ROWS>(sc, qs, acc, i, Dp, D, vis, vt, vstride);
}

// Queries [t0, t1) of every query head that shares KV head g (H/Hkv of them, GQA) against
// that head's keys: each tile of K is packed once for all of them (a decode step's one query
// per head used to repack the shared keys H/Hkv times). Each (head, query) row keeps its own
// running max, sum and accumulator and runs the same arithmetic as alone.
// E = float: k, v read in place; E = uint16_t (bf16 bits): each tile of K is widened while it
// is packed and each tile of V into sc.vtile, then the same arithmetic runs on those f32
// values, so the result is the f32 forward's over the widened k, v, bit for bit.
template <typename E>
LK_TGT static void attn_fwd_t(const AttnArgs& a, const E* kp, const E* vp, int64_t b, int64_t g, int64_t t0,
                              int64_t t1) {
  FwdScratch& sc = fwd_scratch();
  const int64_t D = a.D, Dp = round_up(D, W), nt = t1 - t0;
  const int64_t G = a.H / a.Hkv, h0 = g * G, nq = G * nt;  // row i: head h0 + i / nt, query t0 + i % nt
  const int64_t qstride = a.H * D, kvstride = a.Hkv * D;
  sc.qs.resize(nq * Dp);
  sc.acc.assign(nq * Dp, 0.f);
  sc.panel.resize(D * Bk);
  sc.m.assign(nq, -std::numeric_limits<float>::infinity());
  sc.l.assign(nq, 0.f);
  float* qs = sc.qs.data();
  float* acc = sc.acc.data();
  for (int64_t i = 0; i < nq; i++) {
    const float* qr = a.q + (b * a.T + t0 + i % nt) * qstride + (h0 + i / nt) * D;
    for (int64_t d = 0; d < D; d++) qs[i * Dp + d] = qr[d] * a.scale;
    for (int64_t d = D; d < Dp; d++) qs[i * Dp + d] = 0.f;
  }
  const int64_t kmax = a.causal ? std::min(a.S, a.offset + t1) : a.S;
  const E* kbase = kp + b * a.kvCap * kvstride + g * D;
  const E* vbase = vp + b * a.kvCap * kvstride + g * D;
  // f32 V is copied tile by tile too when enough query rows use each tile (see below).
  constexpr int64_t kCopyVRows = 16;
  if (!std::is_same_v<E, float> || nq >= kCopyVRows) sc.vtile.resize(Bk * D);
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t j0 = 0; j0 < kmax; j0 += Bk) {
    const int64_t nk = std::min(Bk, kmax - j0);
    // Only the vectors holding this tile's keys are packed and scored (a decode step's last
    // tile is mostly empty); the lanes past a row's visible keys are −∞ as before, and a
    // vector of them adds exactly 0 to the row's sum, so the result does not change.
    pack_panel(kbase + j0 * kvstride, kvstride, nk, D, sc.panel.data(), round_up(nk, W));
    // Rows of this tile's V as f32 and their stride.
    const float* vt;
    int64_t vstride;
    if constexpr (std::is_same_v<E, float>) {
      if (nq >= kCopyVRows) {
        // Rows kvstride apart (1 KiB on the 125M shape) fall into a few L1 sets: a tile's
        // 64 rows missed L1 on every pass of the P·V loop (~3× slower on a 128-token prompt).
        // A contiguous copy, reused by every query row of the item, holds the same values.
        for (int64_t j = 0; j < nk; j++) std::memcpy(sc.vtile.data() + j * D, vbase + (j0 + j) * kvstride, sizeof(float) * D);
        vt = sc.vtile.data();
        vstride = D;
      } else {
        vt = vbase + j0 * kvstride;
        vstride = kvstride;
      }
    } else {
      widen_rows(vbase + j0 * kvstride, kvstride, nk, D, sc.vtile.data());
      vt = sc.vtile.data();
      vstride = D;
    }
    // Keys of this tile row i sees.
    auto visible = [&](int64_t i) {
      return a.causal ? std::min(nk, a.offset + t0 + i % nt + 1 - j0) : nk;
    };
    // Up to kAttnRows consecutive rows that see keys of this tile at a time (the same
    // arithmetic per row as one at a time, with that many times the independent FMA chains).
    for (int64_t i = 0; i < nq;) {
      int64_t vis[kAttnRows];
      int g = 0;
      while (g < kAttnRows && i + g < nq && (vis[g] = visible(i + g)) > 0) g++;
      if (g == 0) {
        i++;
        continue;
      }
      attn_tile_group<kAttnRows>(g, sc, qs, acc, i, Dp, D, vis, vt, vstride);
      i += g;
    }
  }
  for (int64_t i = 0; i < nq; i++) {
    const int64_t t = t0 + i % nt, h = h0 + i / nt;
    float* orow = a.out_w + (b * a.T + t) * qstride + h * D;
    const float l = sc.l[i];
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (int64_t d = 0; d < D; d++) orow[d] = acc[i * Dp + d] * inv;
    a.lse_w[(b * a.H + h) * a.T + t] = l > 0.f ? sc.m[i] + std::log(l) : ninf;
  }
}

// Queries [t0, t1) of the query heads sharing KV head g, in batch b.
LK_TGT static void attn_fwd(const AttnArgs& a, int64_t b, int64_t g, int64_t t0, int64_t t1) {
  if (a.k16)
    attn_fwd_t<uint16_t>(a, a.k16, a.v16, b, g, t0, t1);
  else
    attn_fwd_t<float>(a, a.k, a.v, b, g, t0, t1);
}

constexpr int64_t BqB = 32;  // query rows per block in the backward

struct BwdScratch {
  std::vector<float> kpanel, vpanel, kr, dK, dV, qs, dO, P, dS;
};

// dV[j][c..c+NB·W) += Σ_i P[i,j]·dO[i][c..], dK[j][c..] += Σ_i dS[i,j]·qs[i][c..], i in order.
// NB vectors side by side: 2·NB independent FMA chains where one vector at a time made two
// (each step waiting ~4 cycles on the last); every element takes the same FMAs in the same order.
template <int NB>
LK_TGT static inline void dvdk_block(const float* P, const float* dS, const float* dO, const float* qs, float* dV,
                                     float* dK, int64_t Dp, int64_t nq, int64_t j, int64_t c) {
  R rv[NB], rk[NB];
#pragma GCC unroll 8
  for (int u = 0; u < NB; u++) {
    rv[u] = V::load(dV + j * Dp + c + u * W);
    rk[u] = V::load(dK + j * Dp + c + u * W);
  }
  for (int64_t i = 0; i < nq; i++) {
    const R p = V::set1(P[i * Bk + j]), ds = V::set1(dS[i * Bk + j]);
#pragma GCC unroll 8
    for (int u = 0; u < NB; u++) {
      rv[u] = V::fmadd(p, V::load(dO + i * Dp + c + u * W), rv[u]);
      rk[u] = V::fmadd(ds, V::load(qs + i * Dp + c + u * W), rk[u]);
    }
  }
#pragma GCC unroll 8
  for (int u = 0; u < NB; u++) {
    V::store(dV + j * Dp + c + u * W, rv[u]);
    V::store(dK + j * Dp + c + u * W, rk[u]);
  }
}

// dq[c..c+NB·W) += scale·Σ_j ds[j]·kr[j][c..] (the sum from zero in order of j, then one fma
// into dq), NB vectors side by side (one vector at a time was a single latency-bound chain).
template <int NB>
LK_TGT static inline void dq_block(const float* ds, const float* kr, int64_t Dp, int64_t nk, R scv, float* dqr,
                                   int64_t D, int64_t c) {
  R r[NB];
#pragma GCC unroll 8
  for (int u = 0; u < NB; u++) r[u] = V::zero();
  for (int64_t j = 0; j < nk; j++) {
    const R s = V::set1(ds[j]);
#pragma GCC unroll 8
    for (int u = 0; u < NB; u++) r[u] = V::fmadd(s, V::load(kr + j * Dp + c + u * W), r[u]);
  }
#pragma GCC unroll 8
  for (int u = 0; u < NB; u++) {
    const int64_t k = std::min<int64_t>(W, D - (c + u * W));
    V::store_part(dqr + c + u * W, V::fmadd(r[u], scv, V::load_part(dqr + c + u * W, k, 0.f)), k);
  }
}

// See fwd_scratch.
__attribute__((noinline)) static BwdScratch& bwd_scratch() {
  thread_local BwdScratch sc;
  return sc;
}

LK_TGT static void attn_bwd(const AttnArgs& a, int64_t b, int64_t g, int64_t s0, int64_t s1, float* dq, float* dk,
                            float* dv) {
  BwdScratch& sc = bwd_scratch();
  const int64_t D = a.D, Dp = round_up(D, W);
  const int64_t qstride = a.H * D, kvstride = a.Hkv * D;
  sc.kpanel.resize(D * Bk);
  sc.vpanel.resize(D * Bk);
  sc.kr.resize(Bk * Dp);
  sc.dK.resize(Bk * Dp);
  sc.dV.resize(Bk * Dp);
  sc.qs.resize(BqB * Dp);
  sc.dO.resize(BqB * Dp);
  sc.P.resize(BqB * Bk);
  sc.dS.resize(BqB * Bk);
  float *kr = sc.kr.data(), *dK = sc.dK.data(), *dV = sc.dV.data(), *qs = sc.qs.data(), *dO = sc.dO.data();
  float *P = sc.P.data(), *dS = sc.dS.data();
  const float* kbase = a.k + b * a.kvCap * kvstride + g * D;
  const float* vbase = a.v + b * a.kvCap * kvstride + g * D;
  const R scv = V::set1(a.scale);
  // Query heads of kv group g: h with floor(h·Hkv/H) == g.
  const int64_t h0 = (g * a.H + a.Hkv - 1) / a.Hkv, h1 = ((g + 1) * a.H + a.Hkv - 1) / a.Hkv;
  for (int64_t j0 = s0; j0 < s1; j0 += Bk) {
    const int64_t nk = std::min(Bk, s1 - j0);
    pack_panel(kbase + j0 * kvstride, kvstride, nk, D, sc.kpanel.data());
    pack_panel(vbase + j0 * kvstride, kvstride, nk, D, sc.vpanel.data());
    for (int64_t j = 0; j < Bk; j++) {
      for (int64_t d = 0; d < Dp; d++) kr[j * Dp + d] = (j < nk && d < D) ? kbase[(j0 + j) * kvstride + d] : 0.f;
    }
    std::fill(sc.dK.begin(), sc.dK.end(), 0.f);
    std::fill(sc.dV.begin(), sc.dV.end(), 0.f);
    const int64_t tstart = a.causal ? std::max<int64_t>(0, j0 - a.offset) : 0;
    for (int64_t h = h0; h < h1; h++) {
      for (int64_t tb = tstart; tb < a.T; tb += BqB) {
        const int64_t nq = std::min(BqB, a.T - tb);
        // Gather the (scaled) query rows and dout rows of this block.
        for (int64_t i = 0; i < nq; i++) {
          const float* qr = a.q + (b * a.T + tb + i) * qstride + h * D;
          const float* dr = a.dout + (b * a.T + tb + i) * qstride + h * D;
          for (int64_t d = 0; d < D; d++) {
            qs[i * Dp + d] = qr[d] * a.scale;
            dO[i * Dp + d] = dr[d];
          }
          for (int64_t d = D; d < Dp; d++) qs[i * Dp + d] = dO[i * Dp + d] = 0.f;
        }
        // P = exp(S − lse), dS = P ⊙ (dO·Vᵀ − Di), masked outside the visible keys.
        for (int64_t i = 0; i < nq; i++) {
          const int64_t t = tb + i;
          int64_t vis = nk;
          if (a.causal) vis = std::min(nk, a.offset + t + 1 - j0);
          float* pr = P + i * Bk;
          float* dsr = dS + i * Bk;
          if (vis <= 0) {
            for (int64_t j = 0; j < Bk; j++) pr[j] = dsr[j] = 0.f;
            continue;
          }
          const float lse = a.lse[(b * a.H + h) * a.T + t];
          const float di = a.di[(b * a.H + h) * a.T + t];
          scores_row(qs + i * Dp, sc.kpanel.data(), D, pr);
          scores_row(dO + i * Dp, sc.vpanel.data(), D, dsr);
          const R lv = V::set1(lse), dv_ = V::set1(di);
          for (int64_t u = 0; u < NU; u++) {
            R p = V::exp(V::sub(V::load(pr + u * W), lv));
            V::store(pr + u * W, p);
            V::store(dsr + u * W, V::mul(p, V::sub(V::load(dsr + u * W), dv_)));
          }
          for (int64_t j = vis; j < Bk; j++) pr[j] = dsr[j] = 0.f;
        }
        // dV[j] += Σ_i P[i,j]·dO[i];  dK[j] += Σ_i dS[i,j]·qs[i]  (qs already carries the scale)
        for (int64_t j = 0; j < nk; j++) {
          int64_t c = 0;
          for (; c + 4 * W <= Dp; c += 4 * W) dvdk_block<4>(P, dS, dO, qs, dV, dK, Dp, nq, j, c);
          for (; c + 2 * W <= Dp; c += 2 * W) dvdk_block<2>(P, dS, dO, qs, dV, dK, Dp, nq, j, c);
          for (; c < Dp; c += W) dvdk_block<1>(P, dS, dO, qs, dV, dK, Dp, nq, j, c);
        }
        // dq[t] += scale·Σ_j dS[i,j]·K[j]
        if (dq) {
          for (int64_t i = 0; i < nq; i++) {
            float* dqr = dq + (b * a.T + tb + i) * qstride + h * D;
            const float* dsr = dS + i * Bk;
            int64_t c = 0;
            for (; c + 8 * W <= Dp; c += 8 * W) dq_block<8>(dsr, kr, Dp, nk, scv, dqr, D, c);
            for (; c + 4 * W <= Dp; c += 4 * W) dq_block<4>(dsr, kr, Dp, nk, scv, dqr, D, c);
            for (; c < Dp; c += W) dq_block<1>(dsr, kr, Dp, nk, scv, dqr, D, c);
          }
        }
      }
    }
    for (int64_t j = 0; j < nk; j++) {
      if (dk) {
        float* o = dk + (b * a.kvCap + j0 + j) * kvstride + g * D;
        for (int64_t d = 0; d < D; d++) o[d] += dK[j * Dp + d];
      }
      if (dv) {
        float* o = dv + (b * a.kvCap + j0 + j) * kvstride + g * D;
        for (int64_t d = 0; d < D; d++) o[d] += dV[j * Dp + d];
      }
    }
  }
}

}  // namespace LK_NS

extern const Kernels LK_TABLE;
const Kernels LK_TABLE = {
    LK_ISA_NAME,          LK_NS::exp_arr,          LK_NS::sigmoid_arr,      LK_NS::silu_arr,
    LK_NS::silu_bwd,      LK_NS::silu_mul,         LK_NS::silu_mul_bwd,     LK_NS::softmax_rows,
    LK_NS::log_softmax_rows, LK_NS::softmax_bwd_rows, LK_NS::log_softmax_bwd_rows, LK_NS::ce_rows,
    LK_NS::ce_bwd_rows,   LK_NS::adamw,            LK_NS::attn_fwd,         LK_NS::attn_bwd,
};

}  // namespace ops
}  // namespace lorakit
