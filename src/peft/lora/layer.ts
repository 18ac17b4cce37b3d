// LoraLinear: wraps any linear layer and adds, per adapter, (B·A·dropout(x))·scale.
// Children are named as PEFT's LoraLayer (base_layer, lora_A.<adapter>, lora_B.<adapter>),
// so parameter paths equal PEFT's state-dict keys with the adapter name inside.
// Variants (DoRA) plug in per adapter through the LoraVariant interface (variant.ts).
// A plain adapter runs as one fused op (core/ops/lora-linear.ts): loraLinear with the base
// GEMM when the base is a plain Linear, else loraDelta on the base layer's output. Either
// keeps y and the N×r product only, where linear/scale/linear/add kept 3·out + 2·r floats
// per token; values equal the composed ops to float rounding, dropout draws are unchanged.
import type { Backend, FloatArray, PreparedLora } from "../../core/backend.js";
import { backend, isGradEnabled, noGrad } from "../../core/engine.js";
import { fmtShape, ShapeError } from "../../core/errors.js";
import { arraysGeneration } from "../../core/memory.js";
import {
  add,
  dropout,
  embedding,
  gemmInto,
  linear,
  loraAdapterInto,
  loraDelta,
  loraLinear,
  reshape,
  scale as scaleOp,
} from "../../core/ops/index.js";
import { scatterRows } from "../../core/ops/indexing.js";
import type { Rng } from "../../core/rng.js";
import type { Tensor } from "../../core/tensor.js";
import { empty, tensor } from "../../core/tensor.js";
import type { BaseAndDelta, LinearLike } from "../../nn/layers.js";
import { Linear } from "../../nn/layers.js";
import { Module, ModuleDict, type ParamHolder } from "../../nn/module.js";
import { Linear4bit, REQUANTIZE_WARNING } from "../../quant/linear4bit.js";
import { PeftError } from "../errors.js";
import type { LoraVariant } from "./variant.js";

export interface LoraAdapterSpec {
  r: number;
  alpha: number;
  dropout: number;
  useRslora: boolean;
  /** lora_B carries a bias (PEFT's lora_bias). */
  loraBias: boolean;
  A: Tensor;
  B: Tensor;
  /** A LoRA variant for this adapter (e.g. DoRA); plain LoRA when absent. */
  variant?: LoraVariant;
}

/** The scale s in y = W·x + s·B·A·x: α/r, or α/√r with rsLoRA. */
export function loraScale(alpha: number, r: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(r) : alpha / r;
}

let fusedLora = true;

/**
 * Turns the fused LoRA ops of plain adapters on (the default) or off (the composed
 * linear/scale/linear/add path); returns the previous setting. For benchmarks and tests that
 * compare the two paths in one process.
 *
 * @example
 * const prev = setLoraFusion(false);
 * try { composedLoss = lossOf(model); } finally { setLoraFusion(prev); }
 */
export function setLoraFusion(on: boolean): boolean {
  const prev = fusedLora;
  fusedLora = on;
  return prev;
}

/** Row owner of a mixed batch that uses no adapter. */
export const BASE_ROW = "__base__";

