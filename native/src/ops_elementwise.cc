// Element-wise kernels: unary (+ backward), broadcasting binary, where, dropout, axpy, fill.
#include <cmath>
#include <cstring>
#include <limits>

#include "ops_common.h"

namespace lorakit {
namespace ops {
namespace {

// Same names (and meaning) as UNARY_OPS / BINARY_OPS in src/core/backend.ts; the
// TypeScript side maps names to these codes through the exported name lists.
enum Unary {
  kNeg, kExp, kLog, kSqrt, kRsqrt, kTanh, kSigmoid, kSilu, kGeluTanh, kGeluErf, kPow, kAbs, kSquare, kScale, kRelu,
  kUnaryCount
};
const char* const kUnaryNames[] = {"neg",  "exp",     "log",     "sqrt", "rsqrt", "tanh",   "sigmoid", "silu",
                                   "gelu_tanh", "gelu_erf", "pow", "abs",  "square", "scale", "relu"};
enum Binary { kAdd, kSub, kMul, kDiv, kEq, kMaximum, kBinaryCount };
const char* const kBinaryNames[] = {"add", "sub", "mul", "div", "eq", "maximum"};

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;

void unary_range(int op, const float* x, float* y, int64_t n, double param) {
  const auto& K = kernels();
  const float pf = static_cast<float>(param);
  switch (op) {
    case kNeg: for (int64_t i = 0; i < n; i++) y[i] = -x[i]; break;
    case kExp: K.exp_arr(x, y, n); break;
    case kLog: for (int64_t i = 0; i < n; i++) y[i] = std::log(x[i]); break;
    case kSqrt: for (int64_t i = 0; i < n; i++) y[i] = std::sqrt(x[i]); break;
    case kRsqrt: for (int64_t i = 0; i < n; i++) y[i] = 1.f / std::sqrt(x[i]); break;
    case kTanh: for (int64_t i = 0; i < n; i++) y[i] = std::tanh(x[i]); break;
    case kSigmoid: K.sigmoid_arr(x, y, n); break;
    case kSilu: K.silu_arr(x, y, n); break;
    case kGeluTanh:
      for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.f + std::tanh(kSqrt2OverPi * (v + kGeluC * v * v * v)));
      }
      break;
    case kGeluErf:
      for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * kInvSqrt2));
      break;
    case kPow:
      if (param == 2) {
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i];
      } else if (param == 1) {
        std::memmove(y, x, sizeof(float) * n);
      } else {
        for (int64_t i = 0; i < n; i++) y[i] = std::pow(x[i], pf);
      }
      break;
    case kAbs: for (int64_t i = 0; i < n; i++) y[i] = std::fabs(x[i]); break;
    case kSquare: for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i]; break;
    case kScale: for (int64_t i = 0; i < n; i++) y[i] = static_cast<float>(static_cast<double>(x[i]) * param); break;
    case kRelu: for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.f ? x[i] : 0.f; break;
  }
}

template <bool Acc, class F>
inline void bwd_loop(int64_t n, float* dx, F f) {
  for (int64_t i = 0; i < n; i++) {
    const float g = f(i);
    dx[i] = Acc ? dx[i] + g : g;
  }
}

