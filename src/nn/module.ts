// Module: a tree of named children and parameters, named exactly as Hugging Face names
// them (model.layers.0.self_attn.q_proj.weight), so checkpoint keys and PEFT's
// target_modules map by path with no lookup tables.
import { LorakitError } from "../core/errors.js";
import { arraysChanged, keep } from "../core/memory.js";
import type { Tensor } from "../core/tensor.js";

export class ModuleError extends LorakitError {}

export abstract class Module {
  /** Child modules in registration order. */
  protected readonly children = new Map<string, Module>();
  /** Own parameters and buffers in registration order (null = declared but absent, e.g. no bias). */
  protected readonly params = new Map<string, Tensor | null>();
  training = false;

  protected addModule<M extends Module>(name: string, m: M): M {
    this.children.set(name, m);
    arraysChanged();
    return m;
  }

  protected addParam<T extends Tensor | null>(name: string, t: T): T {
    // A parameter belongs to its module: no tidy scope may dispose it.
    if (t) keep(t);
    if (t) t.name ??= name;
    this.params.set(name, t);
    arraysChanged();
    return t;
  }

  /** The tensor registered under `name` on this module. */
  param(name: string): Tensor | null {
    return this.params.get(name) ?? null;
  }

  /** Replaces an own parameter (used by loaders and merges); shapes are the caller's concern. */
  setParam(name: string, t: Tensor | null): void {
    if (!this.params.has(name)) throw new ModuleError(`${this.constructor.name} has no parameter "${name}"`);
    if (t) keep(t);
    this.params.set(name, t);
    arraysChanged();
    this.onParamSet(name, t);
  }

  /** Hook for subclasses caching parameter references. */
  protected onParamSet(_name: string, _t: Tensor | null): void {}

  *namedChildren(): IterableIterator<[string, Module]> {
    yield* this.children.entries();
  }

  /** Every module of the tree with its dotted path ("" for this one), parents first. */
  *namedModules(prefix = ""): IterableIterator<[string, Module]> {
    yield [prefix, this];
    for (const [n, c] of this.children) yield* c.namedModules(prefix ? `${prefix}.${n}` : n);
  }

  /** Every parameter with its dotted path. A tensor shared by two paths (tied weights) is listed once. */
  *namedParameters(prefix = "", seen = new Set<Tensor>()): IterableIterator<[string, Tensor]> {
    for (const [n, t] of this.params)
      if (t && !seen.has(t)) {
        seen.add(t);
        yield [prefix ? `${prefix}.${n}` : n, t];
      }
    for (const [n, c] of this.children) yield* c.namedParameters(prefix ? `${prefix}.${n}` : n, seen);
  }

  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, t]) => t);
  }

  trainableParameters(): Tensor[] {
    return this.parameters().filter((t) => t.requiresGrad);
  }

  getSubmodule(path: string): Module {
    if (path === "") return this;
    let m: Module = this;
    for (const part of path.split(".")) {
      const c = m.children.get(part);
      if (!c) throw new ModuleError(`no submodule "${path}" (missing "${part}" under ${m.constructor.name})`);
      m = c;
    }
    return m;
  }

  /** Replaces the module at `path` (e.g. a Linear by a LoraLinear wrapping it). */
  setSubmodule(path: string, m: Module): void {
    const i = path.lastIndexOf(".");
    const parent = i < 0 ? this : this.getSubmodule(path.slice(0, i));
    const name = i < 0 ? path : path.slice(i + 1);
    if (!parent.children.has(name)) throw new ModuleError(`no submodule "${path}" to replace`);
    parent.children.set(name, m);
    arraysChanged();
    parent.onChildSet(name, m);
  }

  /** Hook for subclasses that keep typed references to children. */
  protected onChildSet(_name: string, _m: Module): void {}

  train(flag = true): this {
    for (const [, m] of this.namedModules()) m.training = flag;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Runs fn with every module in eval mode (dropout off), then restores each module's mode. */
  withEval<R>(fn: () => R): R {
    const mods = [...this.namedModules()].map(([, m]) => m);
    const prev = mods.map((m) => m.training);
    for (const m of mods) m.training = false;
    try {
      return fn();
    } finally {
      mods.forEach((m, i) => {
        m.training = prev[i];
      });
    }
  }

  /** Freezes (or unfreezes) every parameter. */
  requiresGrad(flag: boolean): this {
    for (const t of this.parameters()) if (t.dtype === "f32" || t.dtype === "f64") t.requiresGrad = flag;
    return this;
  }
}

/** Children named "0", "1", ... as torch.nn.ModuleList. */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[] = [];
  constructor(items: M[] = []) {
    super();
    for (const m of items) this.push(m);
  }
  push(m: M): void {
    this.addModule(String(this.items.length), m);
    this.items.push(m);
  }
  get length(): number {
    return this.items.length;
  }
  protected override onChildSet(name: string, m: Module): void {
    this.items[Number(name)] = m as M;
  }
}

/** Children keyed by name as torch.nn.ModuleDict (PEFT keys adapters this way: lora_A.default). */
export class ModuleDict<M extends Module = Module> extends Module {
  get(name: string): M | undefined {
    return this.children.get(name) as M | undefined;
  }
  set(name: string, m: M): void {
    this.addModule(name, m);
  }
  delete(name: string): boolean {
    arraysChanged();
    return this.children.delete(name);
  }
  has(name: string): boolean {
    return this.children.has(name);
  }
  keys(): string[] {
    return [...this.children.keys()];
  }
  get size(): number {
    return this.children.size;
  }
}

/** A module holding one named tensor (e.g. DoRA's magnitude vector `...lora_magnitude_vector.default.weight`). */
export class ParamHolder extends Module {
  constructor(t: Tensor) {
    super();
    this.addParam("weight", t);
  }
  get weight(): Tensor {
    return this.param("weight")!;
  }
}