export class LoraLinear extends Module implements LinearLike, BaseAndDelta {
  base_layer: LinearLike;
  readonly lora_A = new ModuleDict<Linear>();
  readonly lora_B = new ModuleDict<Linear>();
  /** DoRA magnitudes, one ParamHolder per DoRA adapter (`lora_magnitude_vector.<adapter>.weight`). */
  readonly lora_magnitude_vector = new ModuleDict<ParamHolder>();
  /** Adapters that use a LoRA variant (as scaling below: changed through add/deleteAdapter). */
  readonly variants = new Map<string, LoraVariant>();
  readonly inFeatures: number;
  readonly outFeatures: number;
  // Per adapter, set by addAdapter and cleared by deleteAdapter. Read them freely; a change
  // made any other way must be followed by arraysChanged() (core/memory.ts), or mixed batches
  // keep using the values their table copied (adapterTable).
  readonly scaling = new Map<string, number>();
  readonly r = new Map<string, number>();
  readonly loraAlpha = new Map<string, number>();
  readonly dropoutP = new Map<string, number>();
  /** Adapters that forward() applies (several add up). */
  activeAdapters: string[] = [];
  /** Adapters currently folded into the base weight. */
  readonly merged: string[] = [];
  /** When true, forward() is the base layer alone. */
  disabled = false;
  /** Per-row adapter names for a mixed batch; set by PeftModel around a forward. */
  rowAdapters: readonly string[] | null = null;
  /** Draws dropout masks (shared with the training run so a resume replays them). */
  rng: Rng | null = null;
  /** The grouped kernel's view of the adapters (adapterTable). */
  private table: AdapterTable | null = null;

  constructor(base: LinearLike) {
    super();
    this.base_layer = this.addModule("base_layer", base);
    this.addModule("lora_A", this.lora_A);
    this.addModule("lora_B", this.lora_B);
    this.addModule("lora_magnitude_vector", this.lora_magnitude_vector);
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
  }

  /** The wrapped layer's weight (f32 or frozen bf16), as stored. */
  get baseWeight(): Tensor {
    const w = this.base_layer.param("weight");
    if (!w) throw new PeftError("LoraLinear: the base layer has no weight");
    return w;
  }

  /**
   * The base weight's values in f32, for reading (the stored array when it is f32, else a
   * copy: converted, or unpacked while inference holds the weight packed, which stays so).
   */
  baseWeightValues(): Float32Array {
    const w = this.baseWeight;
    if (w.dtype === "f32") return w.readValues() as Float32Array;
    if (w.dtype === "bf16" || w.dtype === "f16" || w.dtype === "f64") return w.to("f32").data as Float32Array;
    throw new PeftError(
      `the base weight is ${w.dtype}; dequantise it first (DoRA and PiSSA need float weights)`,
    );
  }

  addAdapter(name: string, spec: LoraAdapterSpec): void {
    if (this.lora_A.has(name)) throw new PeftError(`adapter "${name}" already exists on this layer`);
    const { r, A, B } = spec;
    if (!Number.isInteger(r) || r <= 0)
      throw new PeftError(`\`r\` should be a positive integer value but the value passed is ${r}`);
    if (A.shape[0] !== r || A.shape[1] !== this.inFeatures)
      throw new ShapeError(
        `lora_A for adapter "${name}" must be [${r}, ${this.inFeatures}], got ${fmtShape(A.shape)}`,
      );
    if (B.shape[0] !== this.outFeatures || B.shape[1] !== r)
      throw new ShapeError(
        `lora_B for adapter "${name}" must be [${this.outFeatures}, ${r}], got ${fmtShape(B.shape)}`,
      );
    const a = new Linear(this.inFeatures, r, { weight: A });
    const b = new Linear(r, this.outFeatures, {
      weight: B,
      biasTensor: spec.loraBias ? empty([this.outFeatures], "f32").setRequiresGrad(false) : null,
    });
    if (spec.loraBias) b.bias?.data.fill(0);
    this.lora_A.set(name, a);
    this.lora_B.set(name, b);
    this.r.set(name, r);
    this.loraAlpha.set(name, spec.alpha);
    this.scaling.set(name, loraScale(spec.alpha, r, spec.useRslora));
    this.dropoutP.set(name, spec.dropout);
    if (spec.variant) {
      this.variants.set(name, spec.variant);
      try {
        spec.variant.init(this, name);
      } catch (e) {
        this.deleteAdapter(name);
        throw e;
      }
    }
  }

