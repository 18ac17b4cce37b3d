// The NF4 GEMM body, included by nf4_gemm.cc once per ISA inside a target pragma with
// NF4_VW (floats per vector) defined. C[n, j] (+)= Σ_k A[n, k] · W'[k, j] where W' is a
// panel of the NF4 weight dequantised into a thread-local buffer (the packing step).
// Not a header: no include guard on purpose.

#include "nf4_micro.inc.h"

// Dequantises flat elements [idx, idx+len) of W into dst[t*stride] (block by block: one
// scale lookup and no division per element).
static inline void dequant_run(const Nf4Problem& p, int64_t idx, int len, float* dst, int stride) {
  const int64_t bs = p.blocksize;
  int t = 0;
  while (t < len) {
    const int64_t b = idx / bs;
    const int64_t left = (b + 1) * bs - idx;
    const int run = static_cast<int>(left < len - t ? left : len - t);
    const float s = p.scales[b];
    for (int u = 0; u < run; u++) {
      const int64_t i = idx + u;
      const uint8_t byte = p.packed[i >> 1];
      const int code = (i & 1) ? (byte & 15) : (byte >> 4);
      dst[(t + u) * stride] = p.qmap[code] * s;
    }
    idx += run;
    t += run;
  }
}

// Fills bp[kk*NR + j] for kk < kc, j < NR with W'(k0+kk, j0+j) (0 beyond nb columns).
// Forward (x·Wᵀ): W'(k, j) = W[j, k]; backward (dy·W): W'(k, j) = W[k, j].
static void pack_panel(const Nf4Problem& p, bool transposed, int64_t k0, int kc, int64_t j0, int nb, float* bp) {
  const int64_t C = p.in;
  if (transposed) {
    for (int j = 0; j < nb; j++) dequant_run(p, (j0 + j) * C + k0, kc, bp + j, NR);
    for (int j = nb; j < NR; j++)
      for (int kk = 0; kk < kc; kk++) bp[kk * NR + j] = 0.f;
  } else {
    for (int kk = 0; kk < kc; kk++) {
      float* row = bp + kk * NR;
      dequant_run(p, (k0 + kk) * C + j0, nb, row, 1);
      for (int j = nb; j < NR; j++) row[j] = 0.f;
    }
  }
}

// Panels [p0, p1) of NR output columns: packs each KC-deep panel once, then runs every
// row of A through it.
static void run_panels(const Nf4Problem& p, int64_t p0, int64_t p1) {
  const bool fwd = !p.backward;
  const int64_t K = fwd ? p.in : p.out;   // reduction length
  const int64_t Ncols = fwd ? p.out : p.in;  // output columns
  const int64_t lda = K;
  const int64_t ldc = Ncols;
  float* bp = nf4_scratch(static_cast<size_t>(KC) * NR);
  for (int64_t pi = p0; pi < p1; pi++) {
    const int64_t j0 = pi * NR;
    const int nb = static_cast<int>(Ncols - j0 < NR ? Ncols - j0 : NR);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int kc = static_cast<int>(K - k0 < KC ? K - k0 : KC);
      pack_panel(p, fwd, k0, kc, j0, nb, bp);
      const bool acc = k0 > 0 || p.beta != 0.f;
      const float* a = p.a + k0;
      float* c = p.c + j0;
      int64_t n = 0;
      for (; n + MR <= p.rows; n += MR) micro<MR>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc);
      switch (p.rows - n) {
        case 5: micro<5>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc); break;
        case 4: micro<4>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc); break;
        case 3: micro<3>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc); break;
        case 2: micro<2>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc); break;
        case 1: micro<1>(a + n * lda, lda, bp, kc, c + n * ldc, ldc, nb, acc); break;
        default: break;
      }
    }
  }
}