template <bool Acc>
void unary_bwd_range(int op, const float* x, const float* y, const float* dy, float* dx, int64_t n, double param) {
  const float pf = static_cast<float>(param);
  switch (op) {
    case kNeg: bwd_loop<Acc>(n, dx, [&](int64_t i) { return -dy[i]; }); break;
    case kExp: bwd_loop<Acc>(n, dx, [&](int64_t i) { return dy[i] * y[i]; }); break;
    case kLog: bwd_loop<Acc>(n, dx, [&](int64_t i) { return dy[i] / x[i]; }); break;
    case kSqrt: bwd_loop<Acc>(n, dx, [&](int64_t i) { return dy[i] * 0.5f / y[i]; }); break;
    case kRsqrt: bwd_loop<Acc>(n, dx, [&](int64_t i) { return -0.5f * dy[i] * y[i] * y[i] * y[i]; }); break;
    case kTanh: bwd_loop<Acc>(n, dx, [&](int64_t i) { return dy[i] * (1.f - y[i] * y[i]); }); break;
    case kSigmoid: bwd_loop<Acc>(n, dx, [&](int64_t i) { return dy[i] * y[i] * (1.f - y[i]); }); break;
    case kSilu: kernels().silu_bwd(x, dy, dx, n, Acc); break;
    case kGeluTanh:
      bwd_loop<Acc>(n, dx, [&](int64_t i) {
        const float v = x[i];
        const float t = std::tanh(kSqrt2OverPi * (v + kGeluC * v * v * v));
        const float d = 0.5f * (1.f + t) + 0.5f * v * (1.f - t * t) * kSqrt2OverPi * (1.f + 3.f * kGeluC * v * v);
        return dy[i] * d;
      });
      break;
    case kGeluErf:
      bwd_loop<Acc>(n, dx, [&](int64_t i) {
        const float v = x[i];
        const float d = 0.5f * (1.f + std::erf(v * kInvSqrt2)) + v * std::exp(-0.5f * v * v) * kInvSqrt2Pi;
        return dy[i] * d;
      });
      break;
    case kPow:
      if (param == 2) {
        bwd_loop<Acc>(n, dx, [&](int64_t i) { return dy[i] * 2.f * x[i]; });
      } else {
        bwd_loop<Acc>(n, dx, [&](int64_t i) { return dy[i] * pf * std::pow(x[i], pf - 1.f); });
      }
      break;
    case kAbs:
      bwd_loop<Acc>(n, dx, [&](int64_t i) { return x[i] > 0.f ? dy[i] : (x[i] < 0.f ? -dy[i] : 0.f); });
      break;
    case kSquare: bwd_loop<Acc>(n, dx, [&](int64_t i) { return dy[i] * 2.f * x[i]; }); break;
    case kScale:
      bwd_loop<Acc>(n, dx, [&](int64_t i) { return static_cast<float>(static_cast<double>(dy[i]) * param); });
      break;
    case kRelu: bwd_loop<Acc>(n, dx, [&](int64_t i) { return x[i] > 0.f ? dy[i] : 0.f; }); break;
  }
}

bool is_math_heavy(int op) {
  return op == kExp || op == kLog || op == kTanh || op == kSigmoid || op == kSilu || op == kGeluTanh ||
         op == kGeluErf || op == kPow;
}

int unary_code(const Args& A, size_t i) {
  int64_t c = A.integer(i, "op");
  if (c < 0 || c >= kUnaryCount) A.fail("unknown unary op code " + std::to_string(c));
  return static_cast<int>(c);
}

// unary(op, x, out, param)
void Unary_(const Args& A) {
  const int op = unary_code(A, 0);
  F32 x = A.f32(1, "x"), out = A.f32(2, "out");
  const double param = A.num(3, "param");
  A.need(out, x.n, "out");
  parallel_for(x.n, is_math_heavy(op) ? kGrainMath : kGrainCheap,
               [&](int64_t b, int64_t e) { unary_range(op, x.p + b, out.p + b, e - b, param); });
}

// unaryBackward(op, x, y, dy, dx, param, accumulate)
void UnaryBackward(const Args& A) {
  const int op = unary_code(A, 0);
  F32 x = A.f32(1, "x"), y = A.f32(2, "y"), dy = A.f32(3, "dy"), dx = A.f32(4, "dx");
  const double param = A.num(5, "param");
  const bool acc = A.flag(6);
  const int64_t n = dy.n;
  A.need(dx, n, "dx");
  // x or y may be unused by an op, but both must cover n when the op reads them.
  const bool needs_x = !(op == kNeg || op == kExp || op == kSqrt || op == kRsqrt || op == kTanh || op == kSigmoid ||
                         op == kScale);
  const bool needs_y = op == kExp || op == kSqrt || op == kRsqrt || op == kTanh || op == kSigmoid;
  if (needs_x) A.need(x, n, "x");
  if (needs_y) A.need(y, n, "y");
  parallel_for(n, is_math_heavy(op) ? kGrainMath : kGrainCheap, [&](int64_t b, int64_t e) {
    if (acc)
      unary_bwd_range<true>(op, x.p + b, y.p + b, dy.p + b, dx.p + b, e - b, param);
    else
      unary_bwd_range<false>(op, x.p + b, y.p + b, dy.p + b, dx.p + b, e - b, param);
  });
}