  deleteAdapter(name: string): void {
    if (this.merged.includes(name))
      throw new PeftError(`adapter "${name}" is merged into the base weights; unmerge it first`);
    this.lora_A.delete(name);
    this.lora_B.delete(name);
    this.variants.get(name)?.remove(this, name);
    this.variants.delete(name);
    for (const m of [this.r, this.loraAlpha, this.scaling, this.dropoutP]) m.delete(name);
    this.activeAdapters = this.activeAdapters.filter((a) => a !== name);
    this.table = null; // it holds the deleted adapter's arrays (and would be rebuilt anyway)
  }

  hasAdapter(name: string): boolean {
    return this.lora_A.has(name);
  }

  /** The adapter's contribution for input x: (B·A·dropout(x))·scale (+ lora_B bias·scale). */
  private delta(name: string, x: Tensor): Tensor {
    const A = this.lora_A.get(name)!;
    const B = this.lora_B.get(name)!;
    const s = this.scaling.get(name)!;
    const xin = this.dropoutInput(name, x) ?? x;
    // Scale the narrow (…, r) intermediate: r·N multiplies instead of out·N.
    const h = scaleOp(linear(xin, A.weight), s);
    if (!B.bias) return linear(h, B.weight);
    return linear(h, B.weight, scaleOp(B.bias, s));
  }

  /** dropout(x) with the adapter's rate when it is active (training, p > 0); null when it is the identity. */
  dropoutInput(name: string, x: Tensor): Tensor | null {
    const p = this.dropoutP.get(name) ?? 0;
    return p > 0 && this.training ? dropout(x, p, this.rngOrThrow()) : null;
  }

  /** The adapter's contribution to `result` (the output so far), by its variant or as plain LoRA. */
  private contribution(name: string, x: Tensor, result: Tensor): Tensor {
    const v = this.variants.get(name);
    return v ? v.forward(this, name, x, result) : this.delta(name, x);
  }

  private rngOrThrow(): Rng {
    if (!this.rng) throw new PeftError("LoraLinear: dropout in training needs an Rng (PeftModel sets one)");
    return this.rng;
  }

  /** x: (…, in) → (…, out). */
  forward(x: Tensor): Tensor {
    if (this.disabled) {
      if (this.merged.length) this.unmerge();
      return this.base_layer.forward(x);
    }
    if (this.rowAdapters) return this.mixedForward(x, this.base_layer.forward(x), this.rowAdapters);
    let y: Tensor | null = null;
    // True while y is the fresh output of an op whose backward does not read it (linear,
    // Linear4bit, the fused ops, add) and no other op has been given it: loraDelta may then
    // add into it in place. A variant (DoRA) keeps the y it is given, but only that one: the
    // add after it makes a new, unshared y.
    let own = false;
    for (const name of this.activeAdapters) {
      if (this.merged.includes(name) || !this.lora_A.has(name)) continue;
      const A = this.lora_A.get(name)!;
      const B = this.lora_B.get(name)!;
      if (!fusedLora || this.variants.has(name) || B.bias) {
        y ??= this.base_layer.forward(x);
        y = add(y, this.contribution(name, x, y));
        own = true;
        continue;
      }
      const s = this.scaling.get(name)!;
      // The base layer draws nothing, so drawing the mask first keeps the random stream.
      const xin = this.dropoutInput(name, x) ?? x;
      const base = this.base_layer;
      if (!y && isPlain(base, Linear)) {
        y = loraLinear(x, base.weight, base.bias, xin, A.weight, B.weight, s);
      } else {
        if (!y) {
          y = base.forward(x);
          own = isPlain(base, Linear4bit);
        }
        y = loraDelta(y, xin, A.weight, B.weight, s, { inPlace: own });
      }
      own = true;
    }
    return y ?? this.base_layer.forward(x);
  }

