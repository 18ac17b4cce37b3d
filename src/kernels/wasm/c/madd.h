// a·b + c on four f32 lanes, the inner step of the GEMM and attention kernels.
//
// scripts/build-wasm.mjs builds every module twice: plain SIMD128 (a multiply, then an add,
// each rounded) and with relaxed SIMD (-mrelaxed-simd, which defines __wasm_relaxed_simd__),
// where it is f32x4.relaxed_madd: one fused multiply-add where the engine's CPU has FMA
// (V8 on x86-64 with FMA3, on arm64), else the same two rounded operations. The loader picks
// the relaxed module only where the engine validates it (Chromium ≥ 114; not Node 20 without
// --experimental-wasm-relaxed-simd). Either way every element of a result is computed by the
// same instructions in the same order whatever the thread count, so results stay
// bit-identical across thread counts; fused and unfused differ by rounding only.
#pragma once
#include <wasm_simd128.h>

#ifdef __wasm_relaxed_simd__
// Clang 16 has the builtin but not yet wasm_simd128.h's wasm_f32x4_relaxed_madd wrapper.
typedef float madd_f32x4_t __attribute__((__vector_size__(16)));
#define MADD(a, b, c) \
  ((v128_t)__builtin_wasm_relaxed_madd_f32x4((madd_f32x4_t)(a), (madd_f32x4_t)(b), (madd_f32x4_t)(c)))
#else
#define MADD(a, b, c) wasm_f32x4_add(wasm_f32x4_mul(a, b), c)
#endif
