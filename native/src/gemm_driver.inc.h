// The blocked GEMM driver shared by every ISA. Not a normal header: each ISA translation
// unit includes it inside its own anonymous namespace, after its target pragma, so all of
// it is compiled for that ISA and nothing of it is shared between the ISA objects (no
// ODR mixing of functions compiled for different targets). Needs <cstdint>, <cstring>
// and gemm_internal.h included before, and a vector type V:
//   struct V { using reg = ...; static constexpr int W; static reg zero(); load(const float*)
//              (aligned), loadu, storeu(float*, reg), set1(float), fmadd(a,b,c)=a*b+c,
//              mul, add; }
// Layouts: a packed B panel is kc rows of NR floats (zero-padded columns); a packed A
// panel is kc columns of MR floats (zero-padded rows).

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Optional members of V, false when V does not have them: kBStationary (the loop order of
// packed_gemm_b_stationary, with kStationaryNC/MC) and kPackARows (pack_a_rows, a SIMD
// packing of full row-major A panels).
template <class T>
constexpr auto b_stationary_of(int) -> decltype(T::kBStationary) {
  return T::kBStationary;
}
template <class T>
constexpr bool b_stationary_of(long) {
  return false;
}
template <class T>
constexpr auto pack_a_rows_of(int) -> decltype(T::kPackARows) {
  return T::kPackARows;
}
template <class T>
constexpr bool pack_a_rows_of(long) {
  return false;
}
template <class T, int MR>
inline bool pack_a_rows_if(const float* a, int64_t lda, int64_t kc, float* ap) {
  if constexpr (pack_a_rows_of<T>(0))
    return T::template pack_a_rows<MR>(a, lda, kc, ap);
  else
    return false;
}

inline float to_f32(float x) { return x; }
inline float to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Packs op(B)[k0:k0+kc, j0:j0+nc] into NR-wide panels at bp (panel p at bp + p*kc*NR).
template <int NR, class TB>
void pack_b_generic(const TB* b, int64_t ldb, bool transB, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                    float* bp) {
  for (int64_t jb = 0; jb < nc; jb += NR) {
    const int64_t nw = imin(NR, nc - jb);
    float* dst = bp + (jb / NR) * kc * NR;
    if (!transB) {
      for (int64_t p = 0; p < kc; p++) {
        const TB* src = b + (k0 + p) * ldb + j0 + jb;
        float* d = dst + p * NR;
        for (int64_t j = 0; j < nw; j++) d[j] = to_f32(src[j]);
        for (int64_t j = nw; j < NR; j++) d[j] = 0.f;
      }
    } else {
      for (int64_t j = 0; j < nw; j++) {
        const TB* src = b + (j0 + jb + j) * ldb + k0;
        for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = to_f32(src[p]);
      }
      for (int64_t j = nw; j < NR; j++)
        for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = 0.f;
    }
  }
}

// Packs op(A)[i0:i0+mr, k0:k0+kc] into one MR-row panel at ap (ap[p*MR + i]).
template <int MR>
void pack_a_generic(const float* a, int64_t lda, bool transA, int64_t i0, int64_t mr, int64_t k0, int64_t kc,
                    float* ap) {
  if (!transA && mr == MR && pack_a_rows_if<V, MR>(a + i0 * lda + k0, lda, kc, ap)) return;
  if (transA) {
    for (int64_t p = 0; p < kc; p++) {
      const float* src = a + (k0 + p) * lda + i0;
      float* d = ap + p * MR;
      for (int64_t i = 0; i < mr; i++) d[i] = src[i];
      for (int64_t i = mr; i < MR; i++) d[i] = 0.f;
    }
  } else {
    for (int64_t i = 0; i < mr; i++) {
      const float* src = a + (i0 + i) * lda + k0;
      for (int64_t p = 0; p < kc; p++) ap[p * MR + i] = src[p];
    }
    for (int64_t i = mr; i < MR; i++)
      for (int64_t p = 0; p < kc; p++) ap[p * MR + i] = 0.f;
  }
}

// Packs rows [i0, i0+rows) as consecutive MR-row panels (kc*MR floats apart).
template <int MR>
void pack_a_panels_generic(const float* a, int64_t lda, bool transA, int64_t i0, int64_t rows, int64_t k0,
                           int64_t kc, float* ap) {
  for (int64_t r = 0; r < rows; r += MR)
    pack_a_generic<MR>(a, lda, transA, i0 + r, imin(MR, rows - r), k0, kc, ap + (r / MR) * kc * MR);
}

// A ragged tile (fewer than MR rows or NR columns; acc[i·NV + v]): the valid part of C goes
// through a buffer and the same vector operations as a full tile, so an element's value does
// not depend on whether its row or column lies in a full or a ragged tile (scalar code might
// be contracted differently). Never inlined: with this path in the micro-kernel, GCC stored
// every accumulator to the stack after each k loop, full tiles too.
template <class V, int MR, int NV>
__attribute__((noinline)) void store_ragged(const typename V::reg* acc, float* c, int64_t ldc, float alpha,
                                            float beta, int mr, int nr) {
  constexpr int W = V::W, NR = NV * V::W;
  alignas(64) float tc[MR * NR];
  const typename V::reg va = V::set1(alpha), vb = V::set1(beta);
  for (int i = 0; i < mr; i++) {
    float* cr = c + i * ldc;
    float* tr = tc + i * NR;
    if (beta != 0.f) {
      for (int j = 0; j < nr; j++) tr[j] = cr[j];
      for (int j = nr; j < NR; j++) tr[j] = 0.f;
    }
    for (int v = 0; v < NV; v++) {
      typename V::reg r;
      if (beta == 0.f)
        r = V::mul(acc[i * NV + v], va);
      else if (beta == 1.f)
        r = V::fmadd(acc[i * NV + v], va, V::loadu(tr + v * W));
      else
        r = V::fmadd(acc[i * NV + v], va, V::mul(vb, V::loadu(tr + v * W)));
      V::storeu(tr + v * W, r);
    }
    for (int j = 0; j < nr; j++) cr[j] = tr[j];
  }
}

// C tile (mr×nr of an MR×NR register tile) = alpha·acc + beta·C; beta == 0 never reads C.
template <class V, int MR, int NV>
inline void store_tile(typename V::reg (&acc)[MR][NV], float* c, int64_t ldc, float alpha, float beta, int mr,
                       int nr, bool stream) {
  constexpr int W = V::W, NR = NV * V::W;
  if (mr == MR && nr == NR) {
    const typename V::reg va = V::set1(alpha);
    if (beta == 0.f && stream) {
#pragma GCC unroll 32
      for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) V::stream(c + i * ldc + v * W, V::mul(acc[i][v], va));
    } else if (beta == 0.f) {
#pragma GCC unroll 32
      for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) V::storeu(c + i * ldc + v * W, V::mul(acc[i][v], va));
    } else if (beta == 1.f) {
#pragma GCC unroll 32
      for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
          V::storeu(c + i * ldc + v * W, V::fmadd(acc[i][v], va, V::loadu(c + i * ldc + v * W)));
    } else {
      const typename V::reg vb = V::set1(beta);
#pragma GCC unroll 32
      for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
          V::storeu(c + i * ldc + v * W,
                    V::fmadd(acc[i][v], va, V::mul(vb, V::loadu(c + i * ldc + v * W))));
    }
    return;
  }
  // A copy for the ragged path only: handed &acc[0][0], GCC stored every accumulator to the
  // stack at each kernel's end, full tiles too (12 stores per 6×16 call, 24 zmm per 6×64; the
  // 6×64 kernel also zeroed acc in memory first).
  typename V::reg copy[MR * NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) copy[i * NV + v] = acc[i][v];
  store_ragged<V, MR, NV>(copy, c, ldc, alpha, beta, mr, nr);
}

