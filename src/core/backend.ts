// The kernel contract that core/ calls. A backend works on flat, contiguous, row-major
// typed arrays plus the sizes it needs; it allocates nothing that it returns: every
// output buffer is passed in, already sized, and every kernel writes all of it (or adds
// into it where the name says `accumulate`). Buffers handed out by the pool are not
// zeroed, so a kernel must never read an output before writing it unless told to
// accumulate.
//
// Float kernels take Float32Array or Float64Array (f64 exists for finite-difference
// gradient checks). All float arguments of one call share the same array type. A fast
// backend may handle only Float32Array and delegate Float64Array calls to the reference.
//
// Shape vocabulary: B batch, T time (queries), S time (keys), C channels, H heads,
// Hkv kv heads, D head dim, V vocab, N rows, r rank.

export type FloatArray = Float32Array | Float64Array;

export const UNARY_OPS = [
  "neg",
  "exp",
  "log",
  "sqrt",
  "rsqrt",
  "tanh",
  "sigmoid",
  "silu",
  "gelu_tanh",
  "gelu_erf",
  "pow", // x^param
  "abs",
  "square",
  "scale", // x*param
  "relu",
] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];

export const BINARY_OPS = ["add", "sub", "mul", "div", "eq", "maximum"] as const;
export type BinaryOp = (typeof BINARY_OPS)[number];

export type ReduceOp = "sum" | "max";

export interface GemmParams {
  /** C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b]; op(A) is m×k, op(B) is k×n, C is m×n. */
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  /** Number of matrices; 1 for a plain 2-D product. */
  batch: number;
  /** A is stored m×k (k×m when transA), row-major, matrices `strideA` elements apart (0 = shared). */
  a: FloatArray;
  strideA: number;
  /**
   * B in the compute dtype, or a Uint16Array of bf16 values (frozen weights stored at
   * half size; a fast backend converts while packing, the result is as if B were
   * converted to f32 first).
   */
  b: FloatArray | Uint16Array;
  strideB: number;
  c: FloatArray;
  strideC: number;
  alpha: number;
  /** 0 overwrites C (its old contents are never read, even NaN); 1 accumulates. */
  beta: number;
}

export interface AttentionParams {
  /**
   * q: (B,T,H,D); k, v: (B,kvCapacity,Hkv,D) of which the first S rows per batch are valid.
   * k and v are floats like q, or both bf16 bit patterns (Uint16Array; a KV cache stored in
   * bf16): then the result is exactly that of attention over their widened f32 values.
   * bf16 k/v are for the forward only: attentionBackward takes float k and v.
   */
  q: FloatArray;
  k: FloatArray | Uint16Array;
  v: FloatArray | Uint16Array;
  B: number;
  T: number;
  S: number;
  H: number;
  Hkv: number;
  D: number;
  /** Rows per batch in k and v (≥ S); equals S for contiguous tensors. */
  kvCapacity: number;
  /** Softmax scale, usually 1/√D. */
  scale: number;
  /** Query t sits at absolute position `offset + t` and sees keys 0..offset+t (causal). */
  offset: number;
  causal: boolean;
}

/**
 * The attention of a continuous batch (serving's decode and prefill rows) in one call:
 * sequence n has `tokens[n]` queries, its rows of q and out following the previous
 * sequence's ((Σ tokens, H, D) in all), at positions offsets[n].. after what its own cache
 * holds; k[n], v[n] are that cache's keys and values ((capacities[n], Hkv, D), floats, or both
 * bf16 bit patterns) with this step's rows already written. Each sequence attends causally
 * over its own keys: exactly `attention` with B = 1, T = tokens[n], S = offsets[n] + tokens[n],
 * kvCapacity = capacities[n], offset = offsets[n], row for row.
 */
export interface AttentionRowsParams {
  q: FloatArray;
  k: readonly (FloatArray | Uint16Array)[];
  v: readonly (FloatArray | Uint16Array)[];
  /** Per sequence: query tokens this call, keys before them, rows its cache holds. */
  tokens: readonly number[];
  offsets: readonly number[];
  capacities: readonly number[];
  H: number;
  Hkv: number;
  D: number;
  scale: number;
}

