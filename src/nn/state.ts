// Loading a module's parameters from a keyed tensor source (a safetensors checkpoint,
// a map), reporting missing and unexpected keys and refusing shape mismatches.
import type { DType } from "../core/dtype.js";
import { fmtShape, LorakitError, ShapeError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import type { Module } from "./module.js";

/** Anything that can hand out named tensors lazily. */
export interface TensorSource {
  names(): string[];
  has(name: string): boolean;
  shape(name: string): readonly number[];
  tensor(name: string, opts?: { dtype?: DType }): Tensor;
}

export class StateDictError extends LorakitError {
  constructor(
    message: string,
    readonly missing: readonly string[],
    readonly unexpected: readonly string[],
  ) {
    super(message);
  }
}

export interface LoadStateOptions {
  /** Fail when a parameter of the module has no tensor in the source (default true). */
  strict?: boolean;
  /** The dtype to store a parameter in (default: f32 for floats). */
  dtypeFor?: (path: string, sourceDType: Tensor["dtype"] | null) => DType;
  /** Source keys that are expected and skipped (e.g. rotary inv_freq buffers). */
  ignoreUnexpected?: (name: string) => boolean;
  /** Source keys that may be missing (e.g. a tied lm_head.weight). */
  ignoreMissing?: (path: string) => boolean;
}

export interface LoadReport {
  loaded: string[];
  missing: string[];
  unexpected: string[];
}

/** Module paths of every own parameter slot (including declared-null ones), in order. */
function* paramSlots(root: Module): IterableIterator<[string, Module, string, Tensor | null]> {
  const seen = new Set<Tensor>();
  for (const [path, m] of root.namedModules()) {
    for (const [name, t] of (m as unknown as { params: Map<string, Tensor | null> }).params) {
      if (t && seen.has(t)) continue;
      if (t) seen.add(t);
      yield [path ? `${path}.${name}` : name, m, name, t];
    }
  }
}

/**
 * Replaces each parameter of `root` by the source tensor of the same path.
 *
 * @example
 * const report = loadStateDict(model, checkpoint, { ignoreMissing: (k) => k === "lm_head.weight" });
 */
export function loadStateDict(root: Module, src: TensorSource, opts: LoadStateOptions = {}): LoadReport {
  const strict = opts.strict ?? true;
  const used = new Set<string>();
  const report: LoadReport = { loaded: [], missing: [], unexpected: [] };
  const replaced = new Map<Tensor, Tensor>();
  for (const [path, m, name, current] of paramSlots(root)) {
    if (!current) continue; // declared absent (no bias)
    if (!src.has(path)) {
      if (!opts.ignoreMissing?.(path)) report.missing.push(path);
      continue;
    }
    used.add(path);
    const shape = src.shape(path);
    if (shape.length !== current.shape.length || shape.some((d, i) => d !== current.shape[i]))
      throw new ShapeError(
        `loading ${path}: the checkpoint has shape ${fmtShape(shape)} but the model expects ${fmtShape(current.shape)} (does config.json match the weights?)`,
      );
    const dtype = opts.dtypeFor ? opts.dtypeFor(path, null) : current.dtype;
    const t = src.tensor(path, { dtype });
    t.name = path;
    t.requiresGrad = current.requiresGrad;
    m.setParam(name, t);
    replaced.set(current, t);
    report.loaded.push(path);
  }
  // A tensor shared by several slots (tied embeddings) was replaced in its first slot only:
  // point the other slots at the new tensor too, so the tie survives loading.
  if (replaced.size > 0)
    for (const [, m] of root.namedModules())
      for (const [name, t] of (m as unknown as { params: Map<string, Tensor | null> }).params) {
        const now = t ? replaced.get(t) : undefined;
        if (now) m.setParam(name, now);
      }
  for (const n of src.names()) if (!used.has(n) && !opts.ignoreUnexpected?.(n)) report.unexpected.push(n);
  if (strict && report.missing.length > 0)
    throw new StateDictError(
      `${report.missing.length} parameter(s) missing from the checkpoint: ${report.missing.slice(0, 8).join(", ")}${report.missing.length > 8 ? ", ..." : ""}`,
      report.missing,
      report.unexpected,
    );
  return report;
}