// Lines a micro-kernel fetches ahead, one every few k steps: `left` lines of `rows` rows
// `ld` bytes apart, column by column (line l of every row, then line l + 1: the order in which
// a tile reading those rows needs them), from row `r` of the column of lines at `col`.
// (With SUB the micro-kernel reads only `col` and `left`, as one run of lines.)
struct LineWalk {
  const char* col = nullptr;
  int64_t ld = 0, rows = 0, r = 0, left = 0;
  inline const char* next() {
    const char* q = col + r * ld;
    left--;
    if (++r == rows) {
      r = 0;
      col += 64;
    }
    return q;
  }
};

// The register-blocked micro-kernel: an MR×(NV·W) tile over kc steps. With DIRECT the A
// operand is read in place (row i at a + i*lda, contiguous along k; all MR rows valid); with
// ACOLS a transposed A is read in place (step p's MR values at a + p*lda; all MR rows valid);
// otherwise from a packed panel. The B panel need not be aligned (prepacked weights are
// used in place, and a JavaScript array is only 16-byte aligned).
// With SUB the B panel is NV sub-panels of kc rows of W values, kc·W apart (prepacked weights
// read in place: four adjacent 16-column panels of a slice), instead of kc rows of NR values;
// With FETCH, fetch_* name lines to fetch ahead, spread over the k steps (a LineWalk): with SUB
// a piece of the next block of weights (into L2), otherwise the next row tile's A (into L1;
// NextRows). Without it they are ignored and the kernel has no fetch code at all.
// noipa: a copy specialised on a call site's constants (GCC's IPA-CP) spilled an accumulator
// of the 6×64 AVX-512 tile to the stack in its k loop (0.95× on large shapes). Clang has no
// noipa; noinline keeps the kernel a function of its own there.
#if defined(__clang__)
#define LORAKIT_KERNEL_NOIPA __attribute__((noinline))
#else
#define LORAKIT_KERNEL_NOIPA __attribute__((noipa))
#endif
template <class V, int MR, int NV, bool DIRECT, bool ACOLS = false, bool SUB = false, bool FETCH = SUB>
LORAKIT_KERNEL_NOIPA void micro_kernel(int64_t kc, const float* __restrict a, int64_t lda, const float* __restrict bp,
                  float* c, int64_t ldc, float alpha, float beta, int mr, int nr, bool stream,
                  const char* fetch_col = nullptr, int64_t fetch_ld = 0, int64_t fetch_rows = 0,
                  int64_t fetch_r = 0, int64_t fetch_left = 0) {
  constexpr int W = V::W, NR = NV * V::W;
  // Where B's value group v of step p is.
  auto brow = [&](int64_t p, int v) { return SUB ? bp + v * kc * W + p * W : bp + p * NR + v * W; };
  typename V::reg acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) acc[i][v] = V::zero();
  // The C tile is touched only after the k loop: start fetching it now, every line of it (a
  // row of NR floats spans one more line when C is not 64-byte aligned, as a JavaScript
  // array's data need not be; fetching only the first left that one a miss per row).
  if (mr == MR)
    for (int i = 0; i < MR; i++) {
      for (int j = 0; j < NR; j += 16) __builtin_prefetch(c + i * ldc + j, 1, 3);
      if ((reinterpret_cast<uintptr_t>(c + i * ldc) & 63) != 0) __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
    }
  // The lines to fetch (a LineWalk, passed as scalars: passed as a struct it went through the
  // stack and was read back as one vector just after its fields were written one by one, a
  // store-forwarding stall at every call, 1 % at 1024³). One goes every pf_mask + 1 steps (a
  // power of two), spread over the k loop; any past kc go at once now. A line per step from
  // its start asked for lines faster than memory delivered them with both cores streaming:
  // spread, products on weights read from memory ran 1.03–1.05× faster (m = 128, the 125M
  // shapes and 4096²). With SUB it is one run (the piece of the next block of weights, into
  // L2), walked with two pointers: that kernel has no registers to spare for a LineWalk (the
  // prefill read 0.95–0.99× with one); otherwise rows of lines (NextRows, into L1).
  if constexpr (!FETCH) fetch_left = 0;
  LineWalk walk{fetch_col, fetch_ld, fetch_rows, fetch_r, SUB ? 0 : fetch_left};
  const char* pf = SUB ? fetch_col : nullptr;
  const char* pf_end = SUB ? pf + 64 * fetch_left : nullptr;
  if constexpr (SUB) {
    for (const char* q = pf + 64 * kc; q < pf_end; q += 64) __builtin_prefetch(q, 0, 2);
    if (pf_end - pf > 64 * kc) pf_end = pf + 64 * kc;
  } else {
    while (walk.left > kc) __builtin_prefetch(walk.next(), 0, 3);
  }
  const int64_t fetch_lines = SUB ? (pf_end - pf) / 64 : walk.left;
  int64_t pf_mask = 0;
  while (fetch_lines > 0 && fetch_lines * (2 * pf_mask + 2) <= kc) pf_mask = 2 * pf_mask + 1;
  auto fetch_one = [&]() {
    if constexpr (SUB) {
      if (pf < pf_end) {
        __builtin_prefetch(pf, 0, 2);
        pf += 64;
      }
    } else if (walk.left > 0) {
      __builtin_prefetch(walk.next(), 0, 3);
    }
  };
  // A's rows in place (DIRECT), or a packed panel (MR floats per k step), or with ACOLS a
  // transposed A read in place (column-major: the tile's MR values of step p at a + p·lda).
  const float* ar[MR];