export interface AdamWParams {
  param: Float32Array | Float64Array;
  grad: FloatArray;
  m: FloatArray;
  v: FloatArray;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
}

/**
 * A weight in bitsandbytes' NF4 layout as a kernel sees it: W (out × in) flattened row-major,
 * element i has the 4-bit code of nibble i of `packed` (the first of a byte in the high
 * nibble) and the value f32(quantMap[code]·scales[⌊i/blocksize⌋]).
 */
export interface Nf4Weight {
  packed: Uint8Array;
  /** float32 absmax per block (already expanded when the checkpoint double-quantised it). */
  scales: Float32Array;
  blocksize: number;
  /** The 16-entry code book. */
  quantMap: Float32Array;
  outFeatures: number;
  inFeatures: number;
}

/**
 * A frozen NF4 weight held in a backend's own layout (made by `Backend.nf4Pack`, read only by
 * that backend's `nf4GemmPacked`): the codes rearranged for its kernels and the absmax of every
 * block expanded to f32 once. It replaces the bitsandbytes codes while it exists; `unpackCodes`
 * gives them back byte for byte.
 */
export interface PackedNf4 {
  /** The backend that made it (`Backend.name`). */
  readonly backend: string;
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** Memory held by the packed codes and scales. */
  readonly byteLength: number;
  /** The bitsandbytes packing (⌈out·in/2⌉ bytes, first code of a byte in its high nibble) into out. */
  unpackCodes(out: Uint8Array): void;
}

export interface PackedNf4GemmParams {
  /** As Nf4GemmParams.backward. */
  backward: boolean;
  rows: number;
  a: Float32Array;
  w: PackedNf4;
  c: Float32Array;
  /** 0 overwrites c, 1 accumulates into it. */
  beta: number;
}

export interface Nf4GemmParams {
  /** false: c (rows × out) = a (rows × in)·Wᵀ; true (the input gradient): c (rows × in) = a (rows × out)·W. */
  backward: boolean;
  rows: number;
  a: Float32Array;
  w: Nf4Weight;
  c: Float32Array;
  /** 0 overwrites c, 1 accumulates into it. */
  beta: number;
}

/**
 * The adapter half of a linear layer whose rows use different LoRA adapters (the SGMV of
 * Punica / S-LoRA): for each group g, rows `rows[starts[g] .. starts[g+1])` of x (N × inF)
 * and y (N × outF) use adapter g:  h = f32(scales[g])·x[rows]·A_gᵀ (rows × r_g, the scale as
 * the GEMM's alpha), then y[rows] += h·B_gᵀ (each sum rounded once into y). A_g is r_g × inF,
 * B_g is outF × r_g; rows not listed are left as they are. Computed as two GEMMs per group,
 * with the same arguments as LoraLinear's fused op, so a row gets the same bits alone or
 * inside a batch.
 */
export interface LoraGroupedParams {
  x: FloatArray;
  y: FloatArray;
  inFeatures: number;
  outFeatures: number;
  rows: Int32Array;
  /** G+1 offsets into rows. */
  starts: Int32Array;
  A: readonly FloatArray[];
  B: readonly FloatArray[];
  ranks: Int32Array;
  scales: Float64Array;
  /**
   * Optional: group g's adapter is slots[g], an index into A, B, ranks and scales, which then
   * list a layer's adapters rather than the groups' (a serving step's layers each keep that
   * list between steps).
   */
  slots?: Int32Array;
  /** Optional, with slots: what this backend's prepareLora made of this A and B. */
  prepared?: PreparedLora | null;
}

/**
 * A layer's adapters' A and B arrays as a backend reads them in loraGrouped (the native
 * backend: their addresses, so a call does not look up a hundred arrays one by one). Made by
 * `Backend.prepareLora`; valid while those arrays stay the tensors' arrays and alive, which
 * its maker ensures (it holds them, and rebuilds when arraysGeneration() moves).
 */
