// The Tensor: a shape, a dtype and a contiguous row-major storage, plus what autograd
// needs (requiresGrad, grad, the node that produced it).
import type { PackedWeight } from "./backend.js";
import type { AnyArray, DType, DTypeArrays, FloatDType } from "./dtype.js";
import { allocArray, convertArray, dtypeOfArray, isFloatDType } from "./dtype.js";
import { DisposedError, DTypeError, fmtShape, LorakitError, ShapeError } from "./errors.js";
import type { Disposable } from "./memory.js";
import { allocUninit, allocZeros, Storage, track } from "./memory.js";

/** How a tensor was made, for the backward pass: its inputs and the rule to push a gradient through. */
export interface GradNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /**
   * Given dL/d(output), return dL/d(input) for each input (null where `needs[i]` is
   * false: that work must not be done).
   */
  backward(dy: Tensor<FloatDType>, needs: readonly boolean[]): (Tensor<FloatDType> | null)[];
}

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: Shape): void {
  for (const d of shape)
    if (!Number.isInteger(d) || d < 0)
      throw new ShapeError(
        `invalid shape ${fmtShape(shape)}: every dimension must be a non-negative integer`,
      );
}

let nextId = 1;

export class Tensor<D extends DType = DType> implements Disposable {
  readonly id = nextId++;
  readonly shape: Shape;
  readonly dtype: D;
  readonly size: number;
  private requiresGradFlag = false;
  /** Accumulated gradient of a leaf; stays until `zeroGrad()`/`grad = null`. */
  grad: Tensor<FloatDType> | null = null;
  /** Set by ops when grad recording is on. */
  node: GradNode | null = null;
  /** Optional label used in error messages (e.g. a parameter path). */
  name?: string;
  private storage: Storage<D>;

  constructor(storage: Storage<D>, shape: Shape) {
    checkShape(shape);
    const n = numel(shape);
    if (storage.data && storage.data.length !== n)
      throw new ShapeError(
        `Tensor: shape ${fmtShape(shape)} needs ${n} elements but the data has ${storage.data.length}`,
      );
    this.storage = storage;
    this.dtype = storage.dtype;
    this.shape = Object.freeze([...shape]);
    this.size = n;
    storage.retain();
    track(this);
  }

  /** When true, backward() computes dL/d(this) (accumulated into `grad` for leaves). */
  get requiresGrad(): boolean {
    return this.requiresGradFlag;
  }
  set requiresGrad(flag: boolean) {
    // A trainable tensor is updated in place through `data`: never keep it packed.
    if (flag && !this.disposed) this.storage.unpack();
    this.requiresGradFlag = flag;
  }

  /**
   * The row-major values. A weight held packed by a backend (see `packedWeight`) is unpacked
   * for good first, bit for bit: whoever reads or writes `data` always sees the plain layout.
   */
  get data(): DTypeArrays[D] {
    if (this.storage.packed && !this.disposed) this.storage.unpack();
    const d = this.storage.data;
    if (this.storage.meta)
      throw new LorakitError(
        `tensor ${this.name ?? `#${this.id}`} ${fmtShape(this.shape)} ${this.dtype} has no data: it is a shape-only placeholder for a weight that was never loaded`,
      );
    if (d === null || this.disposed)
      throw new DisposedError(
        `tensor ${this.name ?? `#${this.id}`} ${fmtShape(this.shape)} was disposed (by dispose() or the tidy scope that made it); keep() it to use it later`,
      );
    return d;
  }

  /**
   * For code that keeps `data`'s array between calls: from now on, anything that replaces or
   * frees that array (packing, unpacking, the last release) moves arraysGeneration().
   */
  watchArray(): void {
    this.storage.watched = true;
  }

  /**
   * The values for reading only: `data`, or while the tensor is packed a fresh unpacked copy
   * that leaves it packed (a reader inside an inference loop, such as DoRA's weight norm, does
   * not undo the packing each step). Writes to the copy are lost: write through `data`.
   */
  readValues(): DTypeArrays[D] {
    const p = this.storage.packed;
    if (!p || this.disposed) return this.data;
    const out = allocArray(this.dtype, this.size);
    p.unpack(out as Float32Array | Uint16Array);
    return out;
  }

  /** The backend's packed form of this frozen weight, while it replaces the row-major data. */
  get packedWeight(): PackedWeight | null {
    return this.disposed ? null : this.storage.packed;
  }

  /**
   * Replaces this frozen weight's row-major storage by `make(data)`'s packed form (shared
   * with every view); returns it, or null (nothing changes) when make returns null.
   */
  packWith(make: (data: DTypeArrays[D]) => PackedWeight | null): PackedWeight | null {
    if (this.requiresGrad)
      throw new LorakitError(
        `tensor ${this.name ?? `#${this.id}`} requires grad: only frozen weights are packed`,
      );
    if (this.storage.packed) return this.storage.packed;
    const p = make(this.data);
    if (p) this.storage.pack(p);
    return p;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** True for a shape-only placeholder (see `meta()`): no memory behind it. */
  get isMeta(): boolean {
    return this.storage.meta;
  }

  private disposed = false;
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Returns the buffer to the pool once no view uses it. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.node = null;
    this.storage.release();
  }