// ----- binary with broadcasting -------------------------------------------------------

template <int Op>
inline float bin(float a, float b) {
  if (Op == kAdd) return a + b;
  if (Op == kSub) return a - b;
  if (Op == kMul) return a * b;
  if (Op == kDiv) return a / b;
  if (Op == kEq) return a == b ? 1.f : 0.f;
  // maximum: NaN when either is NaN (Math.max)
  return a > b ? a : (b >= a ? b : a + b);
}

template <int Op>
void bin_run(const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; i++) o[i] = bin<Op>(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const float bv = *b;
    for (int64_t i = 0; i < n; i++) o[i] = bin<Op>(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const float av = *a;
    for (int64_t i = 0; i < n; i++) o[i] = bin<Op>(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; i++) o[i] = bin<Op>(a[i * sa], b[i * sb]);
  }
}

using BinRun = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t);
const BinRun kBinRuns[] = {bin_run<kAdd>, bin_run<kSub>, bin_run<kMul>, bin_run<kDiv>, bin_run<kEq>, bin_run<kMaximum>};

// Collapsed strided iteration over an output of `dims` with up to two inputs.
struct Strided {
  std::vector<int64_t> dims, sa, sb;  // outermost first; the last one is the inner run
};

Strided collapse(const Args& A, const std::vector<int64_t>& as, const std::vector<int64_t>& bs,
                 const std::vector<int64_t>& os) {
  const size_t r = os.size();
  std::vector<int64_t> stA(r), stB(r);
  int64_t pa = 1, pb = 1;
  for (size_t k = r; k-- > 0;) {
    if (as[k] != os[k] && as[k] != 1) A.fail("shape does not broadcast to the output shape");
    if (bs[k] != os[k] && bs[k] != 1) A.fail("shape does not broadcast to the output shape");
    stA[k] = as[k] == 1 ? 0 : pa;
    stB[k] = bs[k] == 1 ? 0 : pb;
    pa *= as[k];
    pb *= bs[k];
  }
  Strided s;
  for (size_t k = 0; k < r; k++) {
    if (os[k] == 1) continue;
    if (!s.dims.empty() && s.sa.back() == stA[k] * os[k] && s.sb.back() == stB[k] * os[k]) {
      s.dims.back() *= os[k];
      s.sa.back() = stA[k];
      s.sb.back() = stB[k];
    } else {
      s.dims.push_back(os[k]);
      s.sa.push_back(stA[k]);
      s.sb.push_back(stB[k]);
    }
  }
  if (s.dims.empty()) {
    s.dims.push_back(1);
    s.sa.push_back(0);
    s.sb.push_back(0);
  }
  return s;
}

// Calls run(aoff, boff, ooff, len, sa_inner, sb_inner) for the contiguous inner runs
// covering flat output positions [begin, end).
template <class Run>
void for_runs(const Strided& s, int64_t begin, int64_t end, Run run) {
  const size_t r = s.dims.size();
  const int64_t inner = s.dims[r - 1];
  std::vector<int64_t> idx(r, 0);
  int64_t rem = begin / inner;
  int64_t col = begin % inner;
  for (size_t k = r - 1; k-- > 0;) {
    idx[k] = rem % s.dims[k];
    rem /= s.dims[k];
  }
  int64_t pos = begin;
  while (pos < end) {
    int64_t ao = col * s.sa[r - 1], bo = col * s.sb[r - 1];
    for (size_t k = 0; k + 1 < r; k++) {
      ao += idx[k] * s.sa[k];
      bo += idx[k] * s.sb[k];
    }
    const int64_t len = std::min(inner - col, end - pos);
    run(ao, bo, pos, len, s.sa[r - 1], s.sb[r - 1]);
    pos += len;
    col = 0;
    for (size_t k = r - 1; k-- > 0;) {
      if (++idx[k] < s.dims[k]) break;
      idx[k] = 0;
    }
  }
}

