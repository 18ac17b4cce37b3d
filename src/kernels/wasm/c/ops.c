// Row and element-wise kernels in SIMD128, as kernels/ref/nn.ts computes them (in f32 here,
// with a vector expf): SiLU·mul, cross-entropy and RMSNorm, each with its backward.
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name))) name

/**
 * e^x on four lanes: Cephes' expf (range reduction by ln 2 in two parts, degree-6
 * polynomial, about 1 ulp), x clamped to [−87, 88] so 2ⁿ stays a normal number.
 */
static v128_t exp_f32x4(v128_t x) {
  x = wasm_f32x4_pmax(wasm_f32x4_splat(-87.0f), wasm_f32x4_pmin(wasm_f32x4_splat(88.0f), x));
  v128_t n = wasm_f32x4_floor(wasm_f32x4_add(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)), wasm_f32x4_splat(0.5f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_add(r, wasm_f32x4_mul(n, wasm_f32x4_splat(2.12194440e-4f)));
  v128_t z = wasm_f32x4_mul(r, r);
  v128_t y = wasm_f32x4_splat(1.9875691500e-4f);
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(1.3981999507e-3f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(8.3334519073e-3f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(4.1665795894e-2f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(1.6666665459e-1f));
  y = wasm_f32x4_add(wasm_f32x4_mul(y, r), wasm_f32x4_splat(5.0000001201e-1f));
  y = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(y, z), r), wasm_f32x4_splat(1.0f));
  v128_t pow2 = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(y, pow2);
}

/** σ(g) = 1 / (1 + e^−g) on four lanes. */
static v128_t sigmoid_f32x4(v128_t g) {
  v128_t one = wasm_f32x4_splat(1.0f);
  return wasm_f32x4_div(one, wasm_f32x4_add(one, exp_f32x4(wasm_f32x4_neg(g))));
}

/** Loads lanes i..i+3 of x, or the first `left` of them (the rest 0) at the tail. */
static v128_t load_part(const float* x, int left) {
  if (left >= 4) return wasm_v128_load(x);
  float t[4] = {0, 0, 0, 0};
  for (int j = 0; j < left; j++) t[j] = x[j];
  return wasm_v128_load(t);
}

static void store_part(float* y, v128_t v, int left) {
  if (left >= 4) {
    wasm_v128_store(y, v);
    return;
  }
  float t[4];
  wasm_v128_store(t, v);
  for (int j = 0; j < left; j++) y[j] = t[j];
}

/**
 * Part `part` of `parts` of [0, n) in whole units of `unit` (the last unit may be short):
 * how the elementwise and row kernels split their work between threads. A split on whole
 * f32x4 groups or whole rows leaves each element's arithmetic as it is on one thread.
 */
static void split(int n, int unit, int part, int parts, int* lo, int* hi) {
  int units = (n + unit - 1) / unit;
  int a = (int)((long long)units * part / parts);
  int b = (int)((long long)units * (part + 1) / parts);
  *lo = a * unit < n ? a * unit : n;
  *hi = b * unit < n ? b * unit : n;
}

/** out = silu(gate)·up, elements of thread `tid`'s share. */
void EXPORT(wasm_silu_mul)(const float* gate, const float* up, float* out, int n, int tid, int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  gate += lo, up += lo, out += lo, n = hi - lo;
  for (int i = 0; i < n; i += 4) {
    int left = n - i;
    v128_t g = load_part(gate + i, left);
    v128_t v = wasm_f32x4_mul(wasm_f32x4_mul(g, sigmoid_f32x4(g)), load_part(up + i, left));
    store_part(out + i, v, left);
  }
}

/** dgate (+)= dy·up·σ(g)·(1 + g·(1−σ(g))), dup (+)= dy·g·σ(g); either may be null (0). */
void EXPORT(wasm_silu_mul_backward)(const float* gate, const float* up, const float* dy, float* dgate, float* dup,
                                    int n, int acc, int tid, int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  gate += lo, up += lo, dy += lo, n = hi - lo;
  if (dgate) dgate += lo;
  if (dup) dup += lo;
  v128_t one = wasm_f32x4_splat(1.0f);
  for (int i = 0; i < n; i += 4) {
    int left = n - i;
    v128_t g = load_part(gate + i, left);
    v128_t s = sigmoid_f32x4(g);
    v128_t d = load_part(dy + i, left);
    if (dgate) {
      v128_t inner = wasm_f32x4_add(one, wasm_f32x4_mul(g, wasm_f32x4_sub(one, s)));
      v128_t v = wasm_f32x4_mul(wasm_f32x4_mul(wasm_f32x4_mul(d, load_part(up + i, left)), s), inner);
      if (acc) v = wasm_f32x4_add(load_part(dgate + i, left), v);
      store_part(dgate + i, v, left);
    }
    if (dup) {
      v128_t v = wasm_f32x4_mul(wasm_f32x4_mul(d, g), s);
      if (acc) v = wasm_f32x4_add(load_part(dup + i, left), v);
      store_part(dup + i, v, left);
    }
  }
}

static float hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

/**
 * Cross-entropy's row statistics: row_max[r] and row_sum[r] = Σ e^(x − max) of each row of
 * logits (N, V); the host forms lse = max + log(sum) and the loss. A row whose max is ±∞
 * gets sum 1, so lse is that max (as the reference).
 */
void EXPORT(wasm_row_max_sumexp)(const float* x, int N, int V, float* row_max, float* row_sum, int tid, int nth) {
  int r0, r1;
  split(N, 1, tid, nth, &r0, &r1);
  for (int r = r0; r < r1; r++) {
    const float* row = x + (long)r * V;
    float max = -__builtin_inff();
    for (int c = 0; c < V; c++)
      if (row[c] > max) max = row[c];
    row_max[r] = max;
    if (max == __builtin_inff() || max == -__builtin_inff()) {
      row_sum[r] = 1.0f;
      continue;
    }
    v128_t vmax = wasm_f32x4_splat(max);
    v128_t acc = wasm_f32x4_splat(0);
    int c = 0;
    for (; c + 4 <= V; c += 4) acc = wasm_f32x4_add(acc, exp_f32x4(wasm_f32x4_sub(wasm_v128_load(row + c), vmax)));
    float sum = hsum(acc);
    if (c < V) {
      // The lanes beyond V were loaded as 0: only the first V − c are added.
      float t[4];
      wasm_v128_store(t, exp_f32x4(wasm_f32x4_sub(load_part(row + c, V - c), vmax)));
      for (int j = 0; j < V - c; j++) sum += t[j];
    }
    row_sum[r] = sum;
  }
}

/**
 * dlogits[r,:] (+)= scale[r]·(e^(logits[r,:] − lse[r]) − onehot(target[r])); rows whose
 * target is ignore_index get 0 (or keep their contents when accumulating). Targets are
 * checked by the host.
 */
void EXPORT(wasm_cross_entropy_backward)(const float* logits, const int* targets, const float* lse,
                                         const float* scale, int N, int V, int ignore_index, float* dlogits, int acc,
                                         int tid, int nth) {
  int r0, r1;
  split(N, 1, tid, nth, &r0, &r1);
  for (int r = r0; r < r1; r++) {
    const float* row = logits + (long)r * V;
    float* d = dlogits + (long)r * V;
    int t = targets[r];
    if (t == ignore_index) {
      if (!acc)
        for (int c = 0; c < V; c++) d[c] = 0.0f;
      continue;
    }
    v128_t vl = wasm_f32x4_splat(lse[r]);
    v128_t vs = wasm_f32x4_splat(scale[r]);
    for (int c = 0; c < V; c += 4) {
      int left = V - c;
      v128_t g = wasm_f32x4_mul(vs, exp_f32x4(wasm_f32x4_sub(load_part(row + c, left), vl)));
      if (acc) g = wasm_f32x4_add(load_part(d + c, left), g);
      store_part(d + c, g, left);
    }
    d[t] -= scale[r];
  }
}

/** y = x·rstd·w per row of x (N, C), rstd = 1/√(mean(x²) + eps) (formed in f64 from an f32 sum). */
void EXPORT(wasm_rms_norm)(const float* x, const float* w, int N, int C, float eps, float* y, float* rstd, int tid,
                           int nth) {
  int r0, r1;
  split(N, 1, tid, nth, &r0, &r1);
  for (int r = r0; r < r1; r++) {
    const float* xr = x + (long)r * C;
    float* yr = y + (long)r * C;
    v128_t acc = wasm_f32x4_splat(0);
    int c = 0;
    for (; c + 4 <= C; c += 4) {
      v128_t v = wasm_v128_load(xr + c);
      acc = wasm_f32x4_add(acc, wasm_f32x4_mul(v, v));
    }
    float ss = hsum(acc);
    for (; c < C; c++) ss += xr[c] * xr[c];
    float rs = (float)(1.0 / __builtin_sqrt((double)ss / C + (double)eps));
    rstd[r] = rs;
    v128_t vr = wasm_f32x4_splat(rs);
    for (c = 0; c + 4 <= C; c += 4)
      wasm_v128_store(yr + c, wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(xr + c), vr), wasm_v128_load(w + c)));
    for (; c < C; c++) yr[c] = xr[c] * rs * w[c];
  }
}

