// AdaLoraLinear: PEFT's SVDLinear (peft/tuners/adalora/layer.py). The update is in SVD form
// P·Λ·Q: lora_A = Q (r, in), lora_E = Λ (r, 1), lora_B = P (out, r), so
//   y = W·x + (B·(A⊙E)·dropout(x)) · α / (ranknum + 1e-5).
// Children are named as PEFT's ParameterDicts (lora_A.<adapter>, no ".weight"), so
// parameter paths equal PEFT's state-dict keys.
import { backend, noGrad } from "../../core/engine.js";
import { fmtShape, ShapeError } from "../../core/errors.js";
import { arraysChanged } from "../../core/memory.js";
import { add, dropout, linear, mul, scale as scaleOp } from "../../core/ops/index.js";
import type { Rng } from "../../core/rng.js";
import { randNormal } from "../../core/rng.js";
import type { Tensor } from "../../core/tensor.js";
import { empty, zeros } from "../../core/tensor.js";
import type { LinearLike } from "../../nn/layers.js";
import { Module } from "../../nn/module.js";
import { PeftError } from "../errors.js";

/** A name → tensor dict registered as parameters (torch.nn.ParameterDict). */
export class ParamDict extends Module {
  get(name: string): Tensor | undefined {
    return this.params.get(name) ?? undefined;
  }
  set(name: string, t: Tensor): void {
    this.params.set(name, null);
    this.addParam(name, t);
  }
  delete(name: string): void {
    this.params.delete(name);
    arraysChanged();
  }
  has(name: string): boolean {
    return this.params.has(name);
  }
  keys(): string[] {
    return [...this.params.keys()];
  }
}

export interface AdaLoraAdapterSpec {
  r: number;
  alpha: number;
  dropout: number;
  /** Q (r, in), Λ (r, 1), P (out, r); omitted = PEFT's init (Λ = 0, P, Q ~ N(0, 0.02²)). */
  A?: Tensor;
  E?: Tensor;
  B?: Tensor;
  /** The rank the scale divides by (PEFT keeps init_r through pruning and resizing). */
  ranknum?: number;
}

/**
 * PEFT's AdaLoraLayer.reset_lora_parameters: "nn.init.zeros_(lora_E); normal_(lora_A,
 * std=0.02); normal_(lora_B, std=0.02)" — Λ = 0 makes the start exactly the base model.
 */
export function initAdaLora(
  r: number,
  inFeatures: number,
  outFeatures: number,
  rng: Rng,
): { A: Tensor; E: Tensor; B: Tensor } {
  const A = randNormal(rng, [r, inFeatures], 0, 0.02);
  const B = randNormal(rng, [outFeatures, r], 0, 0.02);
  return { A, E: zeros([r, 1]), B };
}

export class AdaLoraLinear extends Module implements LinearLike {
  base_layer: LinearLike;
  readonly lora_A = new ParamDict();
  readonly lora_B = new ParamDict();
  readonly lora_E = new ParamDict();
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly r = new Map<string, number>();
  readonly loraAlpha = new Map<string, number>();
  /** PEFT's `scaling`: lora_alpha (or r when alpha ≤ 0); the update is divided by ranknum. */
  readonly scaling = new Map<string, number>();
  readonly ranknum = new Map<string, number>();
  readonly dropoutP = new Map<string, number>();
  activeAdapters: string[] = [];
  readonly merged: string[] = [];
  disabled = false;
  rng: Rng | null = null;

  constructor(base: LinearLike) {
    super();
    this.base_layer = this.addModule("base_layer", base);
    this.addModule("lora_A", this.lora_A);
    this.addModule("lora_B", this.lora_B);
    this.addModule("lora_E", this.lora_E);
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
  }

  /** Wraps `base` with one adapter (PEFT's SVDLinear(base, adapter_name, ...)). */
  static fromBase(base: LinearLike, name: string, spec: AdaLoraAdapterSpec, rng: Rng): AdaLoraLinear {
    const l = new AdaLoraLinear(base);
    l.addAdapter(name, spec, rng);
    return l;
  }

  /** PEFT's update_layer: r = 0 is allowed (a module whose triplets were all pruned). */
  addAdapter(name: string, spec: AdaLoraAdapterSpec, rng: Rng): void {
    const { r } = spec;
    if (!Number.isInteger(r) || r < 0)
      throw new PeftError(`\`r\` should be a positive integer or 0, but the value passed is ${r}`);
    const init = spec.A && spec.E && spec.B ? null : initAdaLora(r, this.inFeatures, this.outFeatures, rng);
    const A = spec.A ?? init!.A;
    const E = spec.E ?? init!.E;
    const B = spec.B ?? init!.B;
    const want: [string, Tensor, number[]][] = [
      ["lora_A", A, [r, this.inFeatures]],
      ["lora_E", E, [r, 1]],
      ["lora_B", B, [this.outFeatures, r]],
    ];
    for (const [n, t, s] of want)
      if (t.shape.length !== 2 || t.shape[0] !== s[0] || t.shape[1] !== s[1])
        throw new ShapeError(`${n} for adapter "${name}" must be ${fmtShape(s)}, got ${fmtShape(t.shape)}`);
    this.lora_A.set(name, A);
    this.lora_E.set(name, E);
    this.lora_B.set(name, B);
    this.r.set(name, r);
    this.loraAlpha.set(name, spec.alpha);
    this.scaling.set(name, spec.alpha > 0 ? spec.alpha : r);
    this.ranknum.set(name, spec.ranknum ?? r);
    this.dropoutP.set(name, spec.dropout);
    if (!this.activeAdapters.includes(name)) this.activeAdapters.push(name);
  }