  /** A tensor with another shape sharing this storage (same number of elements). */
  view(shape: Shape): Tensor<D> {
    if (numel(shape) !== this.size)
      throw new ShapeError(
        `view: cannot view ${fmtShape(this.shape)} (${this.size} elements) as ${fmtShape(shape)}`,
      );
    void this.data;
    return new Tensor(this.storage, shape);
  }

  /** Marks this tensor as a trainable leaf (or not). Returns this. */
  setRequiresGrad(flag = true): this {
    if (flag && !isFloatDType(this.dtype))
      throw new DTypeError(`requiresGrad needs a float tensor (f32/f64), got ${this.dtype}`);
    this.requiresGrad = flag;
    return this;
  }

  /** A copy converted to another dtype (no gradient flows through it). */
  to<E extends DType>(dtype: E): Tensor<E> {
    const src = this.readValues() as AnyArray;
    const out = convertArray(src, this.dtype, dtype) as DTypeArrays[E];
    return fromArray(out, this.shape, dtype);
  }

  /** The first element as a number (for scalars such as a loss). */
  item(): number {
    if (this.size !== 1) throw new ShapeError(`item(): tensor has ${this.size} elements, not 1`);
    return this.data[0];
  }

  toArray(): number[] {
    return Array.from(this.data as ArrayLike<number>);
  }

  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}${this.requiresGrad ? ", requiresGrad" : ""})`;
  }
}

/** Wraps an existing array (not copied; never pooled). */
export function fromArray<D extends DType>(data: DTypeArrays[D], shape: Shape, dtype?: D): Tensor<D> {
  const dt = (dtype ?? dtypeOfArray(data as AnyArray)) as D;
  return new Tensor(new Storage(dt, data, false), shape);
}

/**
 * A shape-only placeholder with no memory behind it (PyTorch's "meta" device): a model is
 * built from these and each weight is replaced as it is read from a checkpoint, so the whole
 * model never exists twice. Reading its data throws.
 */
export function meta<D extends DType>(shape: Shape, dtype: D): Tensor<D> {
  checkShape(shape);
  return new Tensor(new Storage(dtype, null, false, true), shape);
}

/** A new tensor with uninitialised (possibly pooled, non-zero) contents; kernels fill it. */
export function empty<D extends DType>(shape: Shape, dtype: D): Tensor<D> {
  checkShape(shape);
  return new Tensor(new Storage(dtype, allocUninit(dtype, numel(shape)), true), shape);
}

export function zeros<D extends DType = "f32">(shape: Shape, dtype: D = "f32" as D): Tensor<D> {
  checkShape(shape);
  return new Tensor(new Storage(dtype, allocZeros(dtype, numel(shape)), true), shape);
}

export function full<D extends DType = "f32">(shape: Shape, value: number, dtype: D = "f32" as D): Tensor<D> {
  const t = empty(shape, dtype);
  t.data.fill(value);
  return t;
}

export function ones<D extends DType = "f32">(shape: Shape, dtype: D = "f32" as D): Tensor<D> {
  return full(shape, 1, dtype);
}

/** A scalar (shape []) tensor. */
export function scalar(value: number, dtype: FloatDType = "f32"): Tensor<FloatDType> {
  return full([], value, dtype);
}

/**
 * Builds a tensor from numbers (copied). Nested arrays give the shape when none is passed.
 *
 * @example
 * const x = tensor([[1, 2], [3, 4]]);           // f32, shape [2, 2]
 * const ids = tensor([5, 7, 9], [3], "i32");
 */
export function tensor<D extends DType = "f32">(
  values: unknown,
  shape?: Shape,
  dtype: D = "f32" as D,
): Tensor<D> {
  const flat: number[] = [];
  const inferred: number[] = [];
  const walk = (v: unknown, depth: number): void => {
    if (Array.isArray(v) || ArrayBuffer.isView(v)) {
      const arr = v as ArrayLike<unknown>;
      if (inferred.length === depth) inferred.push(arr.length);
      else if (inferred[depth] !== arr.length)
        throw new ShapeError(
          `tensor(): ragged nested array (length ${arr.length} where ${inferred[depth]} expected)`,
        );
      for (let i = 0; i < arr.length; i++) walk(arr[i], depth + 1);
    } else if (typeof v === "number" || typeof v === "boolean") flat.push(Number(v));
    else throw new DTypeError(`tensor(): expected numbers, got ${typeof v}`);
  };
  walk(values, 0);
  const sh = shape ?? inferred;
  if (numel(sh) !== flat.length)
    throw new ShapeError(`tensor(): ${flat.length} values do not fill shape ${fmtShape(sh)}`);
  const t = empty(sh, dtype);
  const d = t.data as AnyArray;
  if (dtype === "f16" || dtype === "bf16") {
    const conv = convertArray(Float32Array.from(flat), "f32", dtype);
    d.set(conv as Uint16Array);
  } else for (let i = 0; i < flat.length; i++) d[i] = flat[i];
  return t;
}

/** Asserts that a tensor is a float compute tensor and returns it typed so. */
export function asFloat(t: Tensor, op: string): Tensor<FloatDType> {
  if (!isFloatDType(t.dtype))
    throw new DTypeError(
      `${op}: expected a float tensor (f32 or f64), got ${t.dtype} ${fmtShape(t.shape)}; convert with .to("f32")`,
    );
  return t as Tensor<FloatDType>;
}