export interface PreparedLora {
  /** The backend that made it: no other backend can read it. */
  readonly backend: string;
}

/**
 * A frozen linear weight W (rows × cols, y = x·Wᵀ) held in a backend's own layout (the panels
 * its GEMM kernels read), made by `Backend.packWeight` and read only by that backend's
 * `gemmPacked`. While a tensor is packed this replaces its row-major storage: reading the
 * tensor's `data` unpacks it (see Tensor.packedWeight), so nothing else ever sees the layout.
 */
export interface PackedWeight {
  /** The backend that made it (`Backend.name`): no other backend can read it. */
  readonly backend: string;
  readonly dtype: "f32" | "bf16";
  readonly rows: number;
  readonly cols: number;
  /** Memory held by the packed form. */
  readonly byteLength: number;
  /** W back in row-major order into `out` (rows·cols elements of the weight's dtype), bit for bit. */
  unpack(out: Float32Array | Uint16Array): void;
  /** Rows `ids` of W widened to f32 into out (ids.length × cols): an embedding tied to this weight. */
  gatherRows(ids: Int32Array, out: Float32Array): void;
}

export interface PackedGemmParams {
  /** c (m × w.rows) = alpha·a (m × w.cols)·Wᵀ + beta·c; beta 0 never reads c. */
  m: number;
  a: Float32Array;
  w: PackedWeight;
  c: Float32Array;
  alpha: number;
  beta: number;
}

export interface Backend {
  readonly name: string;

  /**
   * Optional: a frozen weight (rows × cols, f32 or bf16 values) in this backend's packed
   * layout, or null where it has none for this CPU. Each result element of `gemmPacked` must
   * equal, bit for bit, what `gemm` computes for x·Wᵀ from the row-major weight, for any m.
   */
  packWeight?(w: Float32Array | Uint16Array, rows: number, cols: number): PackedWeight | null;
  /** Optional, with packWeight: the linear-layer product on a weight this backend packed. */
  gemmPacked?(p: PackedGemmParams): void;
  /**
   * Optional, with gemmPacked: several products of one input (every `a` and `m` the same; a
   * layer's q/k/v or gate/up projections) in one call, so a decode step hands them to the
   * threads together. Each `c` must be what `gemmPacked` gives for its params alone, bit for bit.
   */
  gemmPackedShared?(ps: readonly PackedGemmParams[]): void;

  /** Batched GEMM in every transpose form (see GemmParams). */
  gemm(p: GemmParams): void;

  /** out[i] = f(x[i]); `param` is the exponent for pow and the factor for scale. */
  unary(op: UnaryOp, x: FloatArray, out: FloatArray, param: number): void;
  /** dx[i] (+)= dy[i]·f'(x[i]); `y` is the forward output (used by exp, tanh, sigmoid, sqrt...). */
  unaryBackward(
    op: UnaryOp,
    x: FloatArray,
    y: FloatArray,
    dy: FloatArray,
    dx: FloatArray,
    param: number,
    accumulate: boolean,
  ): void;

  /** out = a ∘ b with NumPy broadcasting; shapes have equal rank (core pads them). eq writes 1/0. */
  binary(
    op: BinaryOp,
    a: FloatArray,
    aShape: readonly number[],
    b: FloatArray,
    bShape: readonly number[],
    out: FloatArray,
    outShape: readonly number[],
  ): void;

  /** Reduce x over `axes` (sorted, unique); out has the shape of x with those axes set to 1. */
  reduce(
    op: ReduceOp,
    x: FloatArray,
    shape: readonly number[],
    axes: readonly number[],
    out: FloatArray,
  ): void;

  /** out = x expanded from xShape to outShape (equal rank, xShape dims 1 or equal). */
  broadcastTo(x: FloatArray, xShape: readonly number[], out: FloatArray, outShape: readonly number[]): void;

  /** out = permute(x, perm): out.shape[i] = shape[perm[i]]. */
  permute(x: FloatArray, shape: readonly number[], perm: readonly number[], out: FloatArray): void;