#pragma GCC unroll 32
  for (int i = 0; i < MR; i++) ar[i] = a + (DIRECT ? i * lda : 0);
  const int64_t astep = ACOLS ? lda : MR;
  auto step = [&](int64_t p) {
    typename V::reg bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) bv[v] = V::loadu(brow(p, v));
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++) {
      const typename V::reg av = V::set1(DIRECT ? ar[i][p] : a[p * astep + i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) acc[i][v] = V::fmadd(av, bv[v], acc[i][v]);
    }
  };
  // The steps that fetch, then the rest without the check (a kernel built without FETCH has
  // only the second loop).
  const int64_t p_fetch = imin(kc, fetch_lines * (pf_mask + 1));
  int64_t p = 0;
#pragma GCC unroll 2
  for (; p < p_fetch; p++) {
    if ((p & pf_mask) == 0) fetch_one();
    step(p);
  }
#pragma GCC unroll 2
  for (; p < kc; p++) step(p);
  store_tile<V, MR, NV>(acc, c, ldc, alpha, beta, mr, nr, stream);
}

// C = beta·C (k == 0 or alpha == 0): beta == 0 writes zeros without reading C.
inline void scale_c(const GemmTask& t) {
  for (int64_t i = 0; i < t.m; i++) {
    float* cr = t.c + i * t.ldc;
    if (t.beta == 0.f) {
      for (int64_t j = 0; j < t.n; j++) cr[j] = 0.f;
    } else if (t.beta != 1.f) {
      for (int64_t j = 0; j < t.n; j++) cr[j] *= t.beta;
    }
  }
}

