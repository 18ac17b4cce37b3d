// Optimizer update: one PyTorch AdamW step in place.
#include <cmath>

#include "ops_common.h"

namespace lorakit {
namespace ops {
namespace {

// adamw(param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step)
// PyTorch: param *= 1 − lr·wd; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
// param −= (lr/bc1) · m / (sqrt(v)/sqrt(bc2) + eps), bc_i = 1 − β_i^step.
void AdamW(const Args& A) {
  F32 p = A.f32(0, "param"), g = A.f32(1, "grad"), m = A.f32(2, "m"), v = A.f32(3, "v");
  const double lr = A.num(4, "lr"), b1 = A.num(5, "beta1"), b2 = A.num(6, "beta2"), eps = A.num(7, "eps");
  const double wd = A.num(8, "weightDecay"), step = A.num(9, "step");
  if (!(step >= 1)) A.fail("step must be ≥ 1");
  const int64_t n = p.n;
  A.need(g, n, "grad");
  A.need(m, n, "m");
  A.need(v, n, "v");
  const double bc1 = 1.0 - std::pow(b1, step), bc2 = 1.0 - std::pow(b2, step);
  const float step_size = static_cast<float>(lr / bc1), sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
  const float decay = static_cast<float>(1.0 - lr * wd);
  auto fn = kernels().adamw;
  parallel_for(n, kGrainCheap / 2, [&](int64_t b, int64_t e) {
    fn(p.p + b, g.p + b, m.p + b, v.p + b, e - b, static_cast<float>(b1), static_cast<float>(b2), step_size, sqrt_bc2,
       static_cast<float>(eps), decay);
  });
}

}  // namespace

void RegisterOptim(Napi::Env env, Napi::Object exports) { Export<AdamW>(env, exports, "adamw"); }

}  // namespace ops
}  // namespace lorakit
