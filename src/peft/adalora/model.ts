// AdaLoraModel: PEFT's AdaLoraModel (peft/tuners/adalora/model.py) — a base model whose
// targeted linear layers are AdaLoraLinear, one trainable adapter with its RankAllocator,
// the orthogonal regulariser, PEFT's ADALORA state dict (resized by the rank pattern),
// and the conversion to a plain LoRA adapter of the final ranks.
import { noGrad } from "../../core/engine.js";
import { fmtShape } from "../../core/errors.js";
import type { LinearCrossEntropyOptions } from "../../core/ops/index.js";
import { add, matmul, scale, sqrt, square, sub, sum } from "../../core/ops/index.js";
import { Rng } from "../../core/rng.js";
import type { Tensor } from "../../core/tensor.js";
import { zeros } from "../../core/tensor.js";
import type { LinearLike } from "../../nn/layers.js";
import { isLinearLike } from "../../nn/layers.js";
import { Module } from "../../nn/module.js";
import type { LoraConfig } from "../config.js";
import { loraConfig } from "../config.js";
import { PeftError } from "../errors.js";
import { KEY_PREFIX } from "../format.js";
import type { AdapterInit, BaseModel } from "../model.js";
import { modelLoss } from "../model.js";
import { findTargets } from "../targets.js";
import type { Allocation } from "./allocator.js";
import { RankAllocator } from "./allocator.js";
import type { AdaLoraConfig, AdaLoraRankPattern } from "./config.js";
import { adaLoraConfig } from "./config.js";
import { AdaLoraLinear, takeCols, takeRows } from "./layer.js";

class BaseModelHolder extends Module {
  constructor(model: Module) {
    super();
    this.addModule("model", model);
  }
}

export interface AdaLoraInit {
  /** Seed for PEFT's N(0, 0.02) init of P and Q (default 0). */
  seed?: number;
}

/**
 * A base model with one AdaLoRA adapter. Train it with the Trainer's hooks:
 * `extraLoss: () => m.orthRegularization()` and
 * `afterOptimizerStep: (s) => m.updateAndAllocate(s)`.
 *
 * @example
 * const m = getAdaLoraModel(model, { initR: 12, targetR: 8, totalStep: 200, targetModules: ["q_proj", "v_proj"] });
 */
export class AdaLoraModel<M extends BaseModel = BaseModel> extends Module {
  readonly peftConfig = new Map<string, AdaLoraConfig>();
  readonly targetsOf = new Map<string, string[]>();
  /** The adapter the allocator trains (PEFT allows one). */
  trainableAdapterName: string | null = null;
  rankAllocator: RankAllocator | null = null;
  readonly rng = new Rng(0);

  constructor(readonly baseModel: M) {
    super();
    this.addModule("base_model", new BaseModelHolder(baseModel));
  }

  *adaLoraLayers(): IterableIterator<[string, AdaLoraLinear]> {
    for (const [path, m] of this.baseModel.namedModules()) if (m instanceof AdaLoraLinear) yield [path, m];
  }

  /** Adds an adapter of rank init_r on every target. Only one may be trainable (PEFT's rule). */
  addAdapter(name: string, config: Partial<AdaLoraConfig>, init: AdaLoraInit = {}): void {
    if (this.peftConfig.has(name)) throw new PeftError(`adapter "${name}" already exists`);
    const cfg = adaLoraConfig(config);
    if (!cfg.inferenceMode && this.trainableAdapterName !== null)
      throw new PeftError(
        "AdaLoraModel supports only 1 trainable adapter. When using multiple adapters, set inference_mode to True for all adapters except the one you want to train.",
      );
    const asLora = { ...cfg, rankPattern: {} } as LoraConfig;
    const paths = findTargets(asLora, this.baseModel, this.baseModel.config?.modelType);
    const rng = new Rng(init.seed ?? 0);
    for (const path of paths) {
      let m = this.baseModel.getSubmodule(path);
      if (!(m instanceof AdaLoraLinear)) {
        if (!isLinearLike(m)) throw new PeftError(`${path} is not a linear layer`);
        const wrapped = new AdaLoraLinear(m as LinearLike);
        wrapped.rng = this.rng;
        this.baseModel.setSubmodule(path, wrapped);
        m = wrapped;
      }
      (m as AdaLoraLinear).addAdapter(
        name,
        { r: cfg.initR, alpha: cfg.loraAlpha, dropout: cfg.loraDropout },
        rng,
      );
    }
    this.peftConfig.set(name, cfg);
    this.targetsOf.set(name, paths);
    for (const p of this.baseModel.parameters()) p.requiresGrad = false;
    for (const [, l] of this.adaLoraLayers())
      for (const n of l.lora_A.keys()) {
        const on = !this.peftConfig.get(n)!.inferenceMode;
        for (const d of [l.lora_A, l.lora_B, l.lora_E]) d.get(n)!.requiresGrad = on;
      }
    if (!cfg.inferenceMode) {
      this.trainableAdapterName = name;
      this.rankAllocator = new RankAllocator(() => this.adaLoraLayers(), cfg, name);
    }
  }