int64_t prod(const std::vector<int64_t>& d) {
  int64_t p = 1;
  for (int64_t v : d) p *= v;
  return p;
}

// binary(op, a, b, out, shapes, rank): shapes is an Int32Array holding aShape, bShape
// and outShape (rank entries each), so a call costs one array read, not 3·rank.
void Binary_(const Args& A) {
  const int64_t op = A.integer(0, "op");
  if (op < 0 || op >= kBinaryCount) A.fail("unknown binary op code " + std::to_string(op));
  F32 a = A.f32(1, "a"), b = A.f32(2, "b"), out = A.f32(3, "out");
  const int64_t rank = A.size(5, "rank");
  const int32_t* sh = A.i32(4, "shapes", 3 * rank);
  std::vector<int64_t> as(rank), bs(rank), os(rank);
  for (int64_t k = 0; k < rank; k++) {
    if (sh[k] < 0 || sh[rank + k] < 0 || sh[2 * rank + k] < 0) A.fail("negative size in a shape");
    as[k] = sh[k];
    bs[k] = sh[rank + k];
    os[k] = sh[2 * rank + k];
  }
  const int64_t n = prod(os);
  if (n <= 64 && as == os && bs == os) {  // tiny same-shape fast path
    A.need(a, n, "a");
    A.need(b, n, "b");
    A.need(out, n, "out");
    kBinRuns[op](a.p, 1, b.p, 1, out.p, n);
    return;
  }
  A.need(a, prod(as), "a");
  A.need(b, prod(bs), "b");
  A.need(out, n, "out");
  if (n == 0) return;
  Strided s = collapse(A, as, bs, os);
  BinRun fn = kBinRuns[op];
  parallel_for(n, kGrainCheap, [&](int64_t beg, int64_t end) {
    for_runs(s, beg, end, [&](int64_t ao, int64_t bo, int64_t oo, int64_t len, int64_t sa, int64_t sb) {
      fn(a.p + ao, sa, b.p + bo, sb, out.p + oo, len);
    });
  });
}

// broadcastTo(x, xShape, out, outShape)
void BroadcastTo(const Args& A) {
  F32 x = A.f32(0, "x"), out = A.f32(2, "out");
  auto xs = A.dims(1, "xShape"), os = A.dims(3, "outShape");
  if (xs.size() != os.size()) A.fail("shapes must have equal rank");
  const int64_t n = prod(os);
  A.need(x, prod(xs), "x");
  A.need(out, n, "out");
  if (n == 0) return;
  Strided s = collapse(A, xs, xs, os);
  parallel_for(n, kGrainCheap, [&](int64_t beg, int64_t end) {
    for_runs(s, beg, end, [&](int64_t ao, int64_t, int64_t oo, int64_t len, int64_t sa, int64_t) {
      const float* src = x.p + ao;
      float* dst = out.p + oo;
      if (sa == 1) {
        std::memcpy(dst, src, sizeof(float) * len);
      } else if (sa == 0) {
        const float v = *src;
        for (int64_t i = 0; i < len; i++) dst[i] = v;
      } else {
        for (int64_t i = 0; i < len; i++) dst[i] = src[i * sa];
      }
    });
  });
}

// where(cond, a, b, out)
void Where(const Args& A) {
  F32 a = A.f32(1, "a"), b = A.f32(2, "b"), out = A.f32(3, "out");
  const int64_t n = out.n;
  const uint8_t* c = A.u8(0, "cond", n);
  A.need(a, n, "a");
  A.need(b, n, "b");
  parallel_for(n, kGrainCheap, [&](int64_t beg, int64_t end) {
    for (int64_t i = beg; i < end; i++) out.p[i] = c[i] ? a.p[i] : b.p[i];
  });
}