  hasAdapter(name: string): boolean {
    return this.lora_A.has(name);
  }

  deleteAdapter(name: string): void {
    if (this.merged.includes(name)) throw new PeftError(`adapter "${name}" is merged; unmerge it first`);
    for (const d of [this.lora_A, this.lora_B, this.lora_E]) d.delete(name);
    for (const m of [this.r, this.loraAlpha, this.scaling, this.ranknum, this.dropoutP]) m.delete(name);
    this.activeAdapters = this.activeAdapters.filter((a) => a !== name);
  }

  /** The factor the update is multiplied by: scaling / (ranknum + 1e-5), as PEFT. */
  scale(name: string): number {
    return this.scaling.get(name)! / (this.ranknum.get(name)! + 1e-5);
  }

  /** x: (…, in) → (…, out). */
  forward(x: Tensor): Tensor {
    if (this.disabled) {
      if (this.merged.length) this.unmerge();
      return this.base_layer.forward(x);
    }
    let y = this.base_layer.forward(x);
    for (const name of this.activeAdapters) {
      if (this.merged.includes(name) || !this.hasAdapter(name) || this.r.get(name) === 0) continue;
      const p = this.dropoutP.get(name) ?? 0;
      const xin = p > 0 && this.training ? dropout(x, p, this.rngOrThrow()) : x;
      // (…, in)·(A⊙E)ᵀ → (…, r), scaled on the narrow side, then ·Bᵀ → (…, out)
      const qe = mul(this.lora_A.get(name)!, this.lora_E.get(name)!);
      const h = scaleOp(linear(xin, qe), this.scale(name));
      y = add(y, linear(h, this.lora_B.get(name)!));
    }
    return y;
  }

  private rngOrThrow(): Rng {
    if (!this.rng)
      throw new PeftError("AdaLoraLinear: dropout in training needs an Rng (AdaLoraModel sets one)");
    return this.rng;
  }

  /** ΔW = B·(A⊙E)·scaling/(ranknum + 1e-5), (out, in) f32 — PEFT's get_delta_weight. */
  deltaWeight(name: string): Float32Array {
    const A = this.lora_A.get(name)?.data as Float32Array | undefined;
    const E = this.lora_E.get(name)?.data as Float32Array | undefined;
    const B = this.lora_B.get(name)?.data as Float32Array | undefined;
    if (!A || !E || !B) throw new PeftError(`no adapter "${name}" on this layer`);
    const r = this.r.get(name)!;
    const n = this.inFeatures;
    const qe = new Float32Array(r * n);
    for (let i = 0; i < r; i++) for (let j = 0; j < n; j++) qe[i * n + j] = A[i * n + j] * E[i];
    const out = new Float32Array(this.outFeatures * n);
    if (r === 0) return out;
    backend().gemm({
      transA: false,
      transB: false,
      m: this.outFeatures,
      n,
      k: r,
      batch: 1,
      a: B,
      strideA: 0,
      b: qe,
      strideB: 0,
      c: out,
      strideC: 0,
      alpha: this.scale(name),
      beta: 0,
    });
    return out;
  }

  /** Folds adapters into the base weight (f32). */
  merge(names: readonly string[] = this.activeAdapters): void {
    noGrad(() => {
      for (const name of names) {
        if (this.merged.includes(name) || !this.hasAdapter(name)) continue;
        backend().axpy(1, this.deltaWeight(name), this.f32BaseWeight().data as Float32Array);
        this.merged.push(name);
      }
    });
  }

  unmerge(): void {
    noGrad(() => {
      while (this.merged.length) {
        const name = this.merged.pop()!;
        backend().axpy(-1, this.deltaWeight(name), this.f32BaseWeight().data as Float32Array);
      }
    });
  }

  private f32BaseWeight(): Tensor {
    const w = this.base_layer.param("weight");
    if (!w) throw new PeftError("AdaLoraLinear: the base layer has no weight");
    if (w.dtype === "f32") return w;
    if (w.dtype === "bf16" || w.dtype === "f16") {
      const f = w.to("f32");
      f.name = w.name;
      this.base_layer.setParam("weight", f);
      return f;
    }
    throw new PeftError(`cannot merge into a ${w.dtype} base weight; dequantise it first`);
  }
}

/** An (r', …) copy of the rows `keep` of a row-major (r, cols) tensor. */
export function takeRows(t: Tensor, keep: readonly number[]): Tensor {
  const cols = t.shape[1];
  const out = empty([keep.length, cols], "f32");
  const src = t.data as Float32Array;
  const dst = out.data as Float32Array;
  keep.forEach((i, k) => {
    dst.set(src.subarray(i * cols, (i + 1) * cols), k * cols);
  });
  return out;
}

/** A (rows, r') copy of the columns `keep` of a row-major (rows, r) tensor. */
export function takeCols(t: Tensor, keep: readonly number[]): Tensor {
  const [rows, r] = t.shape;
  const out = empty([rows, keep.length], "f32");
  const src = t.data as Float32Array;
  const dst = out.data as Float32Array;
  for (let i = 0; i < rows; i++)
    for (let k = 0; k < keep.length; k++) dst[i * keep.length + k] = src[i * r + keep[k]];
  return out;
}
