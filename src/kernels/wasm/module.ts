// Instantiating lorakit's kernel module (built from c/*.c by scripts/build-wasm.mjs) from
// its bytes. Browser-safe: where the bytes come from (a file in Node, fetch in a page) is
// the caller's business; this file only compiles them and checks the exports.
import { BackendError } from "../../core/errors.js";
import { OPS_THREADED_KERNELS, type WasmOpsExports } from "./ops-exports.js";

/**
 * The functions the C sources export (see c/gemm.c), plus the memory they work in. Every
 * kernel but wasm_gemm_scratch_bytes takes (tid, nth) last: the share of the work of thread
 * `tid` of `nth` (0 of 1 alone; pool.ts runs the other shares on workers).
 */
export interface WasmExports extends WasmOpsExports {
  memory: WebAssembly.Memory;
  /** First free byte after the module's static data and stack: the host's arena starts here. */
  __heap_base: WebAssembly.Global;
  /** Bytes of scratch one thread of `nth` needs for this product (c/gemm.c). */
  wasm_gemm_scratch_bytes(m: number, n: number, k: number, batch: number, nth: number): number;
  /** Bytes of B packed whole for this product where wasm_gemm reads it so, else 0 (c/gemm.c). */
  wasm_gemm_packed_b_bytes(m: number, n: number, k: number, batch: number): number;
  /** Packs op(B) whole into `dst` (wasm_gemm_packed_b_bytes of them); wasm_gemm then takes bBf16 = 2 and `dst` as b. */
  wasm_gemm_pack_b(transB: number, n: number, k: number, b: number, bBf16: number, dst: number): void;
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
    tid: number,
    nth: number,
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
    tid: number,
    nth: number,
  ): void;
  wasm_silu_mul(gate: number, up: number, out: number, n: number, tid: number, nth: number): void;
  /** dgate, dup: addresses, 0 for a gradient not wanted; acc 1 adds into them. */
  wasm_silu_mul_backward(
    gate: number,
    up: number,
    dy: number,
    dgate: number,
    dup: number,
    n: number,
    acc: number,
    tid: number,
    nth: number,
  ): void;
  wasm_row_max_sumexp(
    x: number,
    N: number,
    V: number,
    rowMax: number,
    rowSum: number,
    tid: number,
    nth: number,
  ): void;
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
    tid: number,
    nth: number,
  ): void;
  wasm_rms_norm(
    x: number,
    w: number,
    N: number,
    C: number,
    eps: number,
    y: number,
    rstd: number,
    tid: number,
    nth: number,
  ): void;
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
    tid: number,
    nth: number,
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
    tid: number,
    nth: number,
  ): void;
  /** AdamW's f32 update (c/optim.c); the step's constants come from the host. */
  wasm_adamw(
    param: number,
    grad: number,
    m: number,
    v: number,
    n: number,
    beta1: number,
    beta2: number,
    stepSize: number,
    sqrtBc2: number,
    eps: number,
    decay: number,
    tid: number,
    nth: number,
  ): void;
  wasm_rope(
    x: number,
    cos: number,
    sin: number,
    B: number,
    T: number,
    H: number,
    D: number,
    inverse: number,
    out: number,
    tid: number,
    nth: number,
  ): void;
  wasm_softmax(x: number, N: number, C: number, out: number, tid: number, nth: number): void;
  /** out = x − lse[row] (log-softmax with the row log-sum-exps from the host). */
  wasm_row_sub(x: number, lse: number, N: number, C: number, out: number, tid: number, nth: number): void;
  /** log 0: softmax's backward; log 1: log-softmax's. */
  wasm_softmax_backward(
    y: number,
    dy: number,
    N: number,
    C: number,
    dx: number,
    acc: number,
    log: number,
    tid: number,
    nth: number,
  ): void;
  /** op: the index in BINARY_OPS; aOff, bOff: each run's offset (int32) into a, b; sa, sb: 0 or 1. */
  wasm_binary(
    op: number,
    a: number,
    aOff: number,
    sa: number,
    b: number,
    bOff: number,
    sb: number,
    out: number,
    rows: number,
    inner: number,
    tid: number,
    nth: number,
  ): void;
  /** alpha: an f64. */
  wasm_axpy(alpha: number, x: number, y: number, n: number, tid: number, nth: number): void;
  /** scale: an f64; threshold: ⌈p·2²⁴⌉; seed and offset wrap to 32 bits as in dropoutUniform. */
  wasm_dropout(
    x: number,
    out: number,
    n: number,
    scale: number,
    threshold: number,
    seed: number,
    offset: number,
    tid: number,
    nth: number,
  ): void;
  /** op: the index in elementwise.ts's WASM_UNARY; param: an f64 (scale's factor). */
  wasm_unary(op: number, x: number, out: number, n: number, param: number, tid: number, nth: number): void;
}

/** The kernels that take (tid, nth): what a worker may be asked to run (pool.ts, worker-loop.ts). */
export const THREADED_KERNELS = [
  "wasm_gemm",
  "wasm_attention",
  "wasm_attention_backward",
  "wasm_silu_mul",
  "wasm_silu_mul_backward",
  "wasm_row_max_sumexp",
  "wasm_cross_entropy_backward",
  "wasm_rms_norm",
  "wasm_rms_norm_backward",
  "wasm_adamw",
  "wasm_rope",
  "wasm_softmax",
  "wasm_row_sub",
  "wasm_softmax_backward",
  "wasm_binary",
  "wasm_axpy",
  "wasm_dropout",
  "wasm_unary",
  ...OPS_THREADED_KERNELS,
] as const satisfies readonly (keyof WasmExports)[];
export type ThreadedKernel = (typeof THREADED_KERNELS)[number];

