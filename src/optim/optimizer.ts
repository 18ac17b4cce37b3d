// The shared part of every optimizer, as torch.optim.Optimizer: parameter groups with
// their own hyperparameters, per-parameter state created lazily, zeroGrad, a state dict
// that maps parameters by their index in group order (so a checkpoint resumes exactly in
// a fresh process), and the per-group learning rate a scheduler sets.
import type { FloatArray, Tensor } from "../core/index.js";
import { LorakitError, zeroGrad } from "../core/index.js";

/** An optimizer got an invalid hyperparameter, parameter, gradient or state dict. */
export class OptimizerError extends LorakitError {}

/** What every resolved parameter group holds. */
export interface ParamGroupBase {
  params: Tensor[];
  lr: number;
  /** A label for error messages and logs (LoRA+ uses "groupA", "groupB", ...). */
  name?: string;
  /** The lr a scheduler multiplies (torch's `initial_lr`); set by LrScheduler. */
  initialLr?: number;
}

/** A hyperparameter value as stored in a state dict. */
export type GroupOptionValue = number | boolean | string | number[];

/** One parameter group in a state dict: its hyperparameters and its parameters' indices. */
export interface ParamGroupState {
  params: number[];
  [option: string]: GroupOptionValue | undefined;
}

/** Per-parameter state in a state dict: step counts as numbers, buffers as typed arrays. */
export type ParamStateDict = Record<string, number | FloatArray>;

/**
 * The serialised optimizer: plain JSON-able data plus typed arrays (copies, never views of
 * the live state). `state` is keyed by the parameter's index counted over all groups in
 * order, as torch's `Optimizer.state_dict()`.
 */
export interface OptimizerStateDict {
  state: Record<number, ParamStateDict>;
  paramGroups: ParamGroupState[];
}

/**
 * Normalises the first constructor argument: a list of tensors is one group; a list of
 * `{params, ...options}` is one group each; an empty list stays empty (and is rejected).
 */
export function toGroupSpecs<P extends { params: Tensor[] }>(
  kind: string,
  params: readonly Tensor[] | readonly P[],
): P[] {
  const list = params as readonly (Tensor | P)[];
  if (!Array.isArray(list))
    throw new OptimizerError(
      `${kind}: expected an array of tensors or of parameter groups, got ${typeof list}`,
    );
  const isGroup = (x: unknown): boolean =>
    typeof x === "object" && x !== null && "params" in x && Array.isArray((x as P).params);
  const groups = list.filter(isGroup).length;
  if (groups === list.length) return list.map((g) => ({ ...(g as P), params: [...(g as P).params] }));
  if (groups === 0) return [{ params: [...(list as Tensor[])] } as P];
  throw new OptimizerError(
    `${kind}: the parameter list mixes tensors and {params: [...]} groups; pass either tensors only or groups only`,
  );
}

/** A copy of `o` without the keys whose value is undefined (so they do not override defaults). */
export function stripUndefined<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) out[k] = v;
  return out as T;
}

/** Formats a group for error messages: `group 1 ("groupB")`. */
export function groupLabel(index: number, name?: string): string {
  return name === undefined ? `group ${index}` : `group ${index} ("${name}")`;
}

/** Checks a hyperparameter is a finite number ≥ 0. */
export function checkNonNegative(opt: string, what: string, value: unknown, where: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0)
    throw new OptimizerError(`${opt}: ${what} must be a finite number ≥ 0, got ${String(value)} (${where})`);
  return value;
}

/** The parameter's data as a float array, with a clear error for frozen or integer tensors. */
export function floatData(opt: string, p: Tensor, where: string): Float32Array | Float64Array {
  if (p.dtype !== "f32" && p.dtype !== "f64")
    throw new OptimizerError(
      `${opt}: parameter ${p.name ?? `#${p.id}`} in ${where} is ${p.dtype}; only f32/f64 tensors can be optimized (keep frozen or quantised weights out of the optimizer)`,
    );
  return p.data as Float32Array | Float64Array;
}

