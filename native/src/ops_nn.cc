// Fused layers: RMSNorm (+ backward), rotary embedding, SiLU·mul (+ backward).
#include <cmath>
#include <cstring>
#include <vector>

#include "ops_common.h"

namespace lorakit {
namespace ops {
namespace {

// rmsNorm(x, w, N, C, eps, y, rstd)
void RmsNorm(const Args& A) {
  F32 x = A.f32(0, "x"), w = A.f32(1, "w"), y = A.f32(5, "y"), rstd = A.f32(6, "rstd");
  const int64_t N = A.size(2, "N"), C = A.size(3, "C");
  const double eps = A.num(4, "eps");
  const int64_t n = checked_mul(A, N, C);
  A.need(x, n, "x");
  A.need(y, n, "y");
  A.need(w, C, "w");
  A.need(rstd, N, "rstd");
  parallel_for(N, row_grain(C, kGrainCheap / 2), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++) {
      const float* xr = x.p + r * C;
      float* yr = y.p + r * C;
      double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= C; i += 8)
        for (int j = 0; j < 8; j++) a[j] += static_cast<double>(xr[i + j]) * xr[i + j];
      double ss = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
      for (; i < C; i++) ss += static_cast<double>(xr[i]) * xr[i];
      const float rs = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + eps));
      rstd.p[r] = rs;
      for (int64_t k = 0; k < C; k++) yr[k] = (xr[k] * rs) * w.p[k];
    }
  });
}

// rmsNormBackward(x, w, rstd, dy, N, C, dx|null, dw|null, accumulateDx)
void RmsNormBackward(const Args& A) {
  F32 x = A.f32(0, "x"), w = A.f32(1, "w"), rstd = A.f32(2, "rstd"), dy = A.f32(3, "dy");
  const int64_t N = A.size(4, "N"), C = A.size(5, "C");
  F32 dx = A.f32_opt(6, "dx"), dw = A.f32_opt(7, "dw");
  const bool acc = A.flag(8);
  const int64_t n = checked_mul(A, N, C);
  A.need(x, n, "x");
  A.need(dy, n, "dy");
  A.need(w, C, "w");
  A.need(rstd, N, "rstd");
  if (dx) A.need(dx, n, "dx");
  if (dw) A.need(dw, C, "dw");
  if (!dx && !dw) return;
  const int64_t maxc = std::max<int64_t>(1, num_threads());
  std::vector<double> part(dw ? static_cast<size_t>(maxc * C) : 0, 0.0);
  const int64_t nc = parallel_chunks(N, row_grain(C, kGrainCheap / 2), [&](int64_t c, int64_t b, int64_t e) {
    double* pw = dw ? part.data() + c * C : nullptr;
    for (int64_t r = b; r < e; r++) {
      const float* xr = x.p + r * C;
      const float* gr = dy.p + r * C;
      const float rs = rstd.p[r];
      if (pw)
        for (int64_t k = 0; k < C; k++) pw[k] += static_cast<double>(gr[k]) * (xr[k] * rs);
      if (dx) {
        double dot = 0;
        for (int64_t k = 0; k < C; k++) dot += static_cast<double>(gr[k] * w.p[k]) * (xr[k] * rs);
        const float m = static_cast<float>(dot / static_cast<double>(C));
        float* dr = dx.p + r * C;
        for (int64_t k = 0; k < C; k++) {
          const float g = rs * (gr[k] * w.p[k] - (xr[k] * rs) * m);
          dr[k] = acc ? dr[k] + g : g;
        }
      }
    }
  });
  if (dw) {
    for (int64_t k = 0; k < C; k++) {
      double s = 0;
      for (int64_t c = 0; c < nc; c++) s += part[c * C + k];
      dw.p[k] = static_cast<float>(dw.p[k] + s);
    }
  }
}

// rope(x, cos, sin, B, T, H, D, inverse, out)
void Rope(const Args& A) {
  F32 x = A.f32(0, "x"), cs = A.f32(1, "cos"), sn = A.f32(2, "sin"), out = A.f32(8, "out");
  const int64_t B = A.size(3, "B"), T = A.size(4, "T"), H = A.size(5, "H"), D = A.size(6, "D");
  const bool inverse = A.flag(7);
  if (D % 2 != 0) A.fail("D must be even");
  const int64_t half = D / 2;
  const int64_t n = checked_mul(A, checked_mul(A, checked_mul(A, B, T), H), D);
  A.need(x, n, "x");
  A.need(out, n, "out");
  A.need(cs, T * half, "cos");
  A.need(sn, T * half, "sin");
  const float sg = inverse ? -1.f : 1.f;
  parallel_for(B * T, row_grain(H * D, kGrainCheap / 2), [&](int64_t b, int64_t e) {
    for (int64_t bt = b; bt < e; bt++) {
      const int64_t t = bt % T;
      const float* c = cs.p + t * half;
      const float* s = sn.p + t * half;
      for (int64_t h = 0; h < H; h++) {
        const float* xr = x.p + (bt * H + h) * D;
        float* o = out.p + (bt * H + h) * D;
        for (int64_t i = 0; i < half; i++) {
          const float x1 = xr[i], x2 = xr[i + half], si = sg * s[i];
          o[i] = x1 * c[i] - x2 * si;
          o[i + half] = x2 * c[i] + x1 * si;
        }
      }
    }
  });
}

// siluMul(gate, up, out)
void SiluMul(const Args& A) {
  F32 g = A.f32(0, "gate"), u = A.f32(1, "up"), out = A.f32(2, "out");
  const int64_t n = out.n;
  A.need(g, n, "gate");
  A.need(u, n, "up");
  auto fn = kernels().silu_mul;
  parallel_for(n, kGrainMath, [&](int64_t b, int64_t e) { fn(g.p + b, u.p + b, out.p + b, e - b); });
}

// siluMulBackward(gate, up, dy, dgate|null, dup|null, accumulate)
void SiluMulBackward(const Args& A) {
  F32 g = A.f32(0, "gate"), u = A.f32(1, "up"), dy = A.f32(2, "dy");
  F32 dg = A.f32_opt(3, "dgate"), du = A.f32_opt(4, "dup");
  const bool acc = A.flag(5);
  const int64_t n = dy.n;
  A.need(g, n, "gate");
  A.need(u, n, "up");
  if (dg) A.need(dg, n, "dgate");
  if (du) A.need(du, n, "dup");
  if (!dg && !du) return;
  auto fn = kernels().silu_mul_bwd;
  parallel_for(n, kGrainMath, [&](int64_t b, int64_t e) {
    fn(g.p + b, u.p + b, dy.p + b, dg ? dg.p + b : nullptr, du ? du.p + b : nullptr, e - b, acc);
  });
}

}  // namespace

void RegisterNN(Napi::Env env, Napi::Object exports) {
  Export<RmsNorm>(env, exports, "rmsNorm");
  Export<RmsNormBackward>(env, exports, "rmsNormBackward");
  Export<Rope>(env, exports, "rope");
  Export<SiluMul>(env, exports, "siluMul");
  Export<SiluMulBackward>(env, exports, "siluMulBackward");
}

}  // namespace ops
}  // namespace lorakit
