// lorakit's WebAssembly GEMM (SIMD128): C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b]
// for every transpose form, with B in f32 or bf16 (widened to f32 while packing, so the
// result is as if B had been converted first). The same blocking as the native addon's
// portable path: B is packed per KC-deep slab into NR-column strips, A per MC×KC block into
// MR-row strips, and a 4×8 register tile (8 f32x4 accumulators) does the arithmetic.
//
// Threads: every thread of a call (kernels/wasm/pool.ts) runs wasm_gemm with its own `tid`
// of `nth` and computes a disjoint part of C: whole batch elements, or NR-aligned column
// ranges, or row ranges. Each element of C is summed by the same micro-kernel lanes in the
// same order whatever the split, so the result is bit-identical for any thread count.
//
// No libc: the host (kernels/wasm/arena.ts) lays the operands out in linear memory and
// passes a scratch area of nth · wasm_gemm_scratch_bytes(m, n, k, batch, nth) bytes.
#include <stdint.h>
#include <wasm_simd128.h>

#include "madd.h"

#define MR 4
#define NR 8
#define KC 256
#define MC 64

#define EXPORT(name) __attribute__((export_name(#name))) name

static int round_up(int x, int to) { return (x + to - 1) / to * to; }

/**
 * Columns of C one thread of `nth` handles at most (see wasm_gemm's split): all n when the
 * batch divides evenly or the rows are split, else its share of the NR-column strips.
 */
static int split_rows(int m, int n) { return (n + NR - 1) / NR < (m + MR - 1) / MR; }

static int cols_per_thread(int m, int n, int batch, int nth) {
  if (nth <= 1 || batch % nth == 0 || split_rows(m, n)) return n;
  int strips = (n + NR - 1) / NR;
  return (strips + nth - 1) / nth * NR;
}

/**
 * Bytes of scratch one thread of a call needs: one packed B slab (KC × its columns rounded to
 * NR) and one packed A block. A call on `nth` threads takes nth times this.
 */
int EXPORT(wasm_gemm_scratch_bytes)(int m, int n, int k, int batch, int nth) {
  int kc = k < KC ? k : KC;
  return (kc * round_up(cols_per_thread(m, n, batch, nth), NR) + kc * MC) * 4;
}

/** Element (i, j) of op(X) where op(X) is rows×cols and X is stored transposed when `trans`. */
#define AT(x, trans, ld_plain, ld_trans, i, j) ((trans) ? (x)[(j) * (ld_trans) + (i)] : (x)[(i) * (ld_plain) + (j)])

/**
 * Packs rows [0, mc) × depth [p0, p0+kc) of op(A) into MR-row strips, zero-padded. Whole
 * strips move four floats at a time: a transposed A holds a strip's MR values of one depth
 * side by side (one load), a plain A four depths of each row (a 4×4 transpose in registers).
 * With k a few times MR (the LoRA products' r = 16 side) the element-by-element copy cost as
 * much as the arithmetic.
 */
static void pack_a(const float* a, int trans_a, int m_total, int k_total, int i0, int mc, int p0, int kc,
                   float* dst) {
  for (int ib = 0; ib < mc; ib += MR) {
    int mr = mc - ib < MR ? mc - ib : MR;
    int p = 0;
    if (mr == MR && trans_a) {
      const float* src = a + (long)p0 * m_total + i0 + ib;
      for (; p < kc; p++) wasm_v128_store(dst + p * MR, wasm_v128_load(src + (long)p * m_total));
    } else if (mr == MR) {
      const float* r0 = a + (long)(i0 + ib) * k_total + p0;
      const float* r1 = r0 + k_total;
      const float* r2 = r1 + k_total;
      const float* r3 = r2 + k_total;
      for (; p + 4 <= kc; p += 4) {
        v128_t x0 = wasm_v128_load(r0 + p), x1 = wasm_v128_load(r1 + p);
        v128_t x2 = wasm_v128_load(r2 + p), x3 = wasm_v128_load(r3 + p);
        v128_t t0 = wasm_i32x4_shuffle(x0, x1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(x0, x1, 2, 6, 3, 7);
        v128_t t2 = wasm_i32x4_shuffle(x2, x3, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(x2, x3, 2, 6, 3, 7);
        wasm_v128_store(dst + p * MR, wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5));
        wasm_v128_store(dst + (p + 1) * MR, wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7));
        wasm_v128_store(dst + (p + 2) * MR, wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5));
        wasm_v128_store(dst + (p + 3) * MR, wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7));
      }
    }
    for (; p < kc; p++) {
      for (int r = 0; r < MR; r++) {
        dst[p * MR + r] = r < mr ? AT(a, trans_a, k_total, m_total, i0 + ib + r, p0 + p) : 0.0f;
      }
    }
    dst += kc * MR;
  }
}