  /**
   * For a decode step that runs q/k/v's (gate/up's) base products in one call: forward() is
   * the plain base Linear's product plus `addDelta` when no graph is recorded and at most one
   * unmerged plain adapter is live without dropout (then forward() is loraLinear, whose
   * adapter arithmetic addDelta repeats call for call: the same bits). Null otherwise.
   */
  baseAndDelta(): { base: Linear; addDelta(x: Float32Array, y: Float32Array): void } | null {
    const base = this.base_layer;
    if (this.disabled || this.rowAdapters || !fusedLora || isGradEnabled() || !isPlain(base, Linear))
      return null;
    const live = this.activeAdapters.filter((n) => !this.merged.includes(n) && this.lora_A.has(n));
    if (live.length === 0) return { base, addDelta: () => {} };
    if (live.length > 1) return null;
    const name = live[0];
    const B = this.lora_B.get(name)!;
    if (this.variants.has(name) || B.bias || ((this.dropoutP.get(name) ?? 0) > 0 && this.training))
      return null;
    const A = this.lora_A.get(name)!.weight;
    const s = this.scaling.get(name)!;
    const h = new Float32Array(A.shape[0]);
    return { base, addDelta: (x, y) => loraAdapterInto(x, A, B.weight, s, h, y, 1) };
  }

  /**
   * forward() for a caller that never reads the output, only backpropagates through it (an
   * activation-checkpointing recompute): one plain adapter on a plain Linear skips the out-
   * sized products; anything else runs forward() as usual.
   */
  forwardGradOnly(x: Tensor): Tensor {
    const live = this.activeAdapters.filter((n) => !this.merged.includes(n) && this.lora_A.has(n));
    const base = this.base_layer;
    if (this.disabled || this.rowAdapters || !fusedLora || live.length !== 1 || !isPlain(base, Linear))
      return this.forward(x);
    const name = live[0];
    const B = this.lora_B.get(name)!;
    if (this.variants.has(name) || B.bias) return this.forward(x);
    const xin = this.dropoutInput(name, x) ?? x;
    const A = this.lora_A.get(name)!;
    return loraLinear(x, base.weight, base.bias, xin, A.weight, B.weight, this.scaling.get(name)!, {
      valueUnread: true,
    });
  }

  /**
   * A batch whose rows use different adapters: the base output is computed once, and each
   * adapter adds its product on its own rows only. Without a graph to record (inference,
   * serving) plain adapters are one call of the backend's grouped kernel (loraGrouped, the
   * SGMV of Punica / S-LoRA), adding into the fresh base output in place, with the fused op's
   * arithmetic so a row gets the same bits alone or in a batch. While recording, and for
   * variants (DoRA) or active dropout, each adapter's rows are gathered, run through the
   * adapter's ops and scattered back.
   */
  private mixedForward(x: Tensor, y: Tensor, rows: readonly string[]): Tensor {
    const Bn = x.shape[0];
    if (rows.length !== Bn)
      throw new ShapeError(`mixed batch: ${rows.length} adapter names for a batch of ${Bn} rows`);
    if (this.merged.length)
      throw new PeftError("mixed-adapter batches need unmerged adapters; unmerge first");
    const byAdapter = rowsByAdapter(rows);
    if (isGradEnabled()) {
      const adapted = new Map<string, number[]>();
      for (const [n, rs] of byAdapter) if (this.lora_A.has(n)) adapted.set(n, rs);
      return adapted.size ? this.gatheredForward(x, y, adapted) : y;
    }
    // Without a graph to record, plain adapters go to the grouped kernel through the layer's
    // table of adapters (one lookup per group, instead of a chain of objects per adapter each
    // call: a serving step calls this for every adapted layer with ~50 rows on ~50 adapters).
    const table = this.adapterTable();
    const slots: number[] = [];
    const lists: number[][] = [];
    let rest: Map<string, number[]> | null = null;
    for (const [n, rs] of byAdapter) {
      const slot = table.slotOf.get(n);
      if (slot === undefined) continue; // this layer is not adapted by that adapter
      if (table.plain[slot] && !(table.dropout[slot] && this.training)) {
        slots.push(slot);
        lists.push(rs);
      } else (rest ??= new Map()).set(n, rs);
    }
    if (slots.length) this.groupedInPlace(x, y, table, slots, lists);
    return rest ? this.gatheredForward(x, y, rest) : y;
  }

