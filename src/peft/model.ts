// PeftModel: a base model with LoRA adapters injected by module path, and PEFT's API for
// several adapters: add, set, disable, delete, merge, unmerge, merge-and-unload, mixed batches.
import type { LinearCrossEntropyOptions } from "../core/ops/index.js";
import { crossEntropy, reshape } from "../core/ops/index.js";
import { Rng } from "../core/rng.js";
import type { Tensor } from "../core/tensor.js";
import type { KVCache } from "../models/llama/kv-cache.js";
import type { LinearLike } from "../nn/layers.js";
import { isLinearLike } from "../nn/layers.js";
import { Module } from "../nn/module.js";
import type { LoraConfig } from "./config.js";
import { loraConfig } from "./config.js";
import { countParameters } from "./count.js";
import { PeftError } from "./errors.js";
import { DoraVariant } from "./lora/dora.js";
import { initLora } from "./lora/init.js";
import { BASE_ROW, LoraLinear, loraScale } from "./lora/layer.js";
import { initPissa, parsePissaInit } from "./lora/pissa.js";
import { ModulesToSaveWrapper } from "./modules-to-save.js";
import { findTargets, rankAndAlpha } from "./targets.js";

/** What PeftModel needs from a base model: a module tree with a forward. */
export interface BaseModel extends Module {
  forward(input: Tensor, opts?: unknown): Tensor;
  /** The mean (or summed) next-token loss, when the model can compute it without full logits. */
  loss?(ids: Tensor, targets: Tensor, opts?: LinearCrossEntropyOptions): Tensor;
  /** One step of a continuous batch: token lists for sequences with their own KV caches (LlamaForCausalLM.step). */
  step?(tokens: readonly (readonly number[])[], caches: readonly KVCache[]): Tensor;
  /** HF model_type, used for the default target modules. */
  readonly config?: { modelType?: string };
  /** Where the model was loaded from (recorded as base_model_name_or_path). */
  readonly nameOrPath?: string | null;
}

export interface AdapterInit {
  /** Seed for the adapter's random initialisation (default 0). */
  seed?: number;
  /**
   * Supplies A and B for a module instead of the config's initialiser (GoRA, weighted
   * combinations and loaded adapters use this). When it is given, initialisers that change
   * the base weights (PiSSA) never run: a module it returns null for gets the config's
   * initialiser, or for PiSSA the default one (B = 0).
   */
  initFor?: (path: string, layer: LoraLinear, r: number) => { A: Tensor; B: Tensor } | null;
}

export interface ForwardOptions {
  /** One adapter name per batch row ("__base__" for none): a mixed-adapter batch. */
  adapterNames?: readonly string[];
  [k: string]: unknown;
}

export interface PeftLossOptions extends LinearCrossEntropyOptions {
  /** One adapter name per batch row ("__base__" for none), as in `forward`. */
  adapterNames?: readonly string[];
}

/**
 * A model's next-token loss: its own `loss` when it has one (the fused output layer), else
 * cross-entropy of its logits.
 */
export function modelLoss(
  model: Pick<BaseModel, "forward" | "loss">,
  ids: Tensor,
  targets: Tensor,
  opts: LinearCrossEntropyOptions = {},
): Tensor {
  if (model.loss) return model.loss(ids, targets, opts);
  const logits = model.forward(ids);
  const { chunkTokens: _, ...ce } = opts;
  const flat = targets.rank === 1 ? targets : targets.view([targets.size]);
  return crossEntropy(reshape(logits, [-1, logits.shape[logits.rank - 1]]), flat, ce);
}

export class PeftModel<M extends BaseModel = BaseModel> extends Module {
  /** Adapter configs by name. */
  readonly peftConfig = new Map<string, LoraConfig>();
  /** Modules wrapped per adapter (module paths relative to the base model). */
  readonly targetsOf = new Map<string, string[]>();
  private active: string[] = [];
  /** Dropout randomness; the trainer saves and restores its state. */
  readonly rng = new Rng(0);

  constructor(readonly baseModel: M) {
    super();
    // PEFT nests the model as base_model.model; saved keys carry that prefix.
    this.addModule("base_model", new BaseModelHolder(baseModel));
  }