// Runs pack_b(t, k0, kc, j0, nc, bp) and returns where the packed panels are: bp, or the
// pointer pack_b returns when it has the panels in place already (prepacked weights; null
// = packed into bp after all).
template <class PackB>
inline const float* packed_b(PackB& pack_b, const GemmTask& t, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                             float* bp) {
  if constexpr (std::is_void_v<decltype(pack_b(t, k0, kc, j0, nc, bp))>) {
    pack_b(t, k0, kc, j0, nc, bp);
    return bp;
  } else {
    const float* in_place = pack_b(t, k0, kc, j0, nc, bp);
    return in_place != nullptr ? in_place : bp;
  }
}

// A pack_b object may also say where the source of a block lies, as one contiguous byte range
// (prepacked weights: a block's panels are one run), with a member
//   Source source(int64_t k0, int64_t kc, int64_t j0, int64_t nc) const;
// then packed_gemm fetches the next block's source into L2 a piece per micro-tile while the
// current block is in use, so that packing or reading it waits on L2 instead of memory. With
// SUB panels the micro-kernel fetches its piece spread over its k steps (a burst of a
// tile's ~50 prefetches at once gained nothing).
struct Source {
  const char* p = nullptr;
  int64_t bytes = 0;
};
// ... and may say (static constexpr bool kSubPanels = true) that its blocks are laid out as
// micro_kernel's SUB panels.
template <class T>
constexpr auto sub_panels_of(int) -> decltype(T::kSubPanels) {
  return T::kSubPanels;
}
template <class T>
constexpr bool sub_panels_of(long) {
  return false;
}
template <class T>
constexpr auto has_source_of(int) -> decltype(std::declval<const T&>().source(0, 0, 0, 0), true) {
  return true;
}
template <class T>
constexpr bool has_source_of(long) {
  return false;
}

// Fetches the next block's source a piece per micro-tile of the current block (`tiles` of them).
struct NextSource {
  Source src;
  int64_t piece = 0, done = 0;
  NextSource(Source s, int64_t tiles) : src(s), piece((s.bytes / (tiles > 0 ? tiles : 1) + 127) / 64 * 64) {}
  inline void step() {
    for (const int64_t e = done + piece; done < src.bytes && done < e; done += 64)
      __builtin_prefetch(src.p + done, 0, 2);
  }
  // This tile's piece, for a micro-kernel to fetch spread over its k steps.
  inline LineWalk take() {
    const int64_t b = done, e = imin(src.bytes, done + piece);
    done = e > b ? e : b;
    const int64_t lines = e > b ? (e - b + 63) / 64 : 0;
    return LineWalk{src.p + b, 0, 1, 0, lines};
  }
};