  /**
   * The layer's adapters as the grouped kernel takes them, by slot, and what the backend
   * prepared of their arrays; rebuilt when arraysGeneration() moves (an adapter added or
   * deleted, a parameter replaced, an array packed, unpacked or released: the A and B
   * tensors are watched) or the backend changes.
   */
  private adapterTable(): AdapterTable {
    const be = backend();
    const t = this.table;
    if (t && t.generation === arraysGeneration() && t.backend === be) return t;
    const names = this.lora_A.keys();
    const A: FloatArray[] = [];
    const B: FloatArray[] = [];
    const biases: (Tensor | null)[] = [];
    const slotOf = new Map<string, number>();
    const none = new Float32Array(0);
    for (const n of names) {
      const bl = this.lora_B.get(n)!;
      slotOf.set(n, A.length);
      biases.push(bl.bias);
      if (this.variants.has(n)) {
        // Never handed to the kernel (its rows take the gathered path): not read, not watched,
        // so the variant's own packing and unpacking of its factors leaves the table alone.
        A.push(none);
        B.push(none);
        continue;
      }
      A.push(tableArray(this.lora_A.get(n)!.weight));
      B.push(tableArray(bl.weight));
    }
    const table: AdapterTable = {
      generation: 0,
      backend: be,
      slotOf,
      A,
      B,
      ranks: Int32Array.from(names, (n) => this.r.get(n)!),
      scales: Float64Array.from(names, (n) => this.scaling.get(n)!),
      plain: names.map((n) => !this.variants.has(n)),
      dropout: names.map((n) => (this.dropoutP.get(n) ?? 0) > 0),
      biases,
      prepared: be.prepareLora?.(A, B) ?? null,
    };
    table.generation = arraysGeneration();
    this.table = table;
    return table;
  }

  /** y[rows of each group] += s·(x·Aᵀ)·Bᵀ (+ s·lora bias), in place, in one backend call. */
  private groupedInPlace(
    x: Tensor,
    y: Tensor,
    table: AdapterTable,
    slots: readonly number[],
    lists: readonly (readonly number[])[],
  ): void {
    const inF = this.inFeatures;
    const outF = this.outFeatures;
    const G = slots.length;
    // A batch row holds T token rows (prefill: (1, T, C)); the kernel works on token rows.
    const T = x.size / x.shape[0] / inF;
    const starts = new Int32Array(G + 1);
    for (let g = 0; g < G; g++) starts[g + 1] = starts[g] + lists[g].length * T;
    const tokenRows = new Int32Array(starts[G]);
    for (let g = 0; g < G; g++) {
      let o = starts[g];
      for (const b of lists[g]) for (let t = 0; t < T; t++) tokenRows[o++] = b * T + t;
    }
    const yd = floatArray(y);
    backend().loraGrouped({
      x: floatArray(x),
      y: yd,
      inFeatures: inF,
      outFeatures: outF,
      rows: tokenRows,
      starts,
      A: table.A,
      B: table.B,
      ranks: table.ranks,
      scales: table.scales,
      slots: Int32Array.from(slots),
      prepared: table.prepared,
    });
    for (let g = 0; g < G; g++) {
      const bias = table.biases[slots[g]];
      if (!bias) continue;
      const b = bias.data;
      const s = table.scales[slots[g]];
      for (let i = starts[g]; i < starts[g + 1]; i++) {
        const o = tokenRows[i] * outF;
        for (let c = 0; c < outF; c++) yd[o + c] += s * b[c];
      }
    }
  }