  forward(input: Tensor, opts?: unknown): Tensor {
    return this.baseModel.forward(input, opts);
  }

  /**
   * The next-token loss through the base model's fused `loss` when it has one (no full
   * logits), else cross-entropy of its logits. The orthogonal regulariser is not included
   * (the Trainer adds it through `extraLoss`).
   *
   * @example
   * const loss = add(m.loss(ids, labels), m.orthRegularization());
   */
  loss(ids: Tensor, targets: Tensor, opts: LinearCrossEntropyOptions = {}): Tensor {
    return modelLoss(this.baseModel, ids, targets, opts);
  }

  /**
   * PEFT's orthogonal regulariser (AdaLoraModel.forward): for each Q (lora_A) ‖Q·Qᵀ − I‖_F
   * and each P (lora_B) ‖Pᵀ·P − I‖_F, averaged over those matrices, times orth_reg_weight.
   * The Trainer adds it to the loss (`extraLoss`).
   */
  orthRegularization(): Tensor {
    const name = this.trainableAdapterName;
    if (name === null) throw new PeftError("orthRegularization: no trainable AdaLoRA adapter");
    const w = this.peftConfig.get(name)!.orthRegWeight;
    if (w <= 0) throw new PeftError("orth_reg_weight should be greater than 0. ");
    let total: Tensor | null = null;
    let count = 0;
    for (const [, l] of this.adaLoraLayers()) {
      if (!l.hasAdapter(name) || l.r.get(name) === 0) continue;
      const r = l.r.get(name)!;
      const eye = zeros([r, r]);
      for (let i = 0; i < r; i++) (eye.data as Float32Array)[i * r + i] = 1;
      const A = l.lora_A.get(name)!;
      const B = l.lora_B.get(name)!;
      for (const cov of [matmul(A, A, { transB: true }), matmul(B, B, { transA: true })]) {
        const fro = sqrt(sum(square(sub(cov, eye))));
        total = total ? add(total, fro) : fro;
        count++;
      }
    }
    if (!total) return zeros([]);
    return scale(total, w / count);
  }

  /**
   * PEFT's AdaLoraModel.update_and_allocate: call it every step after optimizer.step()
   * and before zero_grad(), with the 0-based step (PEFT's examples). Before
   * total_step − tfinal it updates importances and masks per the budget; at that step it
   * fixes the final rank pattern; after it, it re-applies that mask.
   */
  updateAndAllocate(globalStep: number): Allocation | null {
    const name = this.trainableAdapterName;
    if (name === null || !this.rankAllocator) return null;
    const cfg = this.peftConfig.get(name)!;
    const end = cfg.totalStep! - cfg.tfinal;
    return noGrad(() => {
      if (globalStep < end) {
        const a = this.rankAllocator!.updateAndAllocate(globalStep);
        if (a.rankPattern) cfg.rankPattern = a.rankPattern;
        return a;
      }
      if (globalStep === end) {
        const a = this.rankAllocator!.updateAndAllocate(globalStep, true);
        cfg.rankPattern = a.rankPattern;
        this.rankAllocator!.resetIpt();
        return a;
      }
      if (cfg.rankPattern) this.rankAllocator!.maskUsingRankPattern(cfg.rankPattern);
      return { budget: this.rankAllocator!.targetBgt, rankPattern: null };
    });
  }

