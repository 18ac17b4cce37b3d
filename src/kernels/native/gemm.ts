// The native GEMM entry point: Float32 products go to the addon (AVX-512 / AVX2+FMA /
// portable C++ chosen at run time, threaded), Float64 calls go to the reference backend.
import type { GemmParams } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";

export type CpuPathName = "avx512" | "avx2" | "portable";

export interface CpuFeatureReport {
  /** The path the kernels use (the best supported one, lowered by LORAKIT_CPU). */
  path: CpuPathName;
  /** The best path this CPU and OS support. */
  best: CpuPathName;
  arch: "x86_64" | "arm64" | "other";
  /** The CPU's vendor (cpuid), for benchmarks to print: some kernels tune prefetching by it. */
  vendor: "intel" | "amd" | "other";
  avx2: boolean;
  fma: boolean;
  avx512f: boolean;
  avx512bw: boolean;
  avx512vl: boolean;
  avx512dq: boolean;
  avx512bf16: boolean;
  avx512vbmi: boolean;
  /** Whether kernels use VBMI here (an AVX-512 path that LORAKIT_CPU=avx512 does not hold to F/BW/VL/DQ). */
  vbmi: boolean;
  /** Threads in the native pool. */
  threads: number;
}

export interface GemmAddon {
  /**
   * C[i] = alpha·op(A[i])·op(B[i]) + beta·C[i] for i < batch, row-major, matrices
   * stride* elements apart (0 = shared operand). b may hold bf16 values (Uint16Array).
   * The arrays are used in place; lengths are checked (TypeError / RangeError).
   */
  gemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    batch: number,
    a: Float32Array,
    strideA: number,
    b: Float32Array | Uint16Array,
    strideB: number,
    c: Float32Array,
    strideC: number,
    alpha: number,
    beta: number,
  ): void;
  /** Measured throughput (GFLOP/s) of independent FMA chains on the kernels' path. */
  fmaPeak(threads: number, ms: number): number;
  cpuFeatures(): CpuFeatureReport;
}

/** Backend.gemm on the addon: Float32 natively (B f32 or bf16), anything else by the reference. */
export function nativeGemm(addon: GemmAddon, p: GemmParams): void {
  const { a, b, c } = p;
  if (
    c instanceof Float32Array &&
    a instanceof Float32Array &&
    (b instanceof Float32Array || b instanceof Uint16Array)
  ) {
    addon.gemm(
      p.transA,
      p.transB,
      p.m,
      p.n,
      p.k,
      p.batch,
      a,
      p.strideA,
      b,
      p.strideB,
      c,
      p.strideC,
      p.alpha,
      p.beta,
    );
    return;
  }
  refBackend.gemm(p);
}