  get activeAdapters(): readonly string[] {
    return this.active;
  }

  get activeAdapter(): string {
    return this.active[0];
  }

  /** Every LoRA layer with its path relative to the base model. */
  *loraLayers(): IterableIterator<[string, LoraLinear]> {
    for (const [path, m] of this.baseModel.namedModules()) if (m instanceof LoraLinear) yield [path, m];
  }

  /** Adds an adapter (not made active unless it is the first). */
  addAdapter(name: string, config: Partial<LoraConfig> | LoraConfig, init: AdapterInit = {}): void {
    if (!name || name === BASE_ROW || /[.\s/]/.test(name))
      throw new PeftError(
        `adapter name ${JSON.stringify(name)} is not allowed (no dots, slashes, spaces, or "${BASE_ROW}")`,
      );
    if (this.peftConfig.has(name))
      throw new PeftError(`adapter "${name}" already exists; delete it first or pick another name`);
    const cfg = loraConfig(config);
    if (cfg.useDora && cfg.loraBias)
      throw new PeftError(
        "The argument lora_bias=True is not supported for DoRA, please pass use_dora=False",
      );
    if (cfg.fanInFanOut) cfg.fanInFanOut = false;
    // PEFT: base_model_name_or_path is the model's name_or_path, as the caller loaded it.
    if (cfg.baseModelNameOrPath === null && typeof this.baseModel.nameOrPath === "string")
      cfg.baseModelNameOrPath = this.baseModel.nameOrPath; // lorakit's Linear stores (out, in), as nn.Linear (PEFT warns and does the same)
    const paths = findTargets(cfg, this.baseModel, this.baseModel.config?.modelType);
    try {
      this.injectAdapter(name, cfg, paths, init);
    } catch (e) {
      // All or nothing: a module that fails (a shape that does not fit) leaves no weights of
      // the earlier ones behind in a model that others share (the server's base model).
      this.removeAdapterFrom(name, paths);
      throw e;
    }
    this.peftConfig.set(name, cfg);
    this.targetsOf.set(name, paths);
    if (this.active.length === 0) this.setAdapter(name);
    else this.applyTrainable();
  }

  /** Wraps each target path and gives it adapter `name`'s factors, then its modules_to_save copies. */
  private injectAdapter(name: string, cfg: LoraConfig, paths: readonly string[], init: AdapterInit): void {
    const pissa = parsePissaInit(cfg.initLoraWeights);
    const rng = new Rng(init.seed ?? 0);
    for (const path of paths) {
      let m = this.baseModel.getSubmodule(path);
      if (!(m instanceof LoraLinear)) {
        if (!isLinearLike(m)) throw new PeftError(`${path} is not a linear layer`);
        const wrapped = new LoraLinear(m as LinearLike);
        wrapped.rng = this.rng;
        this.baseModel.setSubmodule(path, wrapped);
        m = wrapped;
      }
      const layer = m as LoraLinear;
      const { r, alpha } = rankAndAlpha(cfg, path);
      const given = init.initFor?.(path, layer, r) ?? null;
      const { A, B } =
        given ??
        (pissa && !init.initFor
          ? // PiSSA replaces the base weight by the residual (PEFT's pissa_init).
            initPissa(
              layer,
              r,
              loraScale(alpha, r, cfg.useRslora),
              cfg.initLoraWeights as string,
              rng.int(2 ** 31),
            )
          : initLora(
              pissa ? true : (cfg.initLoraWeights as boolean | string),
              r,
              layer.inFeatures,
              layer.outFeatures,
              rng,
            ));
      layer.addAdapter(name, {
        r,
        alpha,
        dropout: cfg.loraDropout,
        useRslora: cfg.useRslora,
        loraBias: cfg.loraBias,
        A,
        B,
        variant: cfg.useDora ? new DoraVariant() : undefined,
      });
    }
    this.addModulesToSave(name, cfg.modulesToSave ?? []);
  }

