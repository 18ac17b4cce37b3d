// Linear4bit: a frozen linear layer whose weight is held only as bitsandbytes NF4 codes
// (+ absmax constants, double-quantised or not). forward x·Wᵀ(+b) dequantises W inside the
// GEMM: with the native addon, its packing step dequantises one KC×NR panel at a time
// (native/src/nf4_gemm.cc); otherwise a few rows of W at a time go to a small scratch
// buffer and the backend GEMM runs on that panel. The full float W never exists.
// Backward gives dx = dy·W (dequantised the same way) and never a dW. Browser-safe: the
// native kernels are registered from node code (quant/node/native.ts).
import { backend } from "../core/engine.js";
import { DTypeError, fmtShape, ShapeError } from "../core/errors.js";
import type { T } from "../core/ops/util.js";
import { maybeRecord } from "../core/ops/util.js";
import type { Tensor } from "../core/tensor.js";
import { empty } from "../core/tensor.js";
import type { Nf4Addon } from "../kernels/native/nf4.js";
import type { LinearLike } from "../nn/layers.js";
import { Module } from "../nn/module.js";
import type { Nf4Tensor } from "./nf4.js";
import { dequantizeNestedAbsmax, dequantizeNf4Into, nf4Bytes, QuantError, quantizeNf4Tensor } from "./nf4.js";

/** The native NF4 kernels (the addon's nf4* functions); a type only, so this file stays browser-safe. */
export type Nf4Kernels = Nf4Addon;

let nativeKernels: Nf4Kernels | null = null;

/** Installs (or removes, with null) the native NF4 kernels; used while the backend is "native". */
export function registerNf4Kernels(k: Nf4Kernels | null): void {
  nativeKernels = k;
}

/** How Linear4bit computes: "native" (fused addon kernel) or "panel" (TypeScript panels + backend GEMM). */
export function nf4ComputePath(): "native" | "panel" {
  return nativeKernels && backend().name === "native" ? "native" : "panel";
}

/** Elements of W dequantised at once on the TypeScript path (1 MiB of f32). */
const PANEL_ELEMS = 1 << 18;
let scratchW = new Float32Array(0);
let scratchT = new Float32Array(0);
function scratch(which: "w" | "t", n: number): Float32Array {
  if (which === "w") {
    if (scratchW.length < n) scratchW = new Float32Array(n);
    return scratchW.subarray(0, n);
  }
  if (scratchT.length < n) scratchT = new Float32Array(n);
  return scratchT.subarray(0, n);
}

export const REQUANTIZE_WARNING =
  "merging into an NF4 (4-bit) base weight re-quantises it: the merged weight is rounded to NF4 again and loses precision";