  /**
   * Copy a slab along one axis. x is viewed as (outer, srcAxis, inner) and out as
   * (outer, dstAxis, inner); rows [srcStart, srcStart+len) of x go to rows
   * [dstStart, dstStart+len) of out, added when `accumulate`. Slice, concat and their
   * backwards are all this one kernel.
   */
  copyAxis(
    x: FloatArray,
    outer: number,
    srcAxis: number,
    inner: number,
    srcStart: number,
    out: FloatArray,
    dstAxis: number,
    dstStart: number,
    len: number,
    accumulate: boolean,
  ): void;

  /** out[i,:] = table[idx[i],:]; table (V,C), idx (N), out (N,C). Indices are checked by core. */
  gather(table: FloatArray, idx: Int32Array, C: number, out: FloatArray): void;
  /** dTable[idx[i],:] += dOut[i,:] (repeated indices add up). */
  scatterAdd(dOut: FloatArray, idx: Int32Array, C: number, dTable: FloatArray): void;

  /** out[i] = cond[i] ? a[i] : b[i]; all the same length. */
  where(cond: Uint8Array, a: FloatArray, b: FloatArray, out: FloatArray): void;

  /**
   * Inverted dropout with a counter-based RNG: element i is kept when
   * uniform(seed, offset + i) ≥ p, and scaled by 1/(1-p). Calling it again with the
   * same seed and offset on dy is its backward. The uniform function is
   * `dropoutUniform` below and every backend must produce the same masks.
   */
  dropout(x: FloatArray, out: FloatArray, p: number, seed: number, offset: number): void;

  /** Row-wise softmax over the last axis: x (N,C). */
  softmax(x: FloatArray, N: number, C: number, out: FloatArray): void;
  /** dx = y ⊙ (dy − Σ dy⊙y). */
  softmaxBackward(
    y: FloatArray,
    dy: FloatArray,
    N: number,
    C: number,
    dx: FloatArray,
    accumulate: boolean,
  ): void;
  logSoftmax(x: FloatArray, N: number, C: number, out: FloatArray): void;
  /** dx = dy − exp(y)·Σ dy. */
  logSoftmaxBackward(
    y: FloatArray,
    dy: FloatArray,
    N: number,
    C: number,
    dx: FloatArray,
    accumulate: boolean,
  ): void;

  /**
   * Cross-entropy per row from logits (N,V) and integer targets; rows whose target equals
   * ignoreIndex get loss 0. Writes loss (N) and the log-sum-exp of each row (N) for backward.
   */
  crossEntropy(
    logits: FloatArray,
    targets: Int32Array,
    N: number,
    V: number,
    ignoreIndex: number,
    loss: FloatArray,
    lse: FloatArray,
  ): void;
  /** dlogits[i,:] (+)= gradScale[i]·(softmax(logits[i]) − onehot(target[i])); 0 for ignored rows. */
  crossEntropyBackward(
    logits: FloatArray,
    targets: Int32Array,
    lse: FloatArray,
    gradScale: FloatArray,
    N: number,
    V: number,
    ignoreIndex: number,
    dlogits: FloatArray,
    accumulate: boolean,
  ): void;

  /** HF LlamaRMSNorm: y = x·rsqrt(mean(x²)+eps)·w; x (N,C), w (C); writes rstd (N). */
  rmsNorm(
    x: FloatArray,
    w: FloatArray,
    N: number,
    C: number,
    eps: number,
    y: FloatArray,
    rstd: FloatArray,
  ): void;
  /** dx written (or added), dw added into (dw may be null when w is frozen). */
  rmsNormBackward(
    x: FloatArray,
    w: FloatArray,
    rstd: FloatArray,
    dy: FloatArray,
    N: number,
    C: number,
    dx: FloatArray | null,
    dw: FloatArray | null,
    accumulateDx: boolean,
  ): void;