  /** Kept triplet indices per module path (all of them before any allocation). */
  keptTriplets(name = this.trainableAdapterName ?? "default"): Map<string, number[]> {
    const rp = this.peftConfig.get(name)?.rankPattern ?? null;
    const out = new Map<string, number[]>();
    for (const [path, l] of this.adaLoraLayers()) {
      if (!l.hasAdapter(name)) continue;
      const mask = rp?.[`${path}.lora_E.${name}`] ?? rp?.[`${path}.lora_E`];
      const r = l.r.get(name)!;
      const idx: number[] = [];
      for (let i = 0; i < r; i++) if (!mask || mask[i]) idx.push(i);
      out.set(path, idx);
    }
    return out;
  }

  /** Final rank per module path (the kept triplets). */
  ranks(name = this.trainableAdapterName ?? "default"): Map<string, number> {
    return new Map([...this.keptTriplets(name)].map(([p, k]) => [p, k.length]));
  }

  /** Removes every adapter without merging and returns the base model. */
  unload(): M {
    for (const [path, l] of [...this.adaLoraLayers()]) this.baseModel.setSubmodule(path, l.base_layer);
    this.peftConfig.clear();
    this.targetsOf.clear();
    this.trainableAdapterName = null;
    this.rankAllocator = null;
    return this.baseModel;
  }

  /** Folds the adapter into the base weights and returns the base model (merge_and_unload). */
  mergeAndUnload(): M {
    for (const [, l] of this.adaLoraLayers()) l.merge();
    return this.unload();
  }
}

/** Wraps `model` with an AdaLoRA adapter, as PEFT's get_peft_model with an AdaLoraConfig. */
export function getAdaLoraModel<M extends BaseModel>(
  model: M,
  config: Partial<AdaLoraConfig>,
  adapterName = "default",
  init: AdaLoraInit = {},
): AdaLoraModel<M> {
  const m = new AdaLoraModel(model);
  m.addAdapter(adapterName, config, init);
  return m;
}

/** The rank pattern with adapter names removed from its keys, as PEFT saves it. */
export function savedRankPattern(rp: AdaLoraRankPattern | null, name: string): AdaLoraRankPattern | null {
  if (!rp) return null;
  const out: AdaLoraRankPattern = {};
  for (const [k, v] of Object.entries(rp)) out[k.replace(`.${name}`, "")] = [...v];
  return out;
}

/**
 * PEFT's get_peft_model_state_dict for ADALORA: keys base_model.model.<path>.lora_A / lora_B
 * / lora_E (ParameterDicts have no ".weight"), each resized to the kept triplets
 * (resize_state_dict_by_rank_pattern). ranknum is not saved (PEFT saves only "lora_" keys).
 */
export function adaLoraStateDict(m: AdaLoraModel, name = "default"): Map<string, Tensor> {
  if (!m.peftConfig.has(name)) throw new PeftError(`adapter "${name}" does not exist`);
  const kept = m.keptTriplets(name);
  const out = new Map<string, Tensor>();
  for (const [path, l] of m.adaLoraLayers()) {
    if (!l.hasAdapter(name)) continue;
    const keep = kept.get(path)!;
    const all = keep.length === l.r.get(name);
    const A = l.lora_A.get(name)!;
    const E = l.lora_E.get(name)!;
    const B = l.lora_B.get(name)!;
    out.set(`${KEY_PREFIX}${path}.lora_A`, all ? A : takeRows(A, keep));
    out.set(`${KEY_PREFIX}${path}.lora_E`, all ? E : takeRows(E, keep));
    out.set(`${KEY_PREFIX}${path}.lora_B`, all ? B : takeCols(B, keep));
  }
  return out;
}

/**
 * PEFT's set_peft_model_state_dict for ADALORA: a fresh adapter of rank init_r, then each
 * module resized to its rank-pattern rank (resize_modules_by_rank_pattern; ranknum stays
 * init_r so the scale is unchanged), then the tensors copied in.
 */