export class Linear4bit extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** The quantised weight (bitsandbytes layout). */
  q: Nf4Tensor;
  bias: Tensor | null;

  constructor(q: Nf4Tensor, bias: Tensor | null = null) {
    super();
    if (q.shape.length !== 2)
      throw new ShapeError(`Linear4bit: weight shape ${fmtShape(q.shape)} must be 2-D`);
    [this.outFeatures, this.inFeatures] = q.shape;
    this.q = q;
    if (bias) bias.requiresGrad = false;
    this.bias = this.addParam("bias", bias);
  }

  /** Elements of the weight the packed codes encode (counted as parameters, as PEFT counts a Params4bit). */
  get quantizedNumel(): number {
    return this.outFeatures * this.inFeatures;
  }

  /** Quantises a float weight [out, in] (NF4, block 64, double quantisation by default). */
  static fromWeight(
    w: Tensor,
    bias: Tensor | null = null,
    opts: { blocksize?: number; doubleQuant?: boolean } = {},
  ): Linear4bit {
    if (w.rank !== 2) throw new ShapeError(`Linear4bit: weight ${fmtShape(w.shape)} must be 2-D`);
    const f = w.dtype === "f32" ? (w.data as Float32Array) : (w.to("f32").data as Float32Array);
    const dtype = w.dtype === "bf16" ? "bfloat16" : w.dtype === "f16" ? "float16" : "float32";
    return new Linear4bit(quantizeNf4Tensor(f, w.shape, { ...opts, dtype }), bias);
  }

  protected override onParamSet(name: string, t: Tensor | null): void {
    if (name === "bias") this.bias = t;
  }

  /** The float32 absmax per block (expanded from the double-quantised form; transient). */
  scales(): Float32Array {
    const q = this.q;
    if (q.absmax) return q.absmax;
    const n = q.nested;
    if (!n) throw new QuantError("Linear4bit: no absmax");
    const out = new Float32Array(n.q.length);
    if (nativeKernels) nativeKernels.nf4Scales(n.q, n.code, n.absmax, n.blocksize, n.offset, out);
    else dequantizeNestedAbsmax(n, out);
    return out;
  }

  /** Rows [r0, r1) of W, dequantised into out (length (r1−r0)·in). */
  dequantizeRows(r0: number, r1: number, out: Float32Array, scales = this.scales()): void {
    const C = this.inFeatures;
    const k = nativeKernels;
    if (k) k.nf4Dequant(this.q.packed, scales, this.q.blocksize, this.q.quantMap, r0 * C, (r1 - r0) * C, out);
    else
      dequantizeNf4Into(this.q.packed, scales, this.q.blocksize, r0 * C, (r1 - r0) * C, out, this.q.quantMap);
  }

  /** A fresh float32 copy of W (merging, export); not used by forward. */
  dequantizedWeight(): Tensor {
    const t = empty([this.outFeatures, this.inFeatures], "f32");
    this.dequantizeRows(0, this.outFeatures, t.data as Float32Array);
    return t;
  }

  /** Replaces W by a new float weight, re-quantised with the same settings. */
  requantize(w: Float32Array): void {
    this.q = quantizeNf4Tensor(w, this.q.shape, {
      blocksize: this.q.blocksize,
      doubleQuant: this.q.nested !== null,
      dtype: this.q.dtype,
    });
  }

  /** Bytes held by this layer's weight (codes + absmax constants + maps) and bias. */
  residentBytes(): number {
    return nf4Bytes(this.q) + (this.bias ? this.bias.size * 4 : 0);
  }

  /** x: (..., in) → (..., out). */
  forward(x: Tensor): Tensor {
    if (x.dtype !== "f32") throw new DTypeError(`Linear4bit: input must be f32, got ${x.dtype}`);
    const C = this.inFeatures;
    const O = this.outFeatures;
    if (x.rank < 1 || x.shape[x.rank - 1] !== C)
      throw new ShapeError(
        `Linear4bit: input ${fmtShape(x.shape)} has ${x.shape[x.rank - 1]} features, expected ${C}`,
      );
    const N = x.size / C;
    const out = empty([...x.shape.slice(0, -1), O], "f32") as T;
    const X = x.data as Float32Array;
    const Y = out.data as Float32Array;
    const scales = this.scales();
    this.gemm(false, N, X, Y, scales);
    const bias = this.bias;
    if (bias) {
      const bd = bias.data as Float32Array;
      for (let i = 0; i < N; i++) for (let j = 0; j < O; j++) Y[i * O + j] += bd[j];
    }
    const inputs = bias ? [x, bias] : [x];
    return maybeRecord(out, "linear4bit", inputs, (dy, needs) => {
      const dY = dy.data as Float32Array;
      let dx: T | null = null;
      let db: T | null = null;
      if (needs[0]) {
        dx = empty(x.shape, "f32") as T;
        this.gemm(true, N, dY, dx.data as Float32Array, this.scales());
      }
      if (bias && needs[1]) {
        db = empty([O], "f32") as T;
        backend().reduce("sum", dY, [N, O], [0], db.data as Float32Array);
      }
      return [dx, db];
    });
  }

  /** forward: c[N,O] = a[N,C]·Wᵀ; backward: c[N,C] = a[N,O]·W. */
  private gemm(bwd: boolean, N: number, a: Float32Array, c: Float32Array, scales: Float32Array): void {
    const C = this.inFeatures;
    const O = this.outFeatures;
    const k = nativeKernels;
    if (k && backend().name === "native") {
      k.nf4Gemm(bwd, N, C, O, a, this.q.packed, scales, this.q.blocksize, this.q.quantMap, c, 0);
      return;
    }
    const be = backend();
    const ob = Math.max(1, Math.min(O, Math.floor(PANEL_ELEMS / C)));
    if (!bwd) {
      // yᵀ[o0:o1, :] = W[o0:o1, :]·xᵀ, then one transpose.
      const yT = scratch("t", O * N);
      for (let o0 = 0; o0 < O; o0 += ob) {
        const o1 = Math.min(O, o0 + ob);
        const wp = scratch("w", (o1 - o0) * C);
        this.dequantizeRows(o0, o1, wp, scales);
        be.gemm({
          transA: false,
          transB: true,
          m: o1 - o0,
          n: N,
          k: C,
          batch: 1,
          a: wp,
          strideA: 0,
          b: a,
          strideB: 0,
          c: yT.subarray(o0 * N, o1 * N),
          strideC: 0,
          alpha: 1,
          beta: 0,
        });
      }
      be.permute(yT, [O, N], [1, 0], c);
      return;
    }
    // dx = Σ_panels dy[:, o0:o1]·W[o0:o1, :], with dyᵀ made contiguous once.
    const dyT = scratch("t", O * N);
    be.permute(a, [N, O], [1, 0], dyT);
    for (let o0 = 0; o0 < O; o0 += ob) {
      const o1 = Math.min(O, o0 + ob);
      const wp = scratch("w", (o1 - o0) * C);
      this.dequantizeRows(o0, o1, wp, scales);
      be.gemm({
        transA: true,
        transB: false,
        m: N,
        n: C,
        k: o1 - o0,
        batch: 1,
        a: dyT.subarray(o0 * N, o1 * N),
        strideA: 0,
        b: wp,
        strideB: 0,
        c,
        strideC: 0,
        alpha: 1,
        beta: o0 === 0 ? 0 : 1,
      });
    }
  }
}