/** The gradient's data, checked against the parameter (same size, same float type). */
export function gradData(opt: string, p: Tensor, where: string): Float32Array | Float64Array {
  const g = p.grad as Tensor;
  const name = p.name ?? `#${p.id}`;
  if (g.size !== p.size)
    throw new OptimizerError(
      `${opt}: the gradient of ${name} in ${where} has ${g.size} elements but the parameter has ${p.size}`,
    );
  if (g.dtype !== p.dtype)
    throw new OptimizerError(
      `${opt}: the gradient of ${name} in ${where} is ${g.dtype} but the parameter is ${p.dtype}; convert one so they match`,
    );
  return g.data as Float32Array | Float64Array;
}

/** A zeroed array of the same kind and length as `like`. */
export function zerosLike(like: FloatArray): FloatArray {
  return like instanceof Float64Array ? new Float64Array(like.length) : new Float32Array(like.length);
}

/** A copy of `src` in the array type of `like` (state follows the parameter's dtype). */
export function copyAs(src: ArrayLike<number>, like: FloatArray): FloatArray {
  return like instanceof Float64Array ? Float64Array.from(src) : Float32Array.from(src);
}

/**
 * Base class: owns the groups and the state map. Subclasses resolve and validate group
 * options (`checkGroup`), run the update (`step`) and (de)serialise one parameter's state.
 */
export abstract class Optimizer<G extends ParamGroupBase, S extends object> {
  /** Resolved groups in order; change hyperparameters through them or `setLr`. */
  readonly paramGroups: G[];
  /** Per-parameter state, created on the parameter's first update. */
  readonly state = new Map<Tensor, S>();

  protected constructor(
    /** The class name, for messages. */
    protected readonly kind: string,
    groups: G[],
  ) {
    if (groups.length === 0)
      throw new OptimizerError(`${kind}: got an empty parameter list; pass the trainable tensors`);
    const seen = new Set<Tensor>();
    for (const [i, g] of groups.entries()) {
      this.checkGroup(g, groupLabel(i, g.name));
      for (const p of g.params) {
        if (seen.has(p))
          throw new OptimizerError(
            `${kind}: parameter ${p.name ?? `#${p.id}`} appears more than once (again in ${groupLabel(i, g.name)}); each parameter belongs to one group`,
          );
        seen.add(p);
        floatData(kind, p, groupLabel(i, g.name));
      }
    }
    this.paramGroups = groups;
  }

  /** Validates a group's hyperparameters (throws OptimizerError naming the group). */
  protected abstract checkGroup(group: G, where: string): void;
  /** One parameter's state as plain data (copies). */
  protected abstract saveParamState(state: S): ParamStateDict;
  /** Rebuilds one parameter's state from a state dict entry (copies, in the parameter's dtype). */
  protected abstract loadParamState(raw: ParamStateDict, param: Tensor, where: string): S;

  /** One update of every parameter that has a gradient. */
  abstract step(): void;

  /** Sets every parameter's gradient to null (disposing it). */
  zeroGrad(): void {
    for (const g of this.paramGroups) zeroGrad(g.params);
  }

  /** The learning rate of group `groupIndex`. */
  getLr(groupIndex = 0): number {
    return this.group(groupIndex).lr;
  }

  /** Sets the learning rate of group `groupIndex` (what a scheduler calls every step). */
  setLr(groupIndex: number, lr: number): void {
    const g = this.group(groupIndex);
    checkNonNegative(this.kind, "lr", lr, groupLabel(groupIndex, g.name));
    g.lr = lr;
  }

  private group(i: number): G {
    const g = this.paramGroups[i];
    if (!Number.isInteger(i) || g === undefined)
      throw new OptimizerError(
        `${this.kind}: there is no parameter group ${i}; it has ${this.paramGroups.length} (0..${this.paramGroups.length - 1})`,
      );
    return g;
  }