export function loadAdaLoraTensors(
  m: AdaLoraModel,
  name: string,
  config: AdaLoraConfig,
  tensors: ReadonlyMap<string, Tensor>,
  where = `adapter "${name}"`,
): void {
  m.addAdapter(name, config);
  const rp = config.rankPattern;
  for (const [path, l] of m.adaLoraLayers()) {
    if (!l.hasAdapter(name)) continue;
    const get = (k: string): Tensor => {
      const t = tensors.get(`${KEY_PREFIX}${path}.${k}`);
      if (!t) throw new PeftError(`${where}: missing tensor ${KEY_PREFIX}${path}.${k}`);
      return t.to("f32");
    };
    const mask = rp?.[`${path}.lora_E`] ?? rp?.[`${path}.lora_E.${name}`];
    const r = mask ? mask.filter(Boolean).length : config.initR;
    const A = get("lora_A");
    const E = get("lora_E");
    const B = get("lora_B");
    if (A.shape[0] !== r || A.shape[1] !== l.inFeatures || E.shape[0] !== r || B.shape[1] !== r)
      throw new PeftError(
        `${where}: ${path} has lora_A ${fmtShape(A.shape)}, lora_E ${fmtShape(E.shape)}, lora_B ${fmtShape(B.shape)} but the rank pattern gives r = ${r} (in ${l.inFeatures}, out ${l.outFeatures})`,
      );
    const trainable = !config.inferenceMode;
    l.deleteAdapter(name);
    l.addAdapter(
      name,
      { r, alpha: config.loraAlpha, dropout: config.loraDropout, A, E, B, ranknum: config.initR },
      m.rng,
    );
    for (const d of [l.lora_A, l.lora_B, l.lora_E]) d.get(name)!.requiresGrad = trainable;
  }
}

export interface LoraConversion {
  config: LoraConfig;
  /** For PeftModel.addAdapter / getPeftModel: A = (Q⊙Λ)[kept], B = P[:, kept]. */
  init: Required<Pick<AdapterInit, "initFor">>;
}

/**
 * The AdaLoRA adapter as a plain LoRA adapter of the final ranks: per module
 * A = (Q⊙Λ) rows kept, B = P columns kept, r = kept count, and alpha chosen so that
 * alpha/r = lora_alpha/(ranknum + 1e-5) — the same ΔW. Modules with no triplet left are
 * left out (LoRA has no r = 0). Apply it to the unloaded base model:
 *
 * @example
 * const { config, init } = adaLoraToLora(ada);
 * const peft = getPeftModel(ada.unload(), config, "default", init);
 */
export function adaLoraToLora(m: AdaLoraModel, name = m.trainableAdapterName ?? "default"): LoraConversion {
  const cfg = m.peftConfig.get(name);
  if (!cfg) throw new PeftError(`adapter "${name}" does not exist`);
  const kept = m.keptTriplets(name);
  const weights = new Map<string, { A: Tensor; B: Tensor }>();
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const [path, l] of m.adaLoraLayers()) {
    const keep = kept.get(path);
    if (!keep || keep.length === 0) continue;
    const A = l.lora_A.get(name)!.data as Float32Array;
    const E = l.lora_E.get(name)!.data as Float32Array;
    const n = l.inFeatures;
    const qe = zeros([keep.length, n]);
    const d = qe.data as Float32Array;
    keep.forEach((i, k) => {
      for (let j = 0; j < n; j++) d[k * n + j] = A[i * n + j] * E[i];
    });
    weights.set(path, { A: qe, B: takeCols(l.lora_B.get(name)!, keep) });
    rankPattern[path] = keep.length;
    alphaPattern[path] = keep.length * l.scale(name);
  }
  if (weights.size === 0) throw new PeftError("adaLoraToLora: every triplet was pruned; nothing to convert");
  const { targetR, initR, tinit, tfinal, deltaT, beta1, beta2, orthRegWeight, totalStep, ...lora } = cfg;
  void [targetR, initR, tinit, tfinal, deltaT, beta1, beta2, orthRegWeight, totalStep];
  const first = [...weights.keys()][0];
  const config = loraConfig({
    ...lora,
    r: rankPattern[first],
    loraAlpha: alphaPattern[first],
    targetModules: [...weights.keys()],
    rankPattern,
    alphaPattern,
    initLoraWeights: true,
  });
  return {
    config,
    init: {
      initFor: (path) => {
        const w = weights.get(path);
        return w ? { A: w.A, B: w.B } : null;
      },
    },
  };
}