  /** The recorded (autograd) mixed batch: each adapter's rows gathered, run, scattered back. */
  private gatheredForward(x: Tensor, y: Tensor, groups: ReadonlyMap<string, number[]>): Tensor {
    const Bn = x.shape[0];
    const perRowIn = x.size / Bn;
    const perRowOut = y.size / Bn;
    const x2 = reshape(x, [Bn, perRowIn]);
    let out = y;
    let y2: Tensor | null = null;
    for (const [name, idx] of groups) {
      const ids = tensor(idx, [idx.length], "i32");
      const xs = reshape(embedding(x2, ids), [idx.length, ...x.shape.slice(1)]);
      // A variant sees its rows' base output (DoRA rescales it).
      const ys = this.variants.has(name)
        ? reshape(embedding((y2 ??= reshape(y, [Bn, perRowOut])), ids), [idx.length, ...y.shape.slice(1)])
        : y;
      const d = reshape(this.contribution(name, xs, ys), [idx.length, perRowOut]);
      out = add(out, reshape(scatterRows(d, ids, Bn), y.shape));
    }
    return out;
  }

  /** ΔW = scale·B·A (out, in) in f32. */
  deltaWeight(name: string): Float32Array {
    const A = this.lora_A.get(name)?.weight;
    const B = this.lora_B.get(name)?.weight;
    if (!A || !B) throw new PeftError(`no adapter "${name}" on this layer`);
    const out = new Float32Array(this.outFeatures * this.inFeatures);
    const r = this.r.get(name)!;
    // Read only: frozen factors that inference packed (DoRA's forward runs them through
    // linear) stay packed; DoRA asks for ΔW on every forward.
    gemmInto(
      B.readValues() as Float32Array,
      A.readValues() as Float32Array,
      out,
      this.outFeatures,
      this.inFeatures,
      r,
      {
        alpha: this.scaling.get(name)!,
      },
    );
    return out;
  }

  /**
   * Folds adapters into the base weight: W += scale·B·A (a variant merges its own way).
   * `safe` computes on a copy and refuses NaN/Inf as PEFT's safe_merge does. A bf16 base
   * weight becomes f32.
   */
  merge(
    names: readonly string[] = this.activeAdapters,
    opts: { safe?: boolean; warn?: (msg: string) => void } = {},
  ): void {
    noGrad(() => {
      for (const name of names) {
        if (this.merged.includes(name) || !this.lora_A.has(name)) continue;
        const w = this.f32BaseWeight();
        const target = opts.safe ? Float32Array.from(w.data as Float32Array) : (w.data as Float32Array);
        const variant = this.variants.get(name);
        if (variant) variant.merge(this, name, target);
        else backend().axpy(1, this.deltaWeight(name), target);
        if (opts.safe) {
          for (let i = 0; i < target.length; i++)
            if (!Number.isFinite(target[i]))
              throw new PeftError(
                `NaNs detected in the merged weights. The adapter ${name} seems to be broken`,
              );
          (w.data as Float32Array).set(target);
        }
        this.requantizeBase(w, opts.warn);
        const lb = this.lora_B.get(name)!.bias;
        if (lb) this.addToBaseBias(lb.data as Float32Array, this.scaling.get(name)!);
        this.merged.push(name);
      }
    });
  }

  /** Subtracts merged adapters again (the reverse order of merging). */
  unmerge(): void {
    noGrad(() => {
      while (this.merged.length) {
        const name = this.merged.pop()!;
        const w = this.f32BaseWeight();
        const variant = this.variants.get(name);
        if (variant) variant.unmerge(this, name, w.data as Float32Array);
        else backend().axpy(-1, this.deltaWeight(name), w.data as Float32Array);
        this.requantizeBase(w);
        const lb = this.lora_B.get(name)!.bias;
        if (lb) this.addToBaseBias(lb.data as Float32Array, -this.scaling.get(name)!);
      }
    });
  }

  private f32BaseWeight(): Tensor {
    // An NF4 base: a dequantised copy, re-quantised by requantizeBase after the update.
    if (this.base_layer instanceof Linear4bit) return this.base_layer.dequantizedWeight();
    const w = this.baseWeight;
    if (w.dtype === "f32") return w;
    if (w.dtype === "bf16" || w.dtype === "f16") {
      const f = w.to("f32");
      f.name = w.name;
      this.base_layer.setParam("weight", f);
      return f;
    }
    throw new PeftError(`cannot merge into a ${w.dtype} base weight; dequantise it first`);
  }

