// Instantiating lorakit's kernel module (built from c/*.c by scripts/build-wasm.mjs) from
// its bytes. Browser-safe: where the bytes come from (a file in Node, fetch in a page) is
// the caller's business; this file only compiles them and checks the exports.
import { BackendError } from "../../core/errors.js";

/** The functions the C sources export (see c/gemm.c), plus the memory they work in. */
export interface WasmExports {
  memory: WebAssembly.Memory;
  /** First free byte after the module's static data and stack: the host's arena starts here. */
  __heap_base: WebAssembly.Global;
  wasm_gemm_scratch_bytes(m: number, n: number, k: number): number;
  wasm_gemm(
    transA: number,
    transB: number,
    m: number,
    n: number,
    k: number,
    batch: number,
    a: number,
    strideA: number,
    b: number,
    bBf16: number,
    strideB: number,
    c: number,
    strideC: number,
    alpha: number,
    beta: number,
    scratch: number,
  ): void;
  wasm_attention(
    q: number,
    k: number,
    v: number,
    B: number,
    T: number,
    S: number,
    H: number,
    Hkv: number,
    D: number,
    kvCapacity: number,
    scale: number,
    offset: number,
    causal: number,
    out: number,
    rowMax: number,
    rowSum: number,
    scratch: number,
  ): void;
  wasm_silu_mul(gate: number, up: number, out: number, n: number): void;
  /** dgate, dup: addresses, 0 for a gradient not wanted; acc 1 adds into them. */
  wasm_silu_mul_backward(
    gate: number,
    up: number,
    dy: number,
    dgate: number,
    dup: number,
    n: number,
    acc: number,
  ): void;
  wasm_row_max_sumexp(x: number, N: number, V: number, rowMax: number, rowSum: number): void;
  wasm_cross_entropy_backward(
    logits: number,
    targets: number,
    lse: number,
    scale: number,
    N: number,
    V: number,
    ignoreIndex: number,
    dlogits: number,
    acc: number,
  ): void;
  wasm_rms_norm(x: number, w: number, N: number, C: number, eps: number, y: number, rstd: number): void;
  /** dx, dw: addresses, 0 for a gradient not wanted; dwAcc: C floats of scratch. */
  wasm_rms_norm_backward(
    x: number,
    w: number,
    rstd: number,
    dy: number,
    N: number,
    C: number,
    dx: number,
    dw: number,
    accDx: number,
    dwAcc: number,
  ): void;
  /** dq, dk, dv: addresses, 0 for a gradient not wanted. */
  wasm_attention_backward(
    q: number,
    k: number,
    v: number,
    B: number,
    T: number,
    S: number,
    H: number,
    Hkv: number,
    D: number,
    kvCapacity: number,
    scale: number,
    offset: number,
    causal: number,
    out: number,
    lse: number,
    dout: number,
    dq: number,
    dk: number,
    dv: number,
    scratch: number,
  ): void;
}

const REQUIRED: readonly (keyof WasmExports)[] = [
  "memory",
  "__heap_base",
  "wasm_gemm_scratch_bytes",
  "wasm_gemm",
];

/** The file name the build writes next to the compiled kernels/wasm modules. */
export const WASM_FILE_NAME = "lorakit_kernels.wasm";

/**
 * Compiles and instantiates the kernel module (asynchronously: browsers refuse large
 * synchronous compiles on the main thread). Throws a BackendError when the bytes are not a
 * WebAssembly module, the engine lacks SIMD128, or an export is missing (a stale build).
 */
export async function instantiateWasmKernels(bytes: BufferSource): Promise<WasmExports> {
  let instance: WebAssembly.Instance;
  try {
    ({ instance } = await WebAssembly.instantiate(bytes, {}));
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new BackendError(
      `lorakit: the WebAssembly kernels did not compile here (${why}); they need WebAssembly SIMD128 (Node ≥ 16.4, Chrome ≥ 91, Firefox ≥ 89, Safari ≥ 16.4)`,
      { cause: e },
    );
  }
  const ex = instance.exports as unknown as WasmExports;
  const missing = REQUIRED.filter((name) => (ex as unknown as Record<string, unknown>)[name] === undefined);
  if (missing.length > 0)
    throw new BackendError(
      `lorakit: the WebAssembly kernel module lacks ${missing.join(", ")}; rebuild it (npm run build:wasm)`,
    );
  return ex;
}