/** Packs depth [p0, p0+kc) × columns [j0, j1) of op(B) (f32, n columns) into NR-column strips, zero-padded. */
static void pack_b_f32(const float* b, int trans_b, int n, int k_total, int p0, int kc, int j0, int j1, float* dst) {
  for (int jb = j0; jb < j1; jb += NR) {
    int nr = j1 - jb < NR ? j1 - jb : NR;
    if (!trans_b && nr == NR) {
      for (int p = 0; p < kc; p++) {
        const float* src = b + (p0 + p) * n + jb;
        wasm_v128_store(dst + p * NR, wasm_v128_load(src));
        wasm_v128_store(dst + p * NR + 4, wasm_v128_load(src + 4));
      }
    } else if (trans_b && nr == NR && kc % 4 == 0) {
      // B stored n×k (a linear layer's W for x·Wᵀ): each 4 depths of 8 rows become 4 packed
      // rows of 8 through two 4×4 transposes in registers.
      for (int p = 0; p < kc; p += 4) {
        for (int h = 0; h < 2; h++) {
          const float* r0 = b + (long)(jb + 4 * h) * k_total + p0 + p;
          v128_t x0 = wasm_v128_load(r0), x1 = wasm_v128_load(r0 + k_total);
          v128_t x2 = wasm_v128_load(r0 + 2L * k_total), x3 = wasm_v128_load(r0 + 3L * k_total);
          v128_t t0 = wasm_i32x4_shuffle(x0, x1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(x0, x1, 2, 6, 3, 7);
          v128_t t2 = wasm_i32x4_shuffle(x2, x3, 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(x2, x3, 2, 6, 3, 7);
          float* d = dst + p * NR + 4 * h;
          wasm_v128_store(d, wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5));
          wasm_v128_store(d + NR, wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7));
          wasm_v128_store(d + 2 * NR, wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5));
          wasm_v128_store(d + 3 * NR, wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7));
        }
      }
    } else {
      for (int p = 0; p < kc; p++) {
        for (int c = 0; c < NR; c++) {
          dst[p * NR + c] = c < nr ? AT(b, trans_b, n, k_total, p0 + p, jb + c) : 0.0f;
        }
      }
    }
    dst += kc * NR;
  }
}

static float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  return __builtin_bit_cast(float, u);
}

/** As pack_b_f32 for a bf16 B. */
static void pack_b_bf16(const uint16_t* b, int trans_b, int n, int k_total, int p0, int kc, int j0, int j1,
                        float* dst) {
  for (int jb = j0; jb < j1; jb += NR) {
    int nr = j1 - jb < NR ? j1 - jb : NR;
    if (!trans_b && nr == NR) {
      for (int p = 0; p < kc; p++) {
        // 8 bf16 values → two f32x4 by zero-extending each half and shifting into the high bits.
        v128_t h = wasm_v128_load(b + (p0 + p) * n + jb);
        v128_t lo = wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(h), 16);
        v128_t hi = wasm_i32x4_shl(wasm_u32x4_extend_high_u16x8(h), 16);
        wasm_v128_store(dst + p * NR, lo);
        wasm_v128_store(dst + p * NR + 4, hi);
      }
    } else {
      for (int p = 0; p < kc; p++) {
        for (int c = 0; c < NR; c++) {
          dst[p * NR + c] = c < nr ? bf16_to_f32(AT(b, trans_b, n, k_total, p0 + p, jb + c)) : 0.0f;
        }
      }
    }
    dst += kc * NR;
  }
}

/**
 * The 4×8 tile: acc = Ap (kc × MR) · Bp (kc × NR); then C = alpha·acc (+ C when `add`,
 * + beta·C on the first slab when beta ≠ 0). Only the mr × nr corner is written.
 */