// The next row tile's A, fetched into L1 while the current tile sweeps the B panels and
// shared out over its `tiles` micro-kernels: `rows` runs of `bytes` bytes from p, `ld` bytes
// apart (a row-major A read in place: the tile's rows, kc floats each, lda apart). Runs that
// short do not let the hardware prefetcher get ahead: without this, 2048³ and 4096³ lost
// 3–7 % to the first micro-kernel of each row tile waiting on A. (The packed A panels of a
// transposed A, fetched the same way: 0.98–1.01×.)
struct NextRows {
  LineWalk walk;
  int64_t share = 0, left = 0;
  NextRows() = default;
  NextRows(const float* p, int64_t ld, int64_t bytes, int64_t rows, int64_t tiles) {
    if (rows <= 0 || bytes <= 0) return;
    const uintptr_t u = reinterpret_cast<uintptr_t>(p);
    const int64_t per_row = (static_cast<int64_t>(u & 63) + bytes + 63) / 64;
    walk = LineWalk{reinterpret_cast<const char*>(u & ~uintptr_t{63}), ld, rows, 0, 0};
    left = rows * per_row;
    share = (left + tiles - 1) / tiles;
  }
  // The next micro-kernel's share. This runs once per micro-kernel: no division, and the walk
  // moves on by whole columns of lines (a few steps), not line by line.
  inline LineWalk take() {
    LineWalk w = walk;
    w.left = share < left ? share : left;
    left -= w.left;
    walk.r += w.left;
    while (walk.r >= walk.rows && walk.rows > 0) {
      walk.r -= walk.rows;
      walk.col += 64;
    }
    return w;
  }
};

template <int NR>
void pack_b_any(const GemmTask& t, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* bp) {
  if (t.bBf16)
    pack_b_generic<NR>(static_cast<const uint16_t*>(t.b), t.ldb, t.transB, k0, kc, j0, nc, bp);
  else
    pack_b_generic<NR>(static_cast<const float*>(t.b), t.ldb, t.transB, k0, kc, j0, nc, bp);
}

// BLIS's loop order: for each NC-wide column block and KC-deep slice B is packed once;
// then MC rows of A at a time are packed into row panels (they stay in L2), and each
// NR-wide B panel (kc·NR floats, 16 KiB for a 16-wide f32 panel) stays in L1 while every A
// panel of the block sweeps past it. Per multiply-add the L2 then supplies only the A
// broadcasts (MR floats per k step) instead of the B panel (NR floats per k step), and the
// packed A panels are contiguous (rows read in place, lda apart, cost ~5 % in L1 misses).
// A is packed here with pack_a_generic (the caller's pack_a serves the other loop order).
// A block whose rows are not a multiple of MR ends in MR4-row panels rather than one
// zero-padded MR-row panel: 8 rows as 4 + 4 instead of 6 + 6 (of which 4 are padding).
// Every tile shape runs the same per-element FMA chain, so the split never changes a bit.
// Where the MR-row tiles of m rows end when the rest go in MR4-row tiles (MR4 < MR): all of
// them when more than MR4 rows are left over (one padded MR tile), else the last multiple of
// MR, one tile less when the leftover and that tile fit two MR4 tiles (2 + 6 = 4 + 4).
inline int64_t a_split_rows(int64_t m, int64_t MR, int64_t MR4) {
  if (MR4 >= MR) return m;
  const int64_t rest = m % MR;
  int64_t m_big = m - rest;
  if (rest > MR4) return m;
  if (rest > 0 && rest + MR <= 2 * MR4 && m_big >= MR) m_big -= MR;
  return m_big;
}

// Widest block (columns) for which packed_gemm_b_stationary reads a transposed A in place.
constexpr int64_t kTransAInPlaceCols = 32;

