// Prepacked frozen weights: a linear layer's W (n×k row-major, y = x·Wᵀ) stored once in the
// panel layout the GEMM micro-kernels read, in its own dtype (f32 or bf16), so no forward
// pass repacks it (prepack.cc: layout, N-API; prepack_avx2.cc: the kernels).
//
// Layout: k is cut into slices of kPackSlice (the packed kernels' KC), n into panels of
// kPackPanel output columns (zero-padded to npad = ⌈n/16⌉·16). Slice s (k0 = 256·s, depth
// kc = min(256, k−k0)) starts at k0·npad; inside it panel q is kc rows of 16 values,
// element (p, j) = W[16q + j][k0 + p] at k0·npad + q·kc·16 + p·16 + lane(j). One slice of
// the panels a thread owns is one contiguous run, and an f32 panel slice is exactly the B
// panel the 6×16 AVX2 kernel reads.
//
// lane(j) = j for f32. bf16 rows keep columns 4..7 and 8..11 swapped (lane = packed_lane_bf16):
// then the in-lane unpacks of one 256-bit load, _mm256_unpacklo/hi_epi16(0, row), give
// columns 0..7 and 8..11 widened to f32 in order — two cheap shuffles per 16 values instead
// of two lane-crossing zero-extensions and two shifts (the widening bounded bf16 decode).
#pragma once
#include <cstdint>

#include "gemm_internal.h"

namespace lorakit {

constexpr int64_t kPackPanel = 16;
constexpr int64_t kPackSlice = 256;

// The position of column j (0..15) inside a 16-value bf16 panel row (an involution).
inline int64_t packed_lane_bf16(int64_t j) { return (j >= 4 && j < 12) ? (j < 8 ? j + 4 : j - 4) : j; }
template <class T>
inline int64_t packed_lane(int64_t j) {
  return sizeof(T) == 2 ? packed_lane_bf16(j) : j;
}

inline int64_t packed_npad(int64_t n) { return (n + kPackPanel - 1) / kPackPanel * kPackPanel; }
inline int64_t packed_elements(int64_t n, int64_t k) { return packed_npad(n) * k; }

// The W a decode tile reads after the tile of G panels from panel q of the slice at pc (kc
// deep), for a thread whose panels are [q0, q1): the next G panels of this slice, else the
// thread's first panels of the next slice, else none; with its depth (the decode kernels
// prefetch it while they compute the current tile).
template <class TB>
struct NextTile {
  const TB* w = nullptr;
  int64_t kc = 0;
};
template <class TB>
inline NextTile<TB> next_tile(const TB* w, int64_t npad, int64_t k, int64_t pc, int64_t kc, int64_t q, int64_t G,
                              int64_t q0, int64_t q1) {
  if (q + 2 * G <= q1) return {w + pc * npad + (q + G) * kc * 16, kc};
  if (pc + kPackSlice >= k) return {};
  const int64_t kc_next = k - pc - kPackSlice < kPackSlice ? k - pc - kPackSlice : kPackSlice;
  return {w + (pc + kPackSlice) * npad + q0 * kc_next * 16, kc_next};
}

// A prepacked product: C (m×n, row-major, ldc = n) = alpha·A (m×k)·Wᵀ + beta·C.
struct PackedProduct {
  bool bf16 = false;
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  const void* w = nullptr;  // the panels (float or uint16 bf16 values)
  float* c = nullptr;
  float alpha = 1, beta = 0;
};

// Whether this CPU has the prepacked kernels (AVX2+FMA or AVX-512 hosts); elsewhere nothing
// is packed and the row-major GEMM does everything.
bool prepack_supported();

#if defined(__x86_64__)
// Rows [0, m) of C for output columns [j0, j1) (multiples of 16, j1 may be npad), m ≤ 8:
// streams the panels once. Every element is computed as the packed GEMM computes it.
void packed_decode_avx2(const PackedProduct& g, int64_t j0, int64_t j1);
// The same on AVX-512 hosts (16-lane panel rows, 32 registers): 2 ≤ m ≤ 8, or one bf16 row.
void packed_decode_avx512(const PackedProduct& g, int64_t j0, int64_t j1);
// Rows [i0, i1), columns [j0, j1) (j0 a multiple of 16) with the 6×16 packed kernel, or (j0 a
// multiple of 64, AVX-512 hosts only) the 6×64 one.
void packed_gemm_avx2(const PackedProduct& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1);
void packed_gemm_avx512(const PackedProduct& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1);
#endif

}  // namespace lorakit
