// The element-wise, reduction and fused kernels the native addon exports (native/src/ops_*.cc).
// Every function takes Float32Array operands only, checks every length before touching
// memory and throws a RangeError naming the kernel and the argument when a buffer is too
// short or an index is out of range. Argument order follows core/backend.ts; `null`
// stands for an output that is not wanted.

/**
 * The ISA level the op kernels run on (chosen at load time from the CPU; LORAKIT_CPU lowers
 * it). "emu16": the test-only plain-C++ emulation of the AVX-512 kernels' 16 lanes, only
 * when asked for (LORAKIT_CPU=emu16 or setOpsIsa("emu16")), so their N = 16 code paths are
 * tested on hosts without AVX-512.
 */
export type OpsIsa = "avx512" | "avx2" | "portable" | "emu16";

export interface OpsAddon {
  /** UNARY_OPS names in the order of the addon's op codes (code = index). */
  readonly unaryOpNames: readonly string[];
  /** BINARY_OPS names in the order of the addon's op codes (code = index). */
  readonly binaryOpNames: readonly string[];
  /** The ISA level the op kernels use now. */
  opsIsa(): OpsIsa;
  /** Forces a level (never above what the CPU has, "emu16" anywhere; anything else = the best); returns the level now used. */
  setOpsIsa(isa: string): OpsIsa;

  unary(op: number, x: Float32Array, out: Float32Array, param: number): void;
  unaryBackward(
    op: number,
    x: Float32Array,
    y: Float32Array,
    dy: Float32Array,
    dx: Float32Array,
    param: number,
    accumulate: boolean,
  ): void;
  /** shapes holds aShape, bShape, outShape one after another, `rank` entries each. */
  binary(
    op: number,
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    shapes: Int32Array,
    rank: number,
  ): void;
  /** op: 0 sum, 1 max. */
  reduce(
    op: 0 | 1,
    x: Float32Array,
    shape: readonly number[],
    axes: readonly number[],
    out: Float32Array,
  ): void;
  broadcastTo(
    x: Float32Array,
    xShape: readonly number[],
    out: Float32Array,
    outShape: readonly number[],
  ): void;
  permute(x: Float32Array, shape: readonly number[], perm: readonly number[], out: Float32Array): void;
  copyAxis(
    x: Float32Array,
    outer: number,
    srcAxis: number,
    inner: number,
    srcStart: number,
    out: Float32Array,
    dstAxis: number,
    dstStart: number,
    len: number,
    accumulate: boolean,
  ): void;
  gather(table: Float32Array, idx: Int32Array, C: number, out: Float32Array): void;
  scatterAdd(dOut: Float32Array, idx: Int32Array, C: number, dTable: Float32Array): void;
  where(cond: Uint8Array, a: Float32Array, b: Float32Array, out: Float32Array): void;
  dropout(x: Float32Array, out: Float32Array, p: number, seed: number, offset: number): void;
  softmax(x: Float32Array, N: number, C: number, out: Float32Array): void;
  softmaxBackward(
    y: Float32Array,
    dy: Float32Array,
    N: number,
    C: number,
    dx: Float32Array,
    accumulate: boolean,
  ): void;
  logSoftmax(x: Float32Array, N: number, C: number, out: Float32Array): void;
  logSoftmaxBackward(
    y: Float32Array,
    dy: Float32Array,
    N: number,
    C: number,
    dx: Float32Array,
    accumulate: boolean,
  ): void;
  crossEntropy(
    logits: Float32Array,
    targets: Int32Array,
    N: number,
    V: number,
    ignoreIndex: number,
    loss: Float32Array,
    lse: Float32Array,
  ): void;
  crossEntropyBackward(
    logits: Float32Array,
    targets: Int32Array,
    lse: Float32Array,
    gradScale: Float32Array,
    N: number,
    V: number,
    ignoreIndex: number,
    dlogits: Float32Array,
    accumulate: boolean,
  ): void;
  rmsNorm(
    x: Float32Array,
    w: Float32Array,
    N: number,
    C: number,
    eps: number,
    y: Float32Array,
    rstd: Float32Array,
  ): void;
  rmsNormBackward(
    x: Float32Array,
    w: Float32Array,
    rstd: Float32Array,
    dy: Float32Array,
    N: number,
    C: number,
    dx: Float32Array | null,
    dw: Float32Array | null,
    accumulateDx: boolean,
  ): void;
  rope(
    x: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    B: number,
    T: number,
    H: number,
    D: number,
    inverse: boolean,
    out: Float32Array,
  ): void;
  /** k and v: both Float32Arrays, or both Uint16Arrays of bf16 bits (a bf16 KV cache). */
  attention(
    q: Float32Array,
    k: Float32Array | Uint16Array,
    v: Float32Array | Uint16Array,
    B: number,
    T: number,
    S: number,
    H: number,
    Hkv: number,
    D: number,
    kvCapacity: number,
    scale: number,
    offset: number,
    causal: boolean,
    out: Float32Array,
    lse: Float32Array,
  ): void;
  /** rows: per sequence (tokens, offset, capacity); ks[n], vs[n] both f32 or both bf16 bits. */
  attentionRows(
    q: Float32Array,
    ks: readonly (Float32Array | Uint16Array)[],
    vs: readonly (Float32Array | Uint16Array)[],
    rows: Int32Array,
    H: number,
    Hkv: number,
    D: number,
    scale: number,
    out: Float32Array,
  ): void;
  attentionBackward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    B: number,
    T: number,
    S: number,
    H: number,
    Hkv: number,
    D: number,
    kvCapacity: number,
    scale: number,
    offset: number,
    causal: boolean,
    out: Float32Array,
    lse: Float32Array,
    dout: Float32Array,
    dq: Float32Array | null,
    dk: Float32Array | null,
    dv: Float32Array | null,
  ): void;
  siluMul(gate: Float32Array, up: Float32Array, out: Float32Array): void;
  siluMulBackward(
    gate: Float32Array,
    up: Float32Array,
    dy: Float32Array,
    dgate: Float32Array | null,
    dup: Float32Array | null,
    accumulate: boolean,
  ): void;
  axpy(alpha: number, x: Float32Array, y: Float32Array): void;
  fill(out: Float32Array, value: number): void;
  adamw(
    param: Float32Array,
    grad: Float32Array,
    m: Float32Array,
    v: Float32Array,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    step: number,
  ): void;
}