template <class V, int MR, int MR4, int NV, int KC, int NC, int MC, bool ALLOW_DIRECT, class PackB>
void packed_gemm_b_stationary(const GemmTask& t, PackB&& pack_b) {
  constexpr int NR = NV * V::W;
  static_assert(MC % MR == 0 && MR4 < MR, "MC must be a multiple of MR; MR4 a smaller tile");
  static_assert(!sub_panels_of<std::decay_t<PackB>>(0), "this loop order reads NR-wide B rows only");
  const int64_t ncap = imin(NC, (t.n + NR - 1) / NR * NR);
  float* bp = gemm_scratch(0, static_cast<size_t>(KC) * ncap);
  const int64_t mcap = imin(MC, (t.m + MR - 1) / MR * MR);
  float* ap = gemm_scratch(1, static_cast<size_t>(KC) * mcap);
  const bool stream = V::kCanStream && t.beta == 0.f && t.k <= KC && t.m * t.n >= (int64_t{1} << 21) &&
                      (reinterpret_cast<uintptr_t>(t.c) & 63) == 0 && t.ldc % 16 == 0;
  for (int64_t jc = 0; jc < t.n; jc += NC) {
    const int64_t nc = imin(NC, t.n - jc);
    // Packing A costs about a cycle per element and saves ~5 % of the multiply-adds that
    // use it (nc/16 cycles' worth per element): below 256 columns a row-major A is read in
    // place (only partial panels are packed).
    const bool direct = ALLOW_DIRECT && !t.transA && nc < 256;
    // A transposed A (Gᵀ·H: a LoRA B gradient) feeding one or two B panels: each A element
    // takes nc/8 multiply-adds, about what packing it costs (~40 % of the product at
    // n = 16), so full row tiles read it in place, MR contiguous values per k step.
    const bool cols = ALLOW_DIRECT && t.transA && nc <= kTransAInPlaceCols;
    for (int64_t pc = 0; pc < t.k; pc += KC) {
      const int64_t kc = imin(KC, t.k - pc);
      const float beta = pc == 0 ? t.beta : 1.f;
      const float* bblock = packed_b(pack_b, t, pc, kc, jc, nc, bp);
      for (int64_t ic = 0; ic < t.m; ic += MC) {
        const int64_t mc = imin(MC, t.m - ic);
        // Rows [0, m_big) in MR-row panels (the last one padded when 5 rows are left), the
        // rest in MR4-row panels (the last one padded).
        const int64_t m_big = a_split_rows(mc, MR, MR4);
        for (int64_t r = 0; r < m_big; r += MR)
          if (!(direct || cols) || m_big - r < MR)
            pack_a_generic<MR>(t.a, t.lda, t.transA, ic + r, imin(MR, m_big - r), pc, kc, ap + r * kc);
        for (int64_t r = m_big; r < mc; r += MR4)
          if (!(direct || cols) || mc - r < MR4)
            pack_a_generic<MR4>(t.a, t.lda, t.transA, ic + r, imin(MR4, mc - r), pc, kc, ap + r * kc);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int nr = static_cast<int>(imin(NR, nc - jr));
          const float* bpan = bblock + (jr / NR) * kc * NR;
          float* ccol = t.c + ic * t.ldc + jc + jr;
          // The next B panel (in place it may still be in memory) is fetched into L2 a
          // piece per row panel while this one is in use.
          const char* next = reinterpret_cast<const char*>(bpan + kc * NR);
          const int64_t next_bytes = jr + NR < nc ? kc * NR * 4 : 0;
          const int64_t piece = (next_bytes / (mc / MR + 1) + 63) / 64 * 64;
          int64_t fetched = 0;
          for (int64_t ir = 0; ir < m_big; ir += MR) {
            for (int64_t e = fetched + piece; fetched < next_bytes && fetched < e; fetched += 64)
              __builtin_prefetch(next + fetched, 0, 2);
            const int mr = static_cast<int>(imin(MR, m_big - ir));
            if (direct && mr == MR)
              micro_kernel<V, MR, NV, true>(kc, t.a + (ic + ir) * t.lda + pc, t.lda, bpan, ccol + ir * t.ldc, t.ldc,
                                            t.alpha, beta, MR, nr, stream);
            else if (cols && mr == MR)
              micro_kernel<V, MR, NV, false, true>(kc, t.a + pc * t.lda + ic + ir, t.lda, bpan, ccol + ir * t.ldc,
                                                   t.ldc, t.alpha, beta, MR, nr, stream);
            else
              micro_kernel<V, MR, NV, false>(kc, ap + ir * kc, MR, bpan, ccol + ir * t.ldc, t.ldc, t.alpha, beta, mr,
                                             nr, stream);
          }
          for (int64_t ir = m_big; ir < mc; ir += MR4) {
            const int mr = static_cast<int>(imin(MR4, mc - ir));
            if (direct && mr == MR4)
              micro_kernel<V, MR4, NV, true>(kc, t.a + (ic + ir) * t.lda + pc, t.lda, bpan, ccol + ir * t.ldc, t.ldc,
                                             t.alpha, beta, MR4, nr, stream);
            else if (cols && mr == MR4)
              micro_kernel<V, MR4, NV, false, true>(kc, t.a + pc * t.lda + ic + ir, t.lda, bpan, ccol + ir * t.ldc,
                                                    t.ldc, t.alpha, beta, MR4, nr, stream);
            else
              micro_kernel<V, MR4, NV, false>(kc, ap + ir * kc, MR4, bpan, ccol + ir * t.ldc, t.ldc, t.alpha, beta, mr,
                                              nr, stream);
          }
        }
      }
    }
  }
  if (stream) V::fence();
}