// The counter-based uniform of src/core/backend.ts (dropoutUniform), bit for bit.
inline uint32_t dropout_hash(uint32_t seed, uint32_t index) {
  uint32_t h = ((index ^ 0x9e3779b9u) * 0x85ebca6bu) ^ (seed * 0xc2b2ae35u);
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  h ^= h >> 16;
  return h >> 8;  // uniform = this / 2^24
}

// ToUint32 of a JavaScript number (what `x | 0` / `x >>> 0` see).
uint32_t js_uint32(double d) {
  if (!std::isfinite(d)) return 0;
  double t = std::trunc(d);
  double m = std::fmod(t, 4294967296.0);
  if (m < 0) m += 4294967296.0;
  return static_cast<uint32_t>(m);
}

// dropout(x, out, p, seed, offset)
void Dropout(const Args& A) {
  F32 x = A.f32(0, "x"), out = A.f32(1, "out");
  const double p = A.num(2, "p");
  const uint32_t seed = js_uint32(A.num(3, "seed"));
  const uint32_t offset = js_uint32(A.num(4, "offset"));
  const int64_t n = x.n;
  A.need(out, n, "out");
  // kept ⇔ h/2^24 ≥ p ⇔ h ≥ ceil(p·2^24) (p·2^24 is exact in double)
  // (p ≤ 0 keeps everything; p > 1 or NaN keeps nothing, as uniform ≥ NaN is false.)
  const double th = std::ceil(p * 16777216.0);
  uint32_t thr;
  if (std::isnan(p) || th > 16777216.0)
    thr = 16777216u;
  else if (th <= 0)
    thr = 0;
  else
    thr = static_cast<uint32_t>(th);
  const double scale = 1.0 / (1.0 - p);
  parallel_for(n, kGrainMath, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const uint32_t h = dropout_hash(seed, offset + static_cast<uint32_t>(i));
      out.p[i] = h >= thr ? static_cast<float>(static_cast<double>(x.p[i]) * scale) : 0.f;
    }
  });
}

// axpy(alpha, x, y): y += alpha·x
void Axpy(const Args& A) {
  const double alpha = A.num(0, "alpha");
  F32 x = A.f32(1, "x"), y = A.f32(2, "y");
  const int64_t n = y.n;
  A.need(x, n, "x");
  parallel_for(n, kGrainCheap, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++)
      y.p[i] = static_cast<float>(static_cast<double>(y.p[i]) + alpha * static_cast<double>(x.p[i]));
  });
}

// fill(out, value)
void Fill(const Args& A) {
  F32 out = A.f32(0, "out");
  const float v = static_cast<float>(A.num(1, "value"));
  parallel_for(out.n, kGrainCheap * 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) out.p[i] = v;
  });
}

Napi::Array names(Napi::Env env, const char* const* list, int n) {
  Napi::Array a = Napi::Array::New(env, n);
  for (int i = 0; i < n; i++) a.Set(static_cast<uint32_t>(i), Napi::String::New(env, list[i]));
  return a;
}

}  // namespace

void RegisterElementwise(Napi::Env env, Napi::Object exports) {
  exports.Set("unaryOpNames", names(env, kUnaryNames, kUnaryCount));
  exports.Set("binaryOpNames", names(env, kBinaryNames, kBinaryCount));
  Export<Unary_>(env, exports, "unary");
  Export<UnaryBackward>(env, exports, "unaryBackward");
  Export<Binary_>(env, exports, "binary");
  Export<BroadcastTo>(env, exports, "broadcastTo");
  Export<Where>(env, exports, "where");
  Export<Dropout>(env, exports, "dropout");
  Export<Axpy>(env, exports, "axpy");
  Export<Fill>(env, exports, "fill");
}

}  // namespace ops
}  // namespace lorakit