  /** Undoes a partial injectAdapter: adapter `name` leaves every layer, and emptied wrappers go. */
  private removeAdapterFrom(name: string, paths: readonly string[]): void {
    for (const path of paths) {
      const m = this.baseModel.getSubmodule(path);
      if (!(m instanceof LoraLinear)) continue;
      if (m.hasAdapter(name)) m.deleteAdapter(name);
      if (m.lora_A.size === 0) this.baseModel.setSubmodule(path, m.base_layer);
    }
    for (const [path, w] of [...this.savedModules()]) {
      if (!w.modules_to_save.delete(name)) continue;
      if (w.modules_to_save.size === 0) this.baseModel.setSubmodule(path, w.original_module);
    }
  }

  /** Every modules_to_save wrapper with its path relative to the base model. */
  *savedModules(): IterableIterator<[string, ModulesToSaveWrapper]> {
    for (const [path, m] of this.baseModel.namedModules())
      if (m instanceof ModulesToSaveWrapper) yield [path, m];
  }

  /**
   * PEFT's _set_trainable: every module whose name ends with one of `targets` gets a
   * trainable copy for this adapter (modules inside LoRA layers are never matched).
   */
  private addModulesToSave(adapter: string, targets: readonly string[]): void {
    if (targets.length === 0) return;
    const found: [string, Module][] = [];
    const skip: string[] = [];
    for (const [path, m] of this.baseModel.namedModules()) {
      if (!path || skip.some((p) => path.startsWith(`${p}.`))) continue;
      if (m instanceof LoraLinear || m instanceof ModulesToSaveWrapper) {
        skip.push(path);
        if (m instanceof ModulesToSaveWrapper && targets.some((t) => path.endsWith(t))) found.push([path, m]);
        continue;
      }
      if (targets.some((t) => path.endsWith(t))) {
        found.push([path, m]);
        skip.push(path);
      }
    }
    if (found.length === 0)
      throw new PeftError(`modules_to_save ${JSON.stringify(targets)} matches no module of the base model`);
    for (const [path, m] of found) {
      let w = m;
      if (!(w instanceof ModulesToSaveWrapper)) {
        w = new ModulesToSaveWrapper(m, path);
        this.baseModel.setSubmodule(path, w);
      }
      (w as ModulesToSaveWrapper).addCopy(adapter);
    }
  }

  /** Makes one adapter (or several, whose updates add up) active; only active adapters train. */
  setAdapter(names: string | readonly string[]): void {
    const list = typeof names === "string" ? [names] : [...names];
    for (const n of list)
      if (!this.peftConfig.has(n))
        throw new PeftError(
          `adapter "${n}" does not exist; available: ${[...this.peftConfig.keys()].join(", ") || "none"}`,
        );
    this.active = list;
    for (const [, l] of this.loraLayers()) l.activeAdapters = list.filter((n) => l.hasAdapter(n));
    this.applyTrainable();
  }

  /** Removes an adapter from every layer; layers left with none go back to plain linears. */
  deleteAdapter(name: string): void {
    if (!this.peftConfig.has(name)) throw new PeftError(`adapter "${name}" does not exist`);
    for (const [path, l] of [...this.loraLayers()]) {
      if (!l.hasAdapter(name)) continue;
      l.deleteAdapter(name);
      if (l.lora_A.size === 0) this.baseModel.setSubmodule(path, l.base_layer);
    }
    for (const [path, w] of [...this.savedModules()]) {
      w.modules_to_save.delete(name);
      if (w.modules_to_save.size === 0) this.baseModel.setSubmodule(path, w.original_module);
    }
    this.peftConfig.delete(name);
    this.targetsOf.delete(name);
    const rest = this.active.filter((n) => n !== name);
    const next = rest.length ? rest : [...this.peftConfig.keys()].slice(0, 1);
    this.active = [];
    if (next.length) this.setAdapter(next);
  }

  /** Runs fn with every adapter switched off (the base model), as PEFT's disable_adapter(). */
  withAdaptersDisabled<T>(fn: () => T): T {
    const layers: { disabled: boolean }[] = [...this.loraLayers()].map(([, l]) => l);
    for (const [, w] of this.savedModules()) layers.push(w);
    const prev = layers.map((l) => l.disabled);
    for (const l of layers) l.disabled = true;
    try {
      return fn();
    } finally {
      layers.forEach((l, i) => {
        l.disabled = prev[i];
      });
    }
  }