// Goto/BLIS-style blocking: for each NC-wide column block and KC-deep slice, B is packed
// once (it stays in L2 and is reused by every row panel); each MR-row panel of A is
// packed (or read in place) and stays in L1 while it sweeps the NR-wide B panels.
// pack_a(t, i0, rows, k0, kc, ap) packs ceil(rows/MR) zero-padded MR-row panels, kc*MR apart.
// pack_b may return the panels' address instead of packing them (see packed_b). A V with
// kBStationary (AVX2) runs packed_gemm_b_stationary instead, with its own NC and MC.
template <class V, int MR, int NV, int KC, int NC, int MC, bool ALLOW_DIRECT, class PackB, class PackA>
void packed_gemm(const GemmTask& t, PackB&& pack_b, PackA&& pack_a) {
  if constexpr (b_stationary_of<V>(0)) {
    // Under 64 deep ((XAᵀ)·Bᵀ: k = r) the product is bound by writing C, which this
    // order's row sweeps (down 16 columns at a time) write ~25 % slower than whole rows.
    if (t.k > 64) {
      packed_gemm_b_stationary<V, MR, 4, NV, KC, V::kStationaryNC, V::kStationaryMC, ALLOW_DIRECT>(t, pack_b);
      return;
    }
  }
  constexpr int NR = NV * V::W;
  constexpr bool SUB = sub_panels_of<std::decay_t<PackB>>(0);
  constexpr int64_t kRowChunk = 1024;  // bounds the packed-A buffer (KC × 1024 floats, ≤ 1 MiB)
  if (!(ALLOW_DIRECT && !t.transA) && t.m > kRowChunk) {
    for (int64_t r0 = 0; r0 < t.m; r0 += kRowChunk) {
      GemmTask s = t;
      s.m = imin(kRowChunk, t.m - r0);
      s.a = t.transA ? t.a + r0 : t.a + r0 * t.lda;
      s.c = t.c + r0 * t.ldc;
      packed_gemm<V, MR, NV, KC, NC, MC, ALLOW_DIRECT>(s, pack_b, pack_a);
    }
    return;
  }
  const int64_t ncap = imin(NC, (t.n + NR - 1) / NR * NR);
  float* bp = gemm_scratch(0, static_cast<size_t>(KC) * ncap);
  static_assert(MC % MR == 0, "MC must be a multiple of MR");
  // One k slice writing a C far larger than the caches (a rank-r product (XAᵀ)·Bᵀ):
  // streaming stores skip the read-for-ownership of every C line.
  const bool stream = V::kCanStream && t.beta == 0.f && t.k <= KC && t.m * t.n >= (int64_t{1} << 21) &&
                      (reinterpret_cast<uintptr_t>(t.c) & 63) == 0 && t.ldc % 16 == 0;
  const bool a_direct = ALLOW_DIRECT && !t.transA;
  if (a_direct) {
    // Row-major A is read in place (only a ragged last panel is packed). Rows past the last
    // multiple of MR run in MR4-row tiles where that wastes fewer padded rows (a_split_rows:
    // 128 rows as 20·6 + 2·4 instead of 22·6, the last tile 2/6 used).
    constexpr int MR4 = MR == 6 ? 4 : MR;
    const int64_t m_big = a_split_rows(t.m, MR, MR4);
    float* ap = gemm_scratch(1, static_cast<size_t>(KC) * MR);
    for (int64_t jc = 0; jc < t.n; jc += NC) {
      const int64_t nc = imin(NC, t.n - jc);
      for (int64_t pc = 0; pc < t.k; pc += KC) {
        const int64_t kc = imin(KC, t.k - pc);
        const float beta = pc == 0 ? t.beta : 1.f;
        const float* bblock = packed_b(pack_b, t, pc, kc, jc, nc, bp);
        NextSource next({}, 0);
        if constexpr (has_source_of<std::decay_t<PackB>>(0)) {
          const bool more_k = pc + KC < t.k;
          if (more_k || jc + NC < t.n) {
            const int64_t pn = more_k ? pc + KC : 0, jn = more_k ? jc : jc + NC;
            const int64_t row_tiles = (m_big + MR - 1) / MR + (t.m - m_big + MR4 - 1) / MR4;
            next = NextSource(pack_b.source(pn, imin(KC, t.k - pn), jn, imin(NC, t.n - jn)),
                              row_tiles * ((nc + NR - 1) / NR));
          }
        }
        // Rows [0, m_big) in MR-row tiles, the rest in MR4-row ones (a_split_rows).
        for (int64_t ir = 0; ir < t.m;) {
          const bool big = ir < m_big;
          const int tile = big ? MR : MR4;
          const int mr = static_cast<int>(imin(tile, (big ? m_big : t.m) - ir));
          if (mr < tile) {
            if (big)
              pack_a(t, ir, mr, pc, kc, ap);
            else
              pack_a_generic<MR4>(t.a, t.lda, false, ir, mr, pc, kc, ap);
          }
          float* crow = t.c + ir * t.ldc + jc;
          // The tile's micro-kernels; with FA they fetch the next tile's A (with SUB the next
          // block of weights instead: A is small then).
          auto sweep = [&](auto fetch_a) {
            constexpr bool FA = SUB || decltype(fetch_a)::value;
            NextRows next_a;
            if constexpr (!SUB && FA)
              next_a = NextRows(t.a + (ir + mr) * t.lda + pc, t.lda * 4, kc * 4, imin(MR, t.m - ir - mr),
                                (nc + NR - 1) / NR);
            for (int64_t jr = 0; jr < nc; jr += NR) {
              const int nr = static_cast<int>(imin(NR, nc - jr));
              const float* bpan = bblock + (jr / NR) * kc * NR;
              LineWalk fetch;
              if constexpr (SUB) {
                fetch = next.take();
              } else {
                next.step();
                if constexpr (FA) fetch = next_a.take();
              }
              const char* fr = fetch.col;
              const int64_t fl = fetch.ld, fp = fetch.rows, fi = fetch.r, fn = fetch.left;
              if (big && mr == MR)
                micro_kernel<V, MR, NV, true, false, SUB, FA>(kc, t.a + ir * t.lda + pc, t.lda, bpan, crow + jr,
                                                              t.ldc, t.alpha, beta, mr, nr, stream, fr, fl, fp, fi, fn);
              else if (big)
                micro_kernel<V, MR, NV, false, false, SUB, FA>(kc, ap, MR, bpan, crow + jr, t.ldc, t.alpha, beta, mr,
                                                               nr, stream, fr, fl, fp, fi, fn);
              else if (mr == MR4)
                micro_kernel<V, MR4, NV, true, false, SUB, FA>(kc, t.a + ir * t.lda + pc, t.lda, bpan, crow + jr,
                                                               t.ldc, t.alpha, beta, mr, nr, stream, fr, fl, fp, fi,
                                                               fn);
              else
                micro_kernel<V, MR4, NV, false, false, SUB, FA>(kc, ap, MR4, bpan, crow + jr, t.ldc, t.alpha, beta,
                                                                mr, nr, stream, fr, fl, fp, fi, fn);
            }
          };
          // A slice of under 128 steps skips the fetch (its few A lines are not worth the
          // kernels' fetch code: (XAᵀ)·Bᵀ, k = 16, ran 0.91–0.95× with it), and so does an A
          // of under 512 rows (a slice of it, ≤ 512 KiB, is likely in L2 already: the 125M
          // prefill's products, 128 rows, ran 0.98–0.99× with it).
          if (kc >= 128 && t.m >= 512)
            sweep(std::true_type{});
          else
            sweep(std::false_type{});
          ir += mr;
        }
      }
    }
  } else {
    // A is packed once per k slice for all rows (MC rows at a time, each source row of a
    // transposed A read contiguously), then every NC block of B sweeps it.
    const int64_t mpad = (t.m + MR - 1) / MR * MR;
    float* ap = gemm_scratch(1, static_cast<size_t>(KC) * mpad);
    for (int64_t pc = 0; pc < t.k; pc += KC) {
      const int64_t kc = imin(KC, t.k - pc);
      const float beta = pc == 0 ? t.beta : 1.f;
      for (int64_t ic = 0; ic < t.m; ic += MC) pack_a(t, ic, imin(MC, t.m - ic), pc, kc, ap + ic * kc);
      for (int64_t jc = 0; jc < t.n; jc += NC) {
        const int64_t nc = imin(NC, t.n - jc);
        const float* bblock = packed_b(pack_b, t, pc, kc, jc, nc, bp);
        for (int64_t ir = 0; ir < t.m; ir += MR) {
          const int mr = static_cast<int>(imin(MR, t.m - ir));
          const float* apan = ap + ir * kc;
          float* crow = t.c + ir * t.ldc + jc;
          for (int64_t jr = 0; jr < nc; jr += NR) {
            const int nr = static_cast<int>(imin(NR, nc - jr));
            micro_kernel<V, MR, NV, false, false, SUB>(kc, apan, MR, bblock + (jr / NR) * kc * NR, crow + jr,
                                                       t.ldc, t.alpha, beta, mr, nr, stream);
          }
        }
      }
    }
  }
  if (stream) V::fence();
}