const REQUIRED: readonly (keyof WasmExports)[] = [
  "__heap_base",
  "wasm_gemm_scratch_bytes",
  ...THREADED_KERNELS,
  "wasm_gemm_packed_b_bytes",
  "wasm_gemm_pack_b",
];

/** The file names the build writes next to the compiled kernels/wasm modules. */
export const WASM_FILE_NAME = "lorakit_kernels.wasm";
export const WASM_THREADS_FILE_NAME = "lorakit_kernels_threads.wasm";
/** The same two built with relaxed SIMD (c/madd.h): taken where relaxedSimdSupported(). */
export const WASM_RELAXED_FILE_NAME = "lorakit_kernels_relaxed.wasm";
export const WASM_THREADS_RELAXED_FILE_NAME = "lorakit_kernels_threads_relaxed.wasm";

/** Which build of the kernels runs: plain SIMD128, or relaxed SIMD (fused multiply-add where the CPU has it). */
export type WasmSimd = "simd128" | "relaxed";

/** The file of the single-threaded (`threaded` false) or threaded module of that build. */
export function wasmFileName(threaded: boolean, simd: WasmSimd): string {
  if (simd === "relaxed") return threaded ? WASM_THREADS_RELAXED_FILE_NAME : WASM_RELAXED_FILE_NAME;
  return threaded ? WASM_THREADS_FILE_NAME : WASM_FILE_NAME;
}

/**
 * A module of one function that returns f32x4.relaxed_madd of three zero vectors: it
 * validates exactly where the engine has relaxed SIMD (Chromium ≥ 114, Firefox ≥ 120 behind
 * no flag; Node 20 only with --experimental-wasm-relaxed-simd).
 */
const ZERO_V128 = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
const RELAXED_BODY = [0x00, ...ZERO_V128, ...ZERO_V128, ...ZERO_V128, 0xfd, 0x85, 0x02, 0x0b];
const RELAXED_PROBE = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
  ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b], // types: () -> v128
  ...[0x03, 0x02, 0x01, 0x00], // one function of type 0
  ...[0x0a, RELAXED_BODY.length + 2, 0x01, RELAXED_BODY.length, ...RELAXED_BODY],
]);

/** Whether this engine validates relaxed SIMD (then the *_relaxed.wasm modules run here). */
export function relaxedSimdSupported(): boolean {
  try {
    return WebAssembly.validate(RELAXED_PROBE);
  } catch {
    return false;
  }
}

function compileError(e: unknown): BackendError {
  const why = e instanceof Error ? e.message : String(e);
  return new BackendError(
    `lorakit: the WebAssembly kernels did not compile here (${why}); they need WebAssembly SIMD128 (Node ≥ 16.4, Chrome ≥ 91, Firefox ≥ 89, Safari ≥ 16.4)`,
    { cause: e },
  );
}

function checkExports(ex: Record<string, unknown>): void {
  const missing = REQUIRED.filter((name) => ex[name] === undefined);
  if (missing.length > 0)
    throw new BackendError(
      `lorakit: the WebAssembly kernel module lacks ${missing.join(", ")}; rebuild it (npm run build:wasm)`,
    );
}

/**
 * Compiles and instantiates the single-threaded kernel module (asynchronously: browsers
 * refuse large synchronous compiles on the main thread). Throws a BackendError when the
 * bytes are not a WebAssembly module, the engine lacks SIMD128, or an export is missing (a
 * stale build).
 */
export async function instantiateWasmKernels(bytes: BufferSource): Promise<WasmExports> {
  let instance: WebAssembly.Instance;
  try {
    ({ instance } = await WebAssembly.instantiate(bytes, {}));
  } catch (e) {
    throw compileError(e);
  }
  const ex = instance.exports as unknown as WasmExports;
  checkExports(ex as unknown as Record<string, unknown>);
  if (!(ex.memory instanceof WebAssembly.Memory))
    throw new BackendError(
      "lorakit: this WebAssembly kernel module has no memory of its own (it is the threaded one?); pass lorakit_kernels.wasm",
    );
  return ex;
}

/** Compiles the threaded module (lorakit_kernels_threads.wasm) once; each thread instantiates it. */
export async function compileThreadedKernels(bytes: BufferSource): Promise<WebAssembly.Module> {
  let module: WebAssembly.Module;
  try {
    module = await WebAssembly.compile(bytes);
  } catch (e) {
    throw compileError(e);
  }
  const imports = WebAssembly.Module.imports(module);
  if (!imports.some((i) => i.kind === "memory"))
    throw new BackendError(
      "lorakit: this WebAssembly kernel module does not import a shared memory (it is the single-threaded one?); pass lorakit_kernels_threads.wasm",
    );
  return module;
}

/** One thread's instance of the threaded module on the shared `memory`. */
export async function instantiateThreadedKernels(
  module: WebAssembly.Module,
  memory: WebAssembly.Memory,
): Promise<WasmExports & { __stack_pointer: WebAssembly.Global }> {
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const ex: Record<string, unknown> = { ...instance.exports, memory };
  checkExports(ex);
  if (!(ex.__stack_pointer instanceof WebAssembly.Global))
    throw new BackendError(
      "lorakit: the threaded WebAssembly kernel module lacks __stack_pointer; rebuild it (npm run build:wasm)",
    );
  return ex as unknown as WasmExports & { __stack_pointer: WebAssembly.Global };
}