  /**
   * Rotary embedding, HF rotate-half layout, on x (B,T,H,D) with tables cos, sin (T, D/2)
   * already holding the positions: out[..,i] = x_i·cos − x_{i+D/2}·sin and
   * out[..,i+D/2] = x_{i+D/2}·cos + x_i·sin. `inverse` rotates by −θ, which is the backward.
   */
  rope(
    x: FloatArray,
    cos: FloatArray,
    sin: FloatArray,
    B: number,
    T: number,
    H: number,
    D: number,
    inverse: boolean,
    out: FloatArray,
  ): void;

  /** Scaled-dot-product attention with GQA (H/Hkv queries share a kv head). out (B,T,H,D), lse (B,H,T). */
  attention(p: AttentionParams, out: FloatArray, lse: FloatArray): void;
  /**
   * Optional: `attention` for every sequence of a continuous batch in one call (bit for bit
   * the per-sequence calls); a backend without it gets those calls instead.
   */
  attentionRows?(p: AttentionRowsParams, out: FloatArray): void;
  /** Writes dq (B,T,H,D) and adds into dk, dv (B,kvCapacity,Hkv,D); any may be null when not needed. */
  attentionBackward(
    p: AttentionParams,
    out: FloatArray,
    lse: FloatArray,
    dout: FloatArray,
    dq: FloatArray | null,
    dk: FloatArray | null,
    dv: FloatArray | null,
  ): void;

  /** out = silu(gate)·up. */
  siluMul(gate: FloatArray, up: FloatArray, out: FloatArray): void;
  /** dgate, dup written (or added); either may be null. */
  siluMulBackward(
    gate: FloatArray,
    up: FloatArray,
    dy: FloatArray,
    dgate: FloatArray | null,
    dup: FloatArray | null,
    accumulate: boolean,
  ): void;

  /** y += alpha·x. */
  axpy(alpha: number, x: FloatArray, y: FloatArray): void;
  /** out[i] = value. */
  fill(out: FloatArray, value: number): void;

  /** One PyTorch AdamW step in place (decoupled decay, bias correction, eps outside the sqrt). */
  adamw(p: AdamWParams): void;

  /** y[rows of group g] += LoRA product of adapter g, for every group (see LoraGroupedParams). */
  loraGrouped(p: LoraGroupedParams): void;
  /** Optional: A and B prepared for loraGrouped with slots, or null where this backend cannot. */
  prepareLora?(A: readonly FloatArray[], B: readonly FloatArray[]): PreparedLora | null;

  /** The fused NF4 GEMM: W is dequantised panel by panel, the float W never exists whole. */
  nf4Gemm(p: Nf4GemmParams): void;
  /**
   * Optional: w in this backend's packed NF4 layout, or null where it has none for this CPU or
   * this shape. `nf4GemmPacked` on it must give, bit for bit, what `nf4Gemm` gives on w, for
   * any number of rows.
   */
  nf4Pack?(w: Nf4Weight): PackedNf4 | null;
  /** Optional, with nf4Pack: nf4Gemm on a weight this backend packed. */
  nf4GemmPacked?(p: PackedNf4GemmParams): void;
  /** Elements [start, start+count) of the flat NF4 weight into out[0..count) (f32, exact as bitsandbytes). */
  nf4Dequant(w: Nf4Weight, start: number, count: number, out: Float32Array): void;
  /**
   * A double-quantised absmax expanded: out[b] = f32(f32(code[q[b]]·nestedAbsmax[⌊b/nestedBlocksize⌋]) + offset),
   * as bitsandbytes' dequantize_blockwise + offset (an f32 value: the mean it subtracted).
   */
  nf4Scales(
    q: Uint8Array,
    code: Float32Array,
    nestedAbsmax: Float32Array,
    nestedBlocksize: number,
    offset: number,
    out: Float32Array,
  ): void;
}

/**
 * The counter-based uniform in [0,1) shared by every backend's dropout: a 32-bit
 * SplitMix/murmur-style finaliser of (seed, index). Deterministic, order-free, so a
 * threaded backend and the reference draw the same mask.
 */
export function dropoutUniform(seed: number, index: number): number {
  let h = (Math.imul(index ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(seed | 0, 0xc2b2ae35)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b) >>> 0;
  h ^= h >>> 16;
  return (h >>> 8) / 16777216;
}