  /** Re-quantises an NF4 base after its dequantised weight `w` was updated (lossy: warns). */
  private requantizeBase(w: Tensor, warn?: (msg: string) => void): void {
    if (!(this.base_layer instanceof Linear4bit)) return;
    this.base_layer.requantize(w.data as Float32Array);
    warn?.(REQUANTIZE_WARNING);
  }

  private addToBaseBias(b: Float32Array, s: number): void {
    let bias = this.base_layer.param("bias");
    if (!bias) {
      bias = empty([this.outFeatures], "f32");
      bias.data.fill(0);
      this.base_layer.setParam("bias", bias);
    }
    backend().axpy(s, b, bias.data as Float32Array);
  }
}

/** A layer's adapters by slot, as LoraLinear.adapterTable builds them for loraGrouped. */
interface AdapterTable {
  /** arraysGeneration() when built. */
  generation: number;
  backend: Backend;
  slotOf: Map<string, number>;
  A: FloatArray[];
  B: FloatArray[];
  ranks: Int32Array;
  scales: Float64Array;
  /** No variant (DoRA): the grouped kernel computes the adapter. */
  plain: boolean[];
  /** Dropout p > 0 (in effect in training mode). */
  dropout: boolean[];
  biases: (Tensor | null)[];
  prepared: PreparedLora | null;
}

// Every adapted layer of one forward gets the same rowAdapters array: its rows are grouped
// by adapter once, by the first layer, and the grouping is reused while the array holds the
// same names (checked name by name: the caller may refill one array).
let groupedRows: readonly string[] | null = null;
let groupedNames: string[] = [];
let groupedByAdapter = new Map<string, number[]>();

/** Batch rows by adapter name (BASE_ROW left out), in order of first appearance. Read only. */
function rowsByAdapter(rows: readonly string[]): ReadonlyMap<string, number[]> {
  if (rows === groupedRows && rows.length === groupedNames.length) {
    let same = true;
    for (let i = 0; i < rows.length && same; i++) same = rows[i] === groupedNames[i];
    if (same) return groupedByAdapter;
  }
  const by = new Map<string, number[]>();
  for (let i = 0; i < rows.length; i++) {
    const n = rows[i];
    if (n === BASE_ROW) continue;
    const g = by.get(n);
    if (g !== undefined) g.push(i);
    else by.set(n, [i]);
  }
  groupedRows = rows;
  groupedNames = [...rows];
  groupedByAdapter = by;
  return by;
}

/**
 * An adapter factor's values for the table, its storage watched from now on: the tensor's
 * own array, or while it is packed (a single-adapter forward packs frozen factors) a copy, so
 * that reading it does not unpack it only for the next single-adapter forward to pack it again.
 * The copy holds the packed values until the storage unpacks, which moves arraysGeneration().
 */
function tableArray(t: Tensor): FloatArray {
  t.watchArray();
  if (t.packedWeight) {
    if (t.dtype !== "f32") throw new PeftError(`LoraLinear: expected a float tensor, got ${t.dtype}`);
    return t.readValues() as Float32Array;
  }
  return floatArray(t);
}

/** A float tensor's values as the backend takes them. */
function floatArray(t: Tensor): FloatArray {
  if (t.dtype !== "f32" && t.dtype !== "f64")
    throw new PeftError(`LoraLinear: expected a float tensor, got ${t.dtype}`);
  return t.data as FloatArray;
}

/** m is an instance of cls itself, not of a subclass (whose forward may differ). */
function isPlain<C extends object>(m: object, cls: abstract new (...args: never[]) => C): m is C {
  return Object.getPrototypeOf(m) === cls.prototype;
}