static void micro_4x8(int kc, const float* ap, const float* bp, float* c, int ldc, int mr, int nr, float alpha,
                      int first, float beta) {
  v128_t c00 = wasm_f32x4_splat(0), c01 = c00, c10 = c00, c11 = c00;
  v128_t c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (int p = 0; p < kc; p++) {
    v128_t b0 = wasm_v128_load(bp);
    v128_t b1 = wasm_v128_load(bp + 4);
    v128_t a;
    a = wasm_v128_load32_splat(ap + 0);
    c00 = MADD(a, b0, c00);
    c01 = MADD(a, b1, c01);
    a = wasm_v128_load32_splat(ap + 1);
    c10 = MADD(a, b0, c10);
    c11 = MADD(a, b1, c11);
    a = wasm_v128_load32_splat(ap + 2);
    c20 = MADD(a, b0, c20);
    c21 = MADD(a, b1, c21);
    a = wasm_v128_load32_splat(ap + 3);
    c30 = MADD(a, b0, c30);
    c31 = MADD(a, b1, c31);
    ap += MR;
    bp += NR;
  }
  float tile[MR * NR] __attribute__((aligned(16)));
  v128_t va = wasm_f32x4_splat(alpha);
  wasm_v128_store(tile + 0, wasm_f32x4_mul(va, c00));
  wasm_v128_store(tile + 4, wasm_f32x4_mul(va, c01));
  wasm_v128_store(tile + 8, wasm_f32x4_mul(va, c10));
  wasm_v128_store(tile + 12, wasm_f32x4_mul(va, c11));
  wasm_v128_store(tile + 16, wasm_f32x4_mul(va, c20));
  wasm_v128_store(tile + 20, wasm_f32x4_mul(va, c21));
  wasm_v128_store(tile + 24, wasm_f32x4_mul(va, c30));
  wasm_v128_store(tile + 28, wasm_f32x4_mul(va, c31));
  if (mr == MR && nr == NR) {
    // A whole tile: the same additions as below (a + b, beta·c + t), four lanes at a time.
    v128_t vb = wasm_f32x4_splat(beta);
    for (int r = 0; r < MR; r++) {
      float* crow = c + r * ldc;
      v128_t t0 = wasm_v128_load(tile + r * NR), t1 = wasm_v128_load(tile + r * NR + 4);
      if (!first) {
        t0 = wasm_f32x4_add(wasm_v128_load(crow), t0);
        t1 = wasm_f32x4_add(wasm_v128_load(crow + 4), t1);
      } else if (beta != 0.0f) {
        t0 = wasm_f32x4_add(wasm_f32x4_mul(vb, wasm_v128_load(crow)), t0);
        t1 = wasm_f32x4_add(wasm_f32x4_mul(vb, wasm_v128_load(crow + 4)), t1);
      }
      wasm_v128_store(crow, t0);
      wasm_v128_store(crow + 4, t1);
    }
    return;
  }
  for (int r = 0; r < mr; r++) {
    float* crow = c + r * ldc;
    const float* t = tile + r * NR;
    if (!first) {
      for (int j = 0; j < nr; j++) crow[j] += t[j];
    } else if (beta == 0.0f) {
      // beta 0 overwrites: the old C is never read (it may hold NaN).
      for (int j = 0; j < nr; j++) crow[j] = t[j];
    } else {
      for (int j = 0; j < nr; j++) crow[j] = beta * crow[j] + t[j];
    }
  }
}

/**
 * Rows [i_lo, i_hi) × columns [j_lo, j_hi) of one product (batch element):
 * C (m×n, ld n) = alpha·op(A)·op(B) + beta·C. j_lo is a multiple of NR.
 */
static void gemm_part(int trans_a, int trans_b, int m, int n, int k, const float* a, const void* b, int b_bf16,
                      const float* b_packed, float* c, float alpha, float beta, float* scratch, int i_lo, int i_hi,
                      int j_lo, int j_hi) {
  if (i_lo >= i_hi || j_lo >= j_hi) return;
  if (k == 0) {
    // An empty sum: C = beta·C (beta 0 writes zeros without reading).
    for (int i = i_lo; i < i_hi; i++)
      for (int j = j_lo; j < j_hi; j++) c[i * n + j] = beta == 0.0f ? 0.0f : beta * c[i * n + j];
    return;
  }
  float* bpack = scratch;
  int kc_max = k < KC ? k : KC;
  float* apack = scratch + kc_max * round_up(j_hi - j_lo, NR);
  for (int p0 = 0; p0 < k; p0 += KC) {
    int kc = k - p0 < KC ? k - p0 : KC;
    // B packed whole by wasm_gemm_pack_b: this slab's strips, from strip j_lo / NR on.
    const float* bslab = b_packed ? b_packed + (long)p0 * round_up(n, NR) + (long)(j_lo / NR) * kc * NR : bpack;
    if (!b_packed && b_bf16) pack_b_bf16((const uint16_t*)b, trans_b, n, k, p0, kc, j_lo, j_hi, bpack);
    else if (!b_packed) pack_b_f32((const float*)b, trans_b, n, k, p0, kc, j_lo, j_hi, bpack);
    for (int i0 = i_lo; i0 < i_hi; i0 += MC) {
      int mc = i_hi - i0 < MC ? i_hi - i0 : MC;
      pack_a(a, trans_a, m, k, i0, mc, p0, kc, apack);
      for (int jb = j_lo; jb < j_hi; jb += NR) {
        int nr = j_hi - jb < NR ? j_hi - jb : NR;
        const float* bp = bslab + ((jb - j_lo) / NR) * kc * NR;
        for (int ib = 0; ib < mc; ib += MR) {
          int mr = mc - ib < MR ? mc - ib : MR;
          micro_4x8(kc, apack + (ib / MR) * kc * MR, bp, c + (i0 + ib) * n + jb, n, mr, nr, alpha, p0 == 0,
                    beta);
        }
      }
    }
  }
}

