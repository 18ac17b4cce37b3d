// A linear layer's frozen weight as the B operand of y = x·Wᵀ: packed once into the backend's
// kernel layout (Backend.packWeight) on its first use without a graph being recorded, then read
// from there by every later product (Backend.gemmPacked), so decode streams W at memory
// bandwidth and no forward pass repacks it. Results are bit for bit those of the row-major
// GEMM, so packing is invisible to everything but the clock. Consumers that read the weight
// (merge, save, export, quantise, PiSSA, DoRA, training) go through Tensor.data, which
// unpacks it first: nobody but the backend ever sees the packed layout.
import type { FloatArray, PackedWeight } from "../backend.js";
import { backend, isGradEnabled, isProbingGrad, isWeightPackingEnabled } from "../engine.js";
import type { Tensor } from "../tensor.js";
import type { T } from "./util.js";
import { floatData } from "./util.js";

/** A weight as a GEMM's B operand, row-major: frozen bf16 weights go in as stored (the GEMM widens them). */
export function weightData(w: Tensor): Float32Array | Float64Array | Uint16Array {
  return w.dtype === "bf16" ? (w.data as Uint16Array) : floatData(w as T);
}

/**
 * The packed form of w for a product with f32 input X on the current backend: the one it
 * already has, or a new one when w is a frozen 2-D f32/bf16 weight used outside autograd
 * (inference). Null when the row-major weight must be used (then `weightData(w)` unpacks a
 * weight another backend packed).
 */
export function packedWeightFor(w: Tensor, X: FloatArray): PackedWeight | null {
  const be = backend();
  if (!(X instanceof Float32Array) || !be.gemmPacked || !be.packWeight) return null;
  const p = w.packedWeight;
  if (p) return p.backend === be.name ? p : null;
  // Inference only: not while a graph is recorded, nor in activation checkpointing's probe
  // forward (the training step's backward would unpack it again at once).
  if (!isWeightPackingEnabled() || isGradEnabled() || isProbingGrad() || w.requiresGrad || w.rank !== 2)
    return null;
  if (w.dtype !== "f32" && w.dtype !== "bf16") return null;
  const [rows, cols] = w.shape;
  const pack = be.packWeight.bind(be);
  return w.packWith((data) => pack(data as Float32Array | Uint16Array, rows, cols));
}

/**
 * Y (N×O) = X (N×C)·Wᵀ + beta·Y for a linear layer's weight w (O×C): through w's packed form
 * when it has or gets one, else the backend's row-major GEMM (same bits either way).
 */
export function weightProduct(w: Tensor, X: FloatArray, Y: FloatArray, N: number, beta: 0 | 1): void {
  const [O, C] = w.shape;
  const p = packedWeightFor(w, X);
  const be = backend();
  if (p && be.gemmPacked) {
    be.gemmPacked({ m: N, a: X as Float32Array, w: p, c: Y as Float32Array, alpha: 1, beta });
    return;
  }
  be.gemm({
    transA: false,
    transB: true,
    m: N,
    n: O,
    k: C,
    batch: 1,
    a: X,
    strideA: 0,
    b: weightData(w),
    strideB: 0,
    c: Y,
    strideC: 0,
    alpha: 1,
    beta,
  });
}

/**
 * Y_i (N×O_i) = X·W_iᵀ + betas[i]·Y_i for several weights of one input: in one backend call
 * (`gemmPackedShared`) when every weight is packed on a backend that has it, else
 * `weightProduct` for each. The same bits either way.
 */
export function weightProductsShared(
  ws: readonly Tensor[],
  X: FloatArray,
  Ys: readonly FloatArray[],
  N: number,
  betas: readonly (0 | 1)[],
): void {
  const be = backend();
  if (be.gemmPackedShared && ws.length > 1) {
    const packed = ws.map((w) => packedWeightFor(w, X));
    if (packed.every((p) => p !== null)) {
      be.gemmPackedShared(
        packed.map((p, i) => ({
          m: N,
          a: X as Float32Array,
          w: p as PackedWeight,
          c: Ys[i] as Float32Array,
          alpha: 1,
          beta: betas[i],
        })),
      );
      return;
    }
  }
  for (const [i, w] of ws.entries()) weightProduct(w, X, Ys[i], N, betas[i]);
}