/**
 * dx_j (+)= r·(w_j·dy_j − x_j·r²·Σ_i dy_i·w_i·x_i / C) when dx is non-null; dw_j += Σ_rows
 * dy_j·x_j·r when dw is non-null (summed over the rows in dw_acc, C floats of scratch, then
 * added once). Thread `tid` of `nth` computes dx for a range of rows and dw for a range of
 * columns (each column summed over all rows in order, as on one thread).
 */
void EXPORT(wasm_rms_norm_backward)(const float* x, const float* w, const float* rstd, const float* dy, int N, int C,
                                    float* dx, float* dw, int acc_dx, float* dw_acc, int tid, int nth) {
  if (dw) {
    int c0, c1;
    split(C, 4, tid, nth, &c0, &c1);
    for (int c = c0; c < c1; c++) dw_acc[c] = 0.0f;
    for (int r = 0; r < N; r++) {
      const float* xr = x + (long)r * C;
      const float* g = dy + (long)r * C;
      float rs = rstd[r];
      v128_t vr = wasm_f32x4_splat(rs);
      int c = c0;
      for (; c + 4 <= c1; c += 4) {
        v128_t v = wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(g + c), wasm_v128_load(xr + c)), vr);
        wasm_v128_store(dw_acc + c, wasm_f32x4_add(wasm_v128_load(dw_acc + c), v));
      }
      for (; c < c1; c++) dw_acc[c] += g[c] * xr[c] * rs;
    }
    for (int c = c0; c < c1; c++) dw[c] += dw_acc[c];
  }
  if (!dx) return;
  int r0, r1;
  split(N, 1, tid, nth, &r0, &r1);
  for (int r = r0; r < r1; r++) {
    const float* xr = x + (long)r * C;
    const float* g = dy + (long)r * C;
    float rs = rstd[r];
    v128_t vr = wasm_f32x4_splat(rs);
    float* d = dx + (long)r * C;
    v128_t a = wasm_f32x4_splat(0);
    int c = 0;
    for (; c + 4 <= C; c += 4)
      a = wasm_f32x4_add(a, wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(g + c), wasm_v128_load(w + c)),
                                           wasm_v128_load(xr + c)));
    float dot = hsum(a);
    for (; c < C; c++) dot += g[c] * w[c] * xr[c];
    float k = rs * rs * dot / C;
    v128_t vk = wasm_f32x4_splat(k);
    for (c = 0; c < C; c += 4) {
      int left = C - c;
      v128_t v = wasm_f32x4_mul(vr, wasm_f32x4_sub(wasm_f32x4_mul(load_part(w + c, left), load_part(g + c, left)),
                                                   wasm_f32x4_mul(load_part(xr + c, left), vk)));
      if (acc_dx) v = wasm_f32x4_add(load_part(d + c, left), v);
      store_part(d + c, v, left);
    }
  }
}
