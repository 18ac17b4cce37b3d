// Data movement and reductions in SIMD128: the strided gather behind permute and broadcastTo,
// copyAxis's accumulate, where, reduce (sum, max) and NF4 dequantisation (kernels/ref/layout.ts,
// reduce.ts, nf4.ts). The host collapses shapes first (size-1 dims dropped, neighbours
// merged where every operand allows), so `rank` is small. Threads take ranges of whole
// output elements; each output element is computed by the same operations in the same
// order on any thread count.
#include "simd.h"

/** At most this many collapsed dims (the host checks; core's tensors have at most 8). */
#define MAX_RANK 16

/**
 * out[i] = x[Σ_d idx_d(i)·xstr[d]] for the flat index i of out (contiguous, dims `dims`):
 * permute (strides permuted) and broadcastTo (stride 0 on broadcast dims). Thread `tid`'s
 * range of whole f32x4 groups of out.
 */
void EXPORT(wasm_strided_copy)(const float* x, float* out, const int* dims, const int* xstr, int rank, int n, int tid,
                               int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  if (lo >= hi) return;
  int idx[MAX_RANK];
  long off = 0;
  int rest = lo;
  for (int d = rank - 1; d >= 0; d--) {
    idx[d] = rest % dims[d];
    rest /= dims[d];
    off += (long)idx[d] * xstr[d];
  }
  const int inner = dims[rank - 1];
  const int s = xstr[rank - 1];
  for (int i = lo; i < hi;) {
    int run = inner - idx[rank - 1];
    if (run > hi - i) run = hi - i;
    const float* src = x + off;
    float* dst = out + i;
    if (s == 1) {
      int j = 0;
      for (; j + 4 <= run; j += 4) wasm_v128_store(dst + j, wasm_v128_load(src + j));
      for (; j < run; j++) dst[j] = src[j];
    } else if (s == 0) {
      v128_t v = wasm_f32x4_splat(*src);
      int j = 0;
      for (; j + 4 <= run; j += 4) wasm_v128_store(dst + j, v);
      for (; j < run; j++) dst[j] = *src;
    } else {
      for (int j = 0; j < run; j++) dst[j] = src[(long)j * s];
    }
    i += run;
    // Step the odometer past the run.
    off += (long)run * s;
    idx[rank - 1] += run;
    for (int d = rank - 1; d > 0 && idx[d] == dims[d]; d--) {
      off -= (long)dims[d] * xstr[d];
      idx[d] = 0;
      idx[d - 1]++;
      off += xstr[d - 1];
    }
  }
}

/** out[i] += x[i] (f32 additions: the reference's f64 sum of two f32 values, rounded); thread `tid`'s groups. */
void EXPORT(wasm_add_into)(const float* x, float* out, int n, int tid, int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  for (int i = lo; i < hi; i += 4) {
    int left = hi - i;
    store_part(out + i, wasm_f32x4_add(load_part(out + i, left), load_part(x + i, left)), left);
  }
}

/** out[i] = cond[i] ? a[i] : b[i] (cond bytes, any non-zero value true); thread `tid`'s f32x4 groups. */
void EXPORT(wasm_where)(const unsigned char* cond, const float* a, const float* b, float* out, int n, int tid,
                        int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  for (int i = lo; i < hi; i += 4) {
    int left = hi - i;
    int c4 = 0;
    for (int j = 0; j < 4 && j < left; j++) c4 |= (cond[i + j] != 0) << j;
    // Lane j's mask: all ones where bit j of c4 is set.
    v128_t bits = wasm_v128_and(wasm_i32x4_splat(c4), wasm_i32x4_make(1, 2, 4, 8));
    v128_t m = wasm_i32x4_ne(bits, wasm_i32x4_splat(0));
    store_part(out + i, wasm_v128_bitselect(load_part(a + i, left), load_part(b + i, left), m), left);
  }
}

/** max with the reference's rule (NaN wins; otherwise the first of equal values stays). */
static inline float max_nan(float m, float v) { return (v > m || v != v) ? v : m; }
static inline v128_t vmax_nan(v128_t m, v128_t v) {
  return wasm_v128_bitselect(v, m, wasm_v128_or(wasm_f32x4_gt(v, m), wasm_f32x4_ne(v, v)));
}

