// Reductions and row-wise normalisers: reduce (sum/max over any axes), softmax,
// log-softmax (+ backwards), cross-entropy (+ backward).
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ops_common.h"

namespace lorakit {
namespace ops {
namespace {

inline float max_nan(float m, float v) { return (v > m || v != v) ? v : m; }

double row_sum(const float* x, int64_t n, int64_t stride) {
  if (stride == 1) {
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; j++) a[j] += x[i + j];
    double s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < n; i++) s += x[i];
    return s;
  }
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i * stride];
  return s;
}

float row_max_nan(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; i++) m = max_nan(m, x[i]);
  return m;
}

// reduce(op, x, shape, axes, out)   op: 0 sum, 1 max
void Reduce(const Args& A) {
  const int64_t op = A.integer(0, "op");
  if (op != 0 && op != 1) A.fail("op must be 0 (sum) or 1 (max)");
  F32 x = A.f32(1, "x"), out = A.f32(4, "out");
  auto shape = A.dims(2, "shape");
  auto axes = A.dims(3, "axes");
  const size_t r = shape.size();
  std::vector<bool> red(r, false);
  for (int64_t ax : axes) {
    if (ax >= static_cast<int64_t>(r)) A.fail("axis out of range");
    red[ax] = true;
  }
  int64_t n = 1, m = 1;
  for (size_t k = 0; k < r; k++) {
    n = checked_mul(A, n, shape[k]);
    if (!red[k]) m *= shape[k];
  }
  A.need(x, n, "x");
  A.need(out, m, "out");
  if (m == 0) return;
  if (n == 0) {  // reducing empty axes
    const float id = op == 0 ? 0.f : -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < m; i++) out.p[i] = id;
    return;
  }
  // Collapse into groups of (size, reduced) with size-1 axes dropped.
  std::vector<int64_t> gs;
  std::vector<bool> gr;
  for (size_t k = 0; k < r; k++) {
    if (shape[k] == 1) continue;
    if (!gs.empty() && gr.back() == red[k])
      gs.back() *= shape[k];
    else {
      gs.push_back(shape[k]);
      gr.push_back(red[k]);
    }
  }
  // Canonical (Aouter kept, R reduced, I inner kept) when at most one reduced group.
  int reduced_groups = 0;
  for (bool b : gr) reduced_groups += b;
  if (reduced_groups == 0) {
    std::memmove(out.p, x.p, sizeof(float) * m);
    return;
  }
  if (reduced_groups == 1) {
    int64_t Ao = 1, R = 1, I = 1;
    bool seen = false;
    for (size_t k = 0; k < gs.size(); k++) {
      if (gr[k]) {
        R = gs[k];
        seen = true;
      } else if (!seen) {
        Ao *= gs[k];
      } else {
        I *= gs[k];
      }
    }
    if (I == 1) {
      parallel_for(Ao, row_grain(R, kGrainCheap), [&](int64_t b, int64_t e) {
        for (int64_t a = b; a < e; a++) {
          const float* xr = x.p + a * R;
          out.p[a] = op == 0 ? static_cast<float>(row_sum(xr, R, 1)) : row_max_nan(xr, R);
        }
      });
      return;
    }
    constexpr int64_t kBlock = 512;
    const int64_t nb = (I + kBlock - 1) / kBlock;
    parallel_for(Ao * nb, row_grain(R * kBlock, kGrainCheap), [&](int64_t b, int64_t e) {
      double acc[kBlock];
      float mx[kBlock];
      for (int64_t item = b; item < e; item++) {
        const int64_t a = item / nb, i0 = (item % nb) * kBlock, len = std::min(kBlock, I - i0);
        const float* base = x.p + a * R * I + i0;
        if (op == 0) {
          for (int64_t i = 0; i < len; i++) acc[i] = 0;
          for (int64_t rr = 0; rr < R; rr++) {
            const float* xr = base + rr * I;
            for (int64_t i = 0; i < len; i++) acc[i] += xr[i];
          }
          for (int64_t i = 0; i < len; i++) out.p[a * I + i0 + i] = static_cast<float>(acc[i]);
        } else {
          for (int64_t i = 0; i < len; i++) mx[i] = -std::numeric_limits<float>::infinity();
          for (int64_t rr = 0; rr < R; rr++) {
            const float* xr = base + rr * I;
            for (int64_t i = 0; i < len; i++) mx[i] = max_nan(mx[i], xr[i]);
          }
          for (int64_t i = 0; i < len; i++) out.p[a * I + i0 + i] = mx[i];
        }
      }
    });
    return;
  }
  // General pattern (several separated reduced groups): one pass over x with an
  // odometer over the collapsed groups, accumulating into out positions.
  const size_t g = gs.size();
  std::vector<int64_t> ostride(g, 0);
  int64_t p = 1;
  for (size_t k = g; k-- > 0;) {
    if (!gr[k]) {
      ostride[k] = p;
      p *= gs[k];
    }
  }
  std::vector<double> acc(op == 0 ? m : 0, 0.0);
  if (op == 1)
    for (int64_t i = 0; i < m; i++) out.p[i] = -std::numeric_limits<float>::infinity();
  std::vector<int64_t> idx(g, 0);
  const int64_t inner = gs[g - 1], istr = ostride[g - 1];
  for (int64_t pos = 0; pos < n; pos += inner) {
    int64_t o = 0;
    for (size_t k = 0; k + 1 < g; k++) o += idx[k] * ostride[k];
    const float* xr = x.p + pos;
    if (op == 0) {
      if (istr == 0)
        acc[o] += row_sum(xr, inner, 1);
      else
        for (int64_t i = 0; i < inner; i++) acc[o + i] += xr[i];
    } else {
      if (istr == 0)
        out.p[o] = max_nan(out.p[o], row_max_nan(xr, inner));
      else
        for (int64_t i = 0; i < inner; i++) out.p[o + i] = max_nan(out.p[o + i], xr[i]);
    }
    for (size_t k = g - 1; k-- > 0;) {
      if (++idx[k] < gs[k]) break;
      idx[k] = 0;
    }
  }
  if (op == 0)
    for (int64_t i = 0; i < m; i++) out.p[i] = static_cast<float>(acc[i]);
}