/** wasm_gemm's b_bf16 when `b` is B already packed whole by wasm_gemm_pack_b. */
#define B_PACKED 2

/**
 * Bytes of B packed whole (every KC slab, all n columns in NR strips) where wasm_gemm reads it
 * so (b_bf16 = B_PACKED), else 0: single products split by rows (many rows, few columns; the
 * activations × weight products of a training step). Split so, every part used to pack all of
 * B itself (8 parts: 8 packings, ~5 % of the products' work); packed once before the call,
 * the parts share it. The packed values and the arithmetic are the same, so are the bits.
 */
int EXPORT(wasm_gemm_packed_b_bytes)(int m, int n, int k, int batch) {
  if (batch != 1 || k <= 0 || n <= 0 || !split_rows(m, n)) return 0;
  return k * round_up(n, NR) * 4;
}

/** Packs op(B) (k × n, f32 or bf16 widened) whole into dst: slab p0 at p0·round_up(n, NR) floats. */
void EXPORT(wasm_gemm_pack_b)(int trans_b, int n, int k, const void* b, int b_bf16, float* dst) {
  int rn = round_up(n, NR);
  for (int p0 = 0; p0 < k; p0 += KC) {
    int kc = k - p0 < KC ? k - p0 : KC;
    if (b_bf16) pack_b_bf16((const uint16_t*)b, trans_b, n, k, p0, kc, 0, n, dst + (long)p0 * rn);
    else pack_b_f32((const float*)b, trans_b, n, k, p0, kc, 0, n, dst + (long)p0 * rn);
  }
}

/** Part `part` of `parts` of [0, n) in whole units of `unit` (the last unit may be short). */
static void split(int n, int unit, int part, int parts, int* lo, int* hi) {
  int units = (n + unit - 1) / unit;
  int a = (int)((long long)units * part / parts);
  int b = (int)((long long)units * (part + 1) / parts);
  *lo = a * unit < n ? a * unit : n;
  *hi = b * unit < n ? b * unit : n;
}

/**
 * The whole batched call, thread `tid` of `nth` (0 of 1 alone). Offsets are byte addresses
 * in this module's memory; strides are in elements (0 = the operand is shared by every batch
 * element). A batch that divides evenly is split by elements; otherwise each product is
 * split along its longer side (columns in NR strips, rows in MR strips). b_bf16: 0 f32, 1
 * bf16, B_PACKED: `b` is what wasm_gemm_pack_b wrote (one product, batch 1).
 */
void EXPORT(wasm_gemm)(int trans_a, int trans_b, int m, int n, int k, int batch, const float* a, int stride_a,
                       const void* b, int b_bf16, int stride_b, float* c, int stride_c, float alpha, float beta,
                       float* scratch, int tid, int nth) {
  float* mine = (float*)((char*)scratch + (long)tid * wasm_gemm_scratch_bytes(m, n, k, batch, nth));
  const float* b_packed = b_bf16 == B_PACKED ? (const float*)b : 0;
  int by_batch = batch % nth == 0;
  for (int i = by_batch ? tid : 0; i < batch; i += by_batch ? nth : 1) {
    const void* bi = b_bf16 ? (const void*)((const uint16_t*)b + i * stride_b) : (const void*)((const float*)b + i * stride_b);
    int i_lo = 0, i_hi = m, j_lo = 0, j_hi = n;
    if (!by_batch) {
      if (!split_rows(m, n)) split(n, NR, tid, nth, &j_lo, &j_hi);
      else split(m, MR, tid, nth, &i_lo, &i_hi);
    }
    gemm_part(trans_a, trans_b, m, n, k, a + i * stride_a, bi, b_bf16 == 1, b_packed, c + i * stride_c, alpha, beta,
              mine, i_lo, i_hi, j_lo, j_hi);
  }
}