/**
 * Σ x[0..n) in f64: eight partial sums (lanes of four f64x2) added pairwise, then the tail.
 * Another order than the reference's one running f64 sum (as the native backend's row_sum),
 * but the same for every thread count.
 */
static double row_sum(const float* x, int n) {
  v128_t a0 = wasm_f64x2_splat(0), a1 = a0, a2 = a0, a3 = a0;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    v128_t u = wasm_v128_load(x + i), v = wasm_v128_load(x + i + 4);
    a0 = wasm_f64x2_add(a0, wasm_f64x2_promote_low_f32x4(u));
    a1 = wasm_f64x2_add(a1, wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(u, u, 2, 3, 0, 1)));
    a2 = wasm_f64x2_add(a2, wasm_f64x2_promote_low_f32x4(v));
    a3 = wasm_f64x2_add(a3, wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 0, 1)));
  }
  v128_t a = wasm_f64x2_add(wasm_f64x2_add(a0, a1), wasm_f64x2_add(a2, a3));
  double s = wasm_f64x2_extract_lane(a, 0) + wasm_f64x2_extract_lane(a, 1);
  for (; i < n; i++) s += x[i];
  return s;
}

static float row_max(const float* x, int n) {
  v128_t m = wasm_f32x4_splat(-__builtin_inff());
  int i = 0;
  for (; i + 4 <= n; i += 4) m = vmax_nan(m, wasm_v128_load(x + i));
  float lanes[4];
  wasm_v128_store(lanes, m);
  float r = -__builtin_inff();
  for (int j = 0; j < 4; j++) r = max_nan(r, lanes[j]);
  for (; i < n; i++) r = max_nan(r, x[i]);
  return r;
}

/** Output elements a block of the kept-inner case sums at once (on the stack, in f64). */
#define BLOCK 64

/**
 * out = sum or max (op 0, 1) of x over the reduced dims. x's collapsed dims are split into
 * kept dims (nk sizes ksz, x strides kstr; out is contiguous over them) and reduced dims
 * (nr, rsz, rstr), each list in x's order; `last_reduced` says whether x's innermost dim (stride 1) is
 * the last reduced one, else the last kept one. Sums are f64. Reduced index combinations go
 * in x's order for every output element, as the reference's; with the innermost dim kept
 * each element's sum is bit for bit the reference's, with it reduced its runs are summed by
 * row_sum. Thread `tid` of `nth` computes a range of output elements (of nout); `nx`, x's element
 * count, is there for the host's work estimate.
 */
