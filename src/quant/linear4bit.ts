// Linear4bit: a frozen linear layer whose weight is held only as bitsandbytes NF4 codes
// (+ absmax constants, double-quantised or not). forward x·Wᵀ(+b) is the backend's nf4Gemm,
// which dequantises W inside the GEMM: the native addon in its packing step, one KC×NR panel
// at a time (native/src/nf4_gemm.cc); the reference a few rows of W at a time into a scratch
// panel for its GEMM. The full float W never exists. Backward gives dx = dy·W (dequantised
// the same way) and never a dW.
import type { Nf4Weight } from "../core/backend.js";
import { backend } from "../core/engine.js";
import { DTypeError, fmtShape, ShapeError } from "../core/errors.js";
import type { T } from "../core/ops/util.js";
import { maybeRecord } from "../core/ops/util.js";
import type { Tensor } from "../core/tensor.js";
import { empty } from "../core/tensor.js";
import type { LinearLike } from "../nn/layers.js";
import { Module } from "../nn/module.js";
import type { Nf4Tensor } from "./nf4.js";
import { nf4Bytes, QuantError, quantizeNf4Tensor } from "./nf4.js";

/**
 * How Linear4bit computes on the active backend: "native" (the addon's fused kernel) or
 * "panel" (a few rows of W at a time dequantised into a scratch panel for a GEMM).
 */
export function nf4ComputePath(): "native" | "panel" {
  return backend().name === "native" ? "native" : "panel";
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
    backend().nf4Scales(n.q, n.code, n.absmax, n.blocksize, n.offset, out);
    return out;
  }

  /** Rows [r0, r1) of W, dequantised into out (length (r1−r0)·in). */
  dequantizeRows(r0: number, r1: number, out: Float32Array, scales = this.scales()): void {
    const C = this.inFeatures;
    backend().nf4Dequant(this.kernelWeight(scales), r0 * C, (r1 - r0) * C, out);
  }

  /** W as the backend's NF4 kernels take it, with the absmax already expanded. */
  private kernelWeight(scales: Float32Array): Nf4Weight {
    const q = this.q;
    return {
      packed: q.packed,
      scales,
      blocksize: q.blocksize,
      quantMap: q.quantMap,
      outFeatures: this.outFeatures,
      inFeatures: this.inFeatures,
    };
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
    backend().nf4Gemm({ backward: bwd, rows: N, a, w: this.kernelWeight(scales), c, beta: 0 });
  }
}