  /** Trainable: the active adapters' A and B (DoRA: and m; biases per `bias`); the base stays frozen. */
  private applyTrainable(): void {
    for (const p of this.baseModel.parameters()) p.requiresGrad = false;
    const active = new Set(this.active);
    for (const [, l] of this.loraLayers()) {
      for (const n of l.lora_A.keys()) {
        const on = active.has(n);
        l.lora_A.get(n)!.weight.requiresGrad = on;
        const b = l.lora_B.get(n)!;
        b.weight.requiresGrad = on;
        if (b.bias) b.bias.requiresGrad = on;
        for (const t of l.variants.get(n)?.parameters(l, n) ?? []) t.requiresGrad = on;
      }
    }
    for (const [, w] of this.savedModules()) {
      w.activeAdapter = this.active.find((n) => w.modules_to_save.has(n)) ?? null;
      for (const n of w.modules_to_save.keys())
        for (const p of w.modules_to_save.get(n)!.parameters()) p.requiresGrad = n === w.activeAdapter;
    }
    for (const n of this.active) {
      const cfg = this.peftConfig.get(n)!;
      if (cfg.bias === "none") continue;
      for (const [path, m] of this.baseModel.namedModules()) {
        if (m instanceof LoraLinear) continue;
        const bias = m.param("bias");
        if (!bias) continue;
        const parent = path.endsWith(".base_layer")
          ? this.baseModel.getSubmodule(path.slice(0, -".base_layer".length))
          : null;
        const isLoraBase = parent instanceof LoraLinear;
        if (cfg.bias === "all" || isLoraBase) bias.requiresGrad = true;
      }
    }
  }

  /** Forward through the base model; `adapterNames` gives each row of the batch its own adapter. */
  forward(input: Tensor, opts: ForwardOptions = {}): Tensor {
    const { adapterNames, ...rest } = opts;
    return this.withRowAdapters(adapterNames, () => this.baseModel.forward(input, rest));
  }

  /**
   * The next-token loss (mean cross-entropy unless `reduction: "sum"`; targets −100 ignored)
   * through the base model's fused `loss` when it has one, so the logits are never
   * materialised; `adapterNames` as in `forward`.
   *
   * @example
   * const loss = peft.loss(ids, labels);
   * backward(loss);
   */
  loss(ids: Tensor, targets: Tensor, opts: PeftLossOptions = {}): Tensor {
    const { adapterNames, ...rest } = opts;
    return this.withRowAdapters(adapterNames, () => modelLoss(this.baseModel, ids, targets, rest));
  }

  /**
   * One decode step for N sequences, each with its own KV cache and position, and with
   * `adapterNames` each with its own adapter: `step` with one token per sequence.
   *
   * @example
   * const logits = noGrad(() => peft.decode([tA, tB], [cacheA, cacheB], { adapterNames: ["a", "b"] }));
   */
  decode(
    tokens: readonly number[],
    caches: readonly KVCache[],
    opts: { adapterNames?: readonly string[] } = {},
  ): Tensor {
    return this.step(
      tokens.map((t) => [t]),
      caches,
      opts,
    );
  }

  /**
   * One step of a continuous batch (the base model's `step`): sequence n feeds `tokens[n]`
   * (a decode token or a prompt chunk) after what `caches[n]` holds, with adapter
   * `adapterNames[n]` (a mixed batch: every linear layer once for all tokens, the adapters by
   * the grouped kernel). Returns each sequence's last-token logits (N, 1, V). Inference only.
   */
  step(
    tokens: readonly (readonly number[])[],
    caches: readonly KVCache[],
    opts: { adapterNames?: readonly string[] } = {},
  ): Tensor {
    const step = this.baseModel.step;
    if (!step)
      throw new PeftError("the base model has no continuous-batch mode (a KV-cached LLaMA-family model has)");
    const names = opts.adapterNames;
    if (names && names.length !== tokens.length)
      throw new PeftError(`step: ${names.length} adapter names for ${tokens.length} sequences`);
    // The layers see one batch row per token: each token carries its sequence's adapter.
    const perToken = names && tokens.flatMap((ts, n) => ts.map(() => names[n]));
    return this.withRowAdapters(perToken, () => step.call(this.baseModel, tokens, caches));
  }