void EXPORT(wasm_reduce)(int op, const float* x, const int* ksz, const int* kstr, int nk, const int* rsz,
                         const int* rstr, int nr, int last_reduced, float* out, int nout, int nx, int tid, int nth) {
  (void)nx;  // x's element count: the host's work estimate only
  int lo, hi;
  split(nout, last_reduced ? 1 : 16, tid, nth, &lo, &hi);
  if (lo >= hi) return;
  // The odometer over the reduced dims (all of them, or all but the innermost run).
  int nodo = last_reduced ? nr - 1 : nr;
  const int run = last_reduced ? rsz[nr - 1] : 0;
  int combos = 1;
  for (int d = 0; d < nodo; d++) combos *= rsz[d];
  if (last_reduced) {
    for (int o = lo; o < hi; o++) {
      long base = 0;
      int rest = o;
      for (int d = nk - 1; d >= 0; d--) {
        base += (long)(rest % ksz[d]) * kstr[d];
        rest /= ksz[d];
      }
      double acc = 0;
      float m = -__builtin_inff();
      int idx[MAX_RANK] = {0};
      long roff = 0;
      for (int c = 0; c < combos; c++) {
        const float* xr = x + base + roff;
        if (op == 0)
          acc += row_sum(xr, run);
        else
          m = max_nan(m, row_max(xr, run));
        for (int d = nodo - 1; d >= 0; d--) {
          roff += rstr[d];
          if (++idx[d] < rsz[d]) break;
          roff -= (long)rstr[d] * rsz[d];
          idx[d] = 0;
        }
      }
      out[o] = op == 0 ? (float)acc : m;
    }
    return;
  }
  // The innermost dim is kept (ksz[nk − 1] elements, stride 1): blocks of consecutive outputs
  // in one inner run, each element summed over the reduced combinations in x's order.
  const int inner = ksz[nk - 1];
  for (int o = lo; o < hi;) {
    int i0 = o % inner;
    int len = inner - i0;
    if (len > hi - o) len = hi - o;
    if (len > BLOCK) len = BLOCK;
    long base = i0;
    int rest = o / inner;
    for (int d = nk - 2; d >= 0; d--) {
      base += (long)(rest % ksz[d]) * kstr[d];
      rest /= ksz[d];
    }
    double acc[BLOCK];
    float mx[BLOCK];
    for (int j = 0; j < len; j++) acc[j] = 0, mx[j] = -__builtin_inff();
    int idx[MAX_RANK] = {0};
    long roff = 0;
    for (int c = 0; c < combos; c++) {
      const float* xr = x + base + roff;
      int j = 0;
      if (op == 0) {
        for (; j + 2 <= len; j += 2) {
          v128_t v = wasm_f64x2_make(xr[j], xr[j + 1]);
          wasm_v128_store(acc + j, wasm_f64x2_add(wasm_v128_load(acc + j), v));
        }
        for (; j < len; j++) acc[j] += xr[j];
      } else {
        for (; j + 4 <= len; j += 4) wasm_v128_store(mx + j, vmax_nan(wasm_v128_load(mx + j), wasm_v128_load(xr + j)));
        for (; j < len; j++) mx[j] = max_nan(mx[j], xr[j]);
      }
      for (int d = nodo - 1; d >= 0; d--) {
        roff += rstr[d];
        if (++idx[d] < rsz[d]) break;
        roff -= (long)rstr[d] * rsz[d];
        idx[d] = 0;
      }
    }
    for (int j = 0; j < len; j++) out[o + j] = op == 0 ? (float)acc[j] : mx[j];
    o += len;
  }
}

/**
 * NF4 elements [start, start + count) into out[0..count): out[j] = quant_map[code]·scales[⌊i/blocksize⌋]
 * for i = start + j, code the high nibble of packed[i/2] for even i, the low for odd (an f32
 * product: exactly the reference's f64 product rounded). `packed` holds the bytes from
 * ⌊start/2⌋ on and `scales` the blocks from ⌊start/blocksize⌋ on (the host copies in only
 * those). Thread `tid`'s range of whole f32x4 groups of out.
 */
void EXPORT(wasm_nf4_dequant)(const unsigned char* packed, const float* scales, int blocksize, const float* quant_map,
                              int start, int count, float* out, int tid, int nth) {
  int lo, hi;
  split(count, 4, tid, nth, &lo, &hi);
  const int p0 = start >> 1;
  const int b0 = start / blocksize;
  for (int j = lo; j < hi;) {
    int i = start + j;
    int b = i / blocksize;
    int end = (b + 1) * blocksize - start;
    if (end > hi) end = hi;
    float s = scales[b - b0];
    for (; j < end; j++, i++) {
      unsigned char byte = packed[(i >> 1) - p0];
      int c = (i & 1) ? byte & 15 : byte >> 4;
      out[j] = quant_map[c] * s;
    }
  }
}

/**
 * bitsandbytes' nested absmax expanded: out[b] = f32(f32(code[q[b]]·nested[⌊b/nested_blocksize⌋]) + offset),
 * the sum in f64 with the host's `offset` as given (as the reference's). Thread `tid`'s share.
 */
void EXPORT(wasm_nf4_scales)(const unsigned char* q, const float* code, const float* nested, int nested_blocksize,
                             double offset, float* out, int n, int tid, int nth) {
  int lo, hi;
  split(n, 4, tid, nth, &lo, &hi);
  for (int b = lo; b < hi; b++) out[b] = (float)((double)(code[q[b]] * nested[b / nested_blocksize]) + offset);
}
