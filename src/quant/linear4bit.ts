// Linear4bit: a frozen linear layer whose weight is held only as bitsandbytes NF4 codes
// (+ absmax constants, double-quantised or not). forward x·Wᵀ(+b) is the backend's nf4Gemm,
// which dequantises W inside the GEMM: the native addon in its packing step, one KC×NR panel
// at a time (native/src/nf4_gemm.cc); the reference a few rows of W at a time into a scratch
// panel for its GEMM. The full float W never exists. Backward gives dx = dy·W (dequantised
// the same way) and never a dW.
//
// Where the backend has a packed NF4 layout (Backend.nf4Pack: the native addon on AVX2), the
// first inference product (no graph recorded) packs W into it once (codes reordered for the
// decode kernel, absmax expanded to f32) and every later product reads that instead; the
// bitsandbytes codes are dropped while it exists, so memory does not double, and reading `q`
// (save, export, merge) restores them byte for byte. The packed products give the same bits
// as the unpacked ones.
import type { Nf4Weight, PackedNf4 } from "../core/backend.js";
import { backend, isGradEnabled, isProbingGrad, isWeightPackingEnabled } from "../core/engine.js";
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
  /** The quantised weight; its codes are empty while `packed` holds them. */
  private state: Nf4Tensor;
  /** W in the backend's packed NF4 layout, once a product has packed it. */
  private packed: PackedNf4 | null = null;
  bias: Tensor | null;

  constructor(q: Nf4Tensor, bias: Tensor | null = null) {
    super();
    if (q.shape.length !== 2)
      throw new ShapeError(`Linear4bit: weight shape ${fmtShape(q.shape)} must be 2-D`);
    [this.outFeatures, this.inFeatures] = q.shape;
    this.state = q;
    if (bias) bias.requiresGrad = false;
    this.bias = this.addParam("bias", bias);
  }

  /** The quantised weight in the bitsandbytes layout (codes restored first if W is packed). */
  get q(): Nf4Tensor {
    this.unpackCodes();
    return this.state;
  }

  set q(q: Nf4Tensor) {
    this.packed = null;
    this.state = q;
  }

  /** Whether W is held in the backend's packed NF4 layout now (for tests and memory reports). */
  get isPacked(): boolean {
    return this.packed !== null;
  }

  private unpackCodes(): void {
    const p = this.packed;
    if (!p) return;
    const codes = new Uint8Array((this.outFeatures * this.inFeatures + 1) >> 1);
    p.unpackCodes(codes);
    this.state = { ...this.state, packed: codes };
    this.packed = null;
  }

  /**
   * The packed form for a product on the current backend: the one W has, or a new one when
   * weight packing is on and the backend packs this shape (then the codes are dropped). Null:
   * use the bitsandbytes codes (restored first if another backend packed them).
   */
  private packedForProduct(mayPack: boolean): PackedNf4 | null {
    const be = backend();
    if (this.packed) {
      if (this.packed.backend === be.name && be.nf4GemmPacked) return this.packed;
      this.unpackCodes();
      return null;
    }
    // Packed on an inference product, as frozen f32/bf16 weights are (core/ops/weight.ts): a
    // QLoRA training step keeps the bitsandbytes codes and its memory plan; once packed, W
    // serves training products too (the packed kernels compute dx as well).
    // (The input gradient runs inside backward's noGrad: it never packs.)
    if (
      !mayPack ||
      !be.nf4Pack ||
      !be.nf4GemmPacked ||
      !isWeightPackingEnabled() ||
      isGradEnabled() ||
      isProbingGrad()
    )
      return null;
    const p = be.nf4Pack(this.kernelWeight(this.scales()));
    if (!p) return null;
    this.packed = p;
    this.state = { ...this.state, packed: new Uint8Array(0) };
    return p;
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
    const q = this.state;
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
    const q = this.q; // the codes, restored if packed
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
    const q = this.state;
    this.q = quantizeNf4Tensor(w, q.shape, {
      blocksize: q.blocksize,
      doubleQuant: q.nested !== null,
      dtype: q.dtype,
    });
  }

  /** Bytes held by this layer's weight (codes or their packed form + absmax constants + maps) and bias. */
  residentBytes(): number {
    return nf4Bytes(this.state) + (this.packed?.byteLength ?? 0) + (this.bias ? this.bias.size * 4 : 0);
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
    this.gemm(false, N, X, Y);
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
        this.gemm(true, N, dY, dx.data as Float32Array);
      }
      if (bias && needs[1]) {
        db = empty([O], "f32") as T;
        backend().reduce("sum", dY, [N, O], [0], db.data as Float32Array);
      }
      return [dx, db];
    });
  }

  /** forward: c[N,O] = a[N,C]·Wᵀ; backward: c[N,C] = a[N,O]·W. */
  private gemm(bwd: boolean, N: number, a: Float32Array, c: Float32Array): void {
    const be = backend();
    const p = this.packedForProduct(!bwd);
    if (p && be.nf4GemmPacked) be.nf4GemmPacked({ backward: bwd, rows: N, a, w: p, c, beta: 0 });
    else be.nf4Gemm({ backward: bwd, rows: N, a, w: this.kernelWeight(this.scales()), c, beta: 0 });
  }
}