using RowsFn = void (*)(const float*, float*, int64_t, int64_t);
using RowsBwdFn = void (*)(const float*, const float*, float*, int64_t, int64_t, bool);

void rows_fwd(const Args& A, RowsFn Kernels::*which) {
  F32 x = A.f32(0, "x"), out = A.f32(3, "out");
  const int64_t N = A.size(1, "N"), C = A.size(2, "C");
  const int64_t n = checked_mul(A, N, C);
  A.need(x, n, "x");
  A.need(out, n, "out");
  RowsFn fn = kernels().*which;
  parallel_for(N, row_grain(C, kGrainMath),
               [&](int64_t b, int64_t e) { fn(x.p + b * C, out.p + b * C, e - b, C); });
}

void rows_bwd(const Args& A, RowsBwdFn Kernels::*which) {
  F32 y = A.f32(0, "y"), dy = A.f32(1, "dy"), dx = A.f32(4, "dx");
  const int64_t N = A.size(2, "N"), C = A.size(3, "C");
  const bool acc = A.flag(5);
  const int64_t n = checked_mul(A, N, C);
  A.need(y, n, "y");
  A.need(dy, n, "dy");
  A.need(dx, n, "dx");
  RowsBwdFn fn = kernels().*which;
  parallel_for(N, row_grain(C, kGrainMath),
               [&](int64_t b, int64_t e) { fn(y.p + b * C, dy.p + b * C, dx.p + b * C, e - b, C, acc); });
}

void Softmax(const Args& A) { rows_fwd(A, &Kernels::softmax_rows); }
void LogSoftmax(const Args& A) { rows_fwd(A, &Kernels::log_softmax_rows); }
void SoftmaxBackward(const Args& A) { rows_bwd(A, &Kernels::softmax_bwd_rows); }
void LogSoftmaxBackward(const Args& A) { rows_bwd(A, &Kernels::log_softmax_bwd_rows); }

void check_targets(const Args& A, const int32_t* t, int64_t N, int64_t V, int32_t ignore) {
  for (int64_t i = 0; i < N; i++) {
    if (t[i] != ignore && (t[i] < 0 || t[i] >= V))
      A.fail("target " + std::to_string(t[i]) + " at row " + std::to_string(i) + " is outside [0, " +
             std::to_string(V) + ")");
  }
}

// crossEntropy(logits, targets, N, V, ignoreIndex, loss, lse)
void CrossEntropy(const Args& A) {
  F32 logits = A.f32(0, "logits"), loss = A.f32(5, "loss"), lse = A.f32(6, "lse");
  const int64_t N = A.size(2, "N"), V = A.size(3, "V");
  const int32_t ignore = static_cast<int32_t>(A.integer(4, "ignoreIndex"));
  const int32_t* t = A.i32(1, "targets", N);
  A.need(logits, checked_mul(A, N, V), "logits");
  A.need(loss, N, "loss");
  A.need(lse, N, "lse");
  check_targets(A, t, N, V, ignore);
  auto fn = kernels().ce_rows;
  parallel_for(N, row_grain(V, kGrainMath), [&](int64_t b, int64_t e) {
    fn(logits.p + b * V, t + b, e - b, V, ignore, loss.p + b, lse.p + b);
  });
}

// crossEntropyBackward(logits, targets, lse, gradScale, N, V, ignoreIndex, dlogits, accumulate)
void CrossEntropyBackward(const Args& A) {
  F32 logits = A.f32(0, "logits"), lse = A.f32(2, "lse"), gs = A.f32(3, "gradScale"), dl = A.f32(7, "dlogits");
  const int64_t N = A.size(4, "N"), V = A.size(5, "V");
  const int32_t ignore = static_cast<int32_t>(A.integer(6, "ignoreIndex"));
  const bool acc = A.flag(8);
  const int32_t* t = A.i32(1, "targets", N);
  const int64_t n = checked_mul(A, N, V);
  A.need(logits, n, "logits");
  A.need(dl, n, "dlogits");
  A.need(lse, N, "lse");
  A.need(gs, N, "gradScale");
  check_targets(A, t, N, V, ignore);
  auto fn = kernels().ce_bwd_rows;
  parallel_for(N, row_grain(V, kGrainMath), [&](int64_t b, int64_t e) {
    fn(logits.p + b * V, t + b, lse.p + b, gs.p + b, e - b, V, ignore, dl.p + b * V, acc);
  });
}

}  // namespace

void RegisterReduce(Napi::Env env, Napi::Object exports) {
  Export<Reduce>(env, exports, "reduce");
  Export<Softmax>(env, exports, "softmax");
  Export<SoftmaxBackward>(env, exports, "softmaxBackward");
  Export<LogSoftmax>(env, exports, "logSoftmax");
  Export<LogSoftmaxBackward>(env, exports, "logSoftmaxBackward");
  Export<CrossEntropy>(env, exports, "crossEntropy");
  Export<CrossEntropyBackward>(env, exports, "crossEntropyBackward");
}

}  // namespace ops
}  // namespace lorakit