  /** Serialises groups and state (copies), mapping parameters to their index in group order. */
  stateDict(): OptimizerStateDict {
    const state: Record<number, ParamStateDict> = {};
    const paramGroups: ParamGroupState[] = [];
    let index = 0;
    for (const g of this.paramGroups) {
      const entry: ParamGroupState = { params: [] };
      for (const [k, v] of Object.entries(g)) {
        if (k === "params" || v === undefined) continue;
        entry[k] = Array.isArray(v) ? [...(v as number[])] : (v as GroupOptionValue);
      }
      for (const p of g.params) {
        entry.params.push(index);
        const s = this.state.get(p);
        if (s) state[index] = this.saveParamState(s);
        index++;
      }
      paramGroups.push(entry);
    }
    return { state, paramGroups };
  }

  /**
   * Restores hyperparameters and state saved by `stateDict()` of an optimizer built over
   * the same parameters in the same group order (shapes are checked).
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const k = this.kind;
    if (!sd || !Array.isArray(sd.paramGroups) || typeof sd.state !== "object" || sd.state === null)
      throw new OptimizerError(`${k}.loadStateDict: expected {state, paramGroups}, got ${typeof sd}`);
    if (sd.paramGroups.length !== this.paramGroups.length)
      throw new OptimizerError(
        `${k}.loadStateDict: the state dict has ${sd.paramGroups.length} parameter groups but this optimizer has ${this.paramGroups.length}; build the optimizer over the same groups as the one saved`,
      );
    const byIndex: Tensor[] = [];
    const newGroups: G[] = [];
    for (const [i, g] of this.paramGroups.entries()) {
      const saved = sd.paramGroups[i];
      if (saved.params.length !== g.params.length)
        throw new OptimizerError(
          `${k}.loadStateDict: ${groupLabel(i, g.name)} has ${g.params.length} parameters but the saved group has ${saved.params.length}`,
        );
      const merged = { ...g } as G;
      for (const [key, v] of Object.entries(saved)) {
        if (key === "params" || v === undefined) continue;
        (merged as Record<string, unknown>)[key] = Array.isArray(v) ? [...v] : v;
      }
      merged.params = g.params;
      this.checkGroup(merged, `saved ${groupLabel(i, g.name)}`);
      newGroups.push(merged);
      for (const [j, p] of g.params.entries()) byIndex[saved.params[j]] = p;
    }
    const newState = new Map<Tensor, S>();
    for (const [key, raw] of Object.entries(sd.state)) {
      const p = byIndex[Number(key)];
      if (p === undefined)
        throw new OptimizerError(
          `${k}.loadStateDict: state for parameter index ${key}, which no saved group lists`,
        );
      newState.set(p, this.loadParamState(raw, p, `parameter index ${key}`));
    }
    // Only now, when everything validated, update the live groups (in place, so references
    // held by a scheduler stay valid) and replace the state.
    for (const [i, g] of newGroups.entries()) Object.assign(this.paramGroups[i], g);
    this.state.clear();
    for (const [p, s] of newState) this.state.set(p, s);
  }
}

/** Reads a saved state buffer, checking its length against the parameter. */
export function loadBuffer(
  opt: string,
  raw: ParamStateDict,
  key: string,
  param: Tensor,
  where: string,
): FloatArray {
  const v = raw[key];
  if (!(v instanceof Float32Array || v instanceof Float64Array || Array.isArray(v)))
    throw new OptimizerError(`${opt}.loadStateDict: ${where} has no "${key}" buffer (Float32Array expected)`);
  if (v.length !== param.size)
    throw new OptimizerError(
      `${opt}.loadStateDict: "${key}" of ${where} has ${v.length} elements but the parameter ${param.name ?? `#${param.id}`} has ${param.size}; the state dict belongs to other parameters`,
    );
  return copyAs(v, param.data as FloatArray);
}