  /** Runs fn with each batch row routed to its adapter (a mixed batch), or as is without names. */
  private withRowAdapters<T>(adapterNames: readonly string[] | undefined, fn: () => T): T {
    if (!adapterNames) return fn();
    for (const n of adapterNames)
      if (n !== BASE_ROW && !this.peftConfig.has(n))
        throw new PeftError(`mixed batch: unknown adapter "${n}" (use "${BASE_ROW}" for the base model)`);
    const layers = [...this.loraLayers()].map(([, l]) => l);
    for (const l of layers) l.rowAdapters = adapterNames;
    try {
      return fn();
    } finally {
      for (const l of layers) l.rowAdapters = null;
    }
  }

  /**
   * Folds adapters (default: the active ones) into the base weights. `warn` hears about
   * lossy merges (into an NF4 base, which is re-quantised); warnings repeat per layer, so
   * callers usually report the first.
   */
  mergeAdapter(
    names: readonly string[] = this.active,
    opts: { safeMerge?: boolean; warn?: (msg: string) => void } = {},
  ): void {
    for (const [, l] of this.loraLayers()) l.merge(names, { safe: opts.safeMerge, warn: opts.warn });
  }

  unmergeAdapter(): void {
    for (const [, l] of this.loraLayers()) l.unmerge();
  }

  /**
   * Merges the active adapters and returns the base model with plain linear layers again
   * (every adapter removed), as PEFT's merge_and_unload().
   */
  mergeAndUnload(
    opts: { safeMerge?: boolean; adapterNames?: readonly string[]; warn?: (msg: string) => void } = {},
  ): M {
    this.mergeAdapter(opts.adapterNames ?? this.active, opts);
    return this.unload();
  }

  /** Removes every adapter without merging and returns the base model. */
  unload(): M {
    for (const [path, l] of [...this.loraLayers()]) this.baseModel.setSubmodule(path, l.base_layer);
    // As PEFT: a modules_to_save module becomes the active adapter's trained copy.
    for (const [path, w] of [...this.savedModules()]) this.baseModel.setSubmodule(path, w.current());
    this.peftConfig.clear();
    this.targetsOf.clear();
    this.active = [];
    return this.baseModel;
  }

  /** PEFT's get_nb_trainable_parameters. */
  countParameters(): { trainable: number; all: number } {
    return countParameters(this);
  }

  /** PEFT's exact line: `trainable params: 4,194,304 || all params: … || trainable%: 0.0622`. */
  trainableParametersLine(): string {
    const { trainable, all } = this.countParameters();
    const pct = all === 0 ? 0 : (100 * trainable) / all;
    return `trainable params: ${trainable.toLocaleString("en-US")} || all params: ${all.toLocaleString("en-US")} || trainable%: ${pct.toFixed(4)}`;
  }

  printTrainableParameters(print: (line: string) => void = console.log): void {
    print(this.trainableParametersLine());
  }
}

/** Holds the base model as child "model" so paths read base_model.model.… as in PEFT. */
class BaseModelHolder extends Module {
  constructor(model: Module) {
    super();
    this.addModule("model", model);
  }
}

/**
 * Wraps `model` with a LoRA adapter as PEFT's get_peft_model: the base is frozen, the
 * targeted linear layers get A and B, and only those train.
 *
 * @example
 * const peft = getPeftModel(model, { r: 16, loraAlpha: 32, targetModules: "all-linear" });
 * peft.printTrainableParameters();
 */
export function getPeftModel<M extends BaseModel>(
  model: M,
  config: Partial<LoraConfig> | LoraConfig,
  adapterName = "default",
  init: AdapterInit = {},
): PeftModel<M> {
  for (const [, m] of model.namedModules())
    if (m instanceof LoraLinear)
      throw new PeftError("the model already has LoRA layers; use PeftModel.addAdapter");
  const pm = new PeftModel(model);
  pm.addAdapter(adapterName, config, init);
  return pm;
}
