// modules_to_save (PEFT's ModulesToSaveWrapper): a module trained in full per adapter. The
// original stays frozen as `original_module`; each adapter owns a copy under
// `modules_to_save.<adapter>`, and forward uses the active adapter's copy.
import { LorakitError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import { Embedding, Linear, RMSNorm } from "../nn/layers.js";
import { Module, ModuleDict } from "../nn/module.js";
import { PeftError } from "./errors.js";

function clone(t: Tensor | null): Tensor | null {
  if (!t) return null;
  const c = t.to(t.dtype === "f64" ? "f64" : "f32");
  c.name = t.name;
  return c;
}

/** A trainable f32 copy of a Linear, Embedding or RMSNorm. */
export function copyModule(m: Module, path: string): Module {
  if (m instanceof Linear)
    return new Linear(m.inFeatures, m.outFeatures, { weight: clone(m.weight)!, biasTensor: clone(m.bias) });
  if (m instanceof Embedding)
    return new Embedding(m.numEmbeddings, m.embeddingDim, { weight: clone(m.weight)! });
  if (m instanceof RMSNorm) return new RMSNorm(m.dim, m.eps, { weight: clone(m.weight)! });
  throw new PeftError(
    `modules_to_save: ${path} is a ${m.constructor.name}; lorakit can train copies of Linear, Embedding and RMSNorm modules`,
  );
}

type Forwardable = Module & { forward(x: Tensor): Tensor };

export class ModulesToSaveWrapper extends Module {
  readonly original_module: Forwardable;
  readonly modules_to_save = new ModuleDict<Forwardable>();
  /** The adapter whose copy forward() uses (null: the original). */
  activeAdapter: string | null = null;
  disabled = false;
  readonly inFeatures?: number;
  readonly outFeatures?: number;

  constructor(
    original: Module,
    readonly path: string,
  ) {
    super();
    if (typeof (original as Forwardable).forward !== "function")
      throw new LorakitError(`modules_to_save: ${path} has no forward()`);
    this.original_module = this.addModule("original_module", original as Forwardable);
    this.addModule("modules_to_save", this.modules_to_save);
    // Keep the linear-layer shape visible (LoRA targeting skips wrappers, but callers may look).
    if (original instanceof Linear) {
      this.inFeatures = original.inFeatures;
      this.outFeatures = original.outFeatures;
    }
  }

  addCopy(adapter: string): Module {
    const c = copyModule(this.original_module, this.path) as Forwardable;
    this.modules_to_save.set(adapter, c);
    return c;
  }

  /** The module forward() uses now. */
  current(): Forwardable {
    if (this.disabled || this.activeAdapter === null) return this.original_module;
    return this.modules_to_save.get(this.activeAdapter) ?? this.original_module;
  }

  forward(x: Tensor): Tensor {
    return this.current().forward(x);
  }
}
