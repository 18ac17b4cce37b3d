// The optimizer update in SIMD128: one PyTorch AdamW step in place, the same f32 arithmetic
// in the same order as the native kernel (native/src/ops_kernels_impl.h adamw; bit for bit
// with its portable level), the step's constants formed in f64 by the host (../optim.ts).
#include "simd.h"

/**
 * m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g·g; p = p·decay − step_size·m / (√v / sqrt_bc2 + eps),
 * on the f32x4 groups of thread `tid`'s share of [0, n).
 */
void EXPORT(wasm_adamw)(float* p, const float* g, float* m, float* v, int n, float b1, float b2, float step_size,
                        float sqrt_bc2, float eps, float decay, int tid, int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  p += lo, g += lo, m += lo, v += lo, n = hi - lo;
  const v128_t vb1 = wasm_f32x4_splat(b1), vb2 = wasm_f32x4_splat(b2);
  const v128_t c1 = wasm_f32x4_splat(1.0f - b1), c2 = wasm_f32x4_splat(1.0f - b2);
  const v128_t vss = wasm_f32x4_splat(step_size), vbc = wasm_f32x4_splat(sqrt_bc2);
  const v128_t veps = wasm_f32x4_splat(eps), vdec = wasm_f32x4_splat(decay);
  for (int i = 0; i < n; i += 4) {
    int left = n - i;
    v128_t gv = load_part(g + i, left);
    v128_t mv = wasm_f32x4_add(wasm_f32x4_mul(vb1, load_part(m + i, left)), wasm_f32x4_mul(c1, gv));
    v128_t vv = wasm_f32x4_add(wasm_f32x4_mul(vb2, load_part(v + i, left)), wasm_f32x4_mul(wasm_f32x4_mul(c2, gv), gv));
    v128_t den = wasm_f32x4_add(wasm_f32x4_div(wasm_f32x4_sqrt(vv), vbc), veps);
    v128_t pv = wasm_f32x4_mul(load_part(p + i, left), vdec);
    pv = wasm_f32x4_sub(pv, wasm_f32x4_mul(vss, wasm_f32x4_div(mv, den)));
    store_part(m + i, mv, left);
    store_part(v + i, vv, left);
    store_part(p + i, pv, left);
  }
}
