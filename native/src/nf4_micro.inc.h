// The NF4 GEMM's register kernel, included once per ISA inside a target pragma with NF4_VW
// (floats per vector) defined, by nf4_gemm_kernel.inc.h and by nf4_packed.cc: C[n, j] (+)=
// Σ_k A[n, k] · B[k, j] over one packed panel B (kc × NR floats), acc = fma(b, a, acc) in order
// of k, then c = acc or c + acc. Both NF4 weight layouts feed it the same dequantised panel,
// so their results agree bit for bit.
// Not a header: no include guard on purpose.

typedef float vec __attribute__((vector_size(NF4_VW * 4)));
constexpr int VW = NF4_VW;
constexpr int NR = 2 * VW;  // panel width (output columns)
constexpr int MR = 6;       // rows per register tile
constexpr int KC = 256;     // depth of one packed panel

static inline vec vload(const float* p) {
  vec v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
static inline void vstore(float* p, vec v) { __builtin_memcpy(p, &v, sizeof(v)); }

template <int M>
static inline void micro(const float* a, int64_t lda, const float* bp, int kc, float* c, int64_t ldc, int nb,
                         bool accumulate) {
  vec acc[M][2];
  for (int i = 0; i < M; i++) acc[i][0] = acc[i][1] = vec{};
  for (int k = 0; k < kc; k++) {
    const vec b0 = vload(bp + k * NR);
    const vec b1 = vload(bp + k * NR + VW);
#pragma GCC unroll 6
    for (int i = 0; i < M; i++) {
      const float x = a[i * lda + k];
      acc[i][0] += b0 * x;
      acc[i][1] += b1 * x;
    }
  }
  if (nb == NR) {
    for (int i = 0; i < M; i++) {
      float* ci = c + i * ldc;
      if (accumulate) {
        vstore(ci, vload(ci) + acc[i][0]);
        vstore(ci + VW, vload(ci + VW) + acc[i][1]);
      } else {
        vstore(ci, acc[i][0]);
        vstore(ci + VW, acc[i][1]);
      }
    }
  } else {
    for (int i = 0; i < M; i++) {
      float tmp[NR];
      vstore(tmp, acc[i][0]);
      vstore(tmp + VW, acc[i][1]);
      float* ci = c + i * ldc;
      for (int j = 0; j < nb; j++) ci[j] = accumulate ? ci[j] + tmp[j] : tmp[j];
    }
  }
}
