// Buffer reuse and scoped release. A fresh 4 KiB page costs ~12 µs on the project's
// machine, so a 16 MB temporary costs ~50 ms before any arithmetic: large float buffers
// go back to a pool keyed by (dtype, length) when their tensor is disposed, and the next
// allocation of that size takes one from there. `tidy(fn)` disposes every tensor created
// inside fn except those it returns or `keep()`s.
import type { PackedWeight } from "./backend.js";
import type { DType, DTypeArrays } from "./dtype.js";
import { allocArray, BYTES_PER_ELEMENT } from "./dtype.js";
import { LorakitError } from "./errors.js";

/** Buffers smaller than this many elements are left to the garbage collector. */
export const POOL_MIN_ELEMENTS = 4096;
/** The pool holds at most this many bytes of idle buffers; beyond it, released buffers are dropped. */
let poolLimitBytes = 1 << 30;

const pool = new Map<string, ArrayBufferView[]>();
let pooledBytes = 0;
const stats = { hits: 0, misses: 0 };

export function setPoolLimitBytes(bytes: number): void {
  poolLimitBytes = bytes;
  if (bytes === 0) clearPool();
}

export function clearPool(): void {
  pool.clear();
  pooledBytes = 0;
}

export function poolStats(): { hits: number; misses: number; pooledBytes: number } {
  return { ...stats, pooledBytes };
}

/**
 * The pool's size classes: a pooled buffer holds a multiple of an eighth of the power of two
 * at or below its element count (at most 1/8 more than asked for). A request takes a buffer of
 * its class and gets a view of the first n elements, so sizes that differ a little from one
 * call to the next (a serving step's token count, a prompt's length) reuse one another's
 * buffers instead of each missing the pool and faulting in fresh pages.
 */
function sizeClass(n: number): number {
  const step = 2 ** Math.floor(Math.log2(n)) / 8;
  return Math.ceil(n / step) * step;
}

/** The largest size class that fits in `capacity` elements (what a released buffer can serve). */
function classBelow(capacity: number): number {
  const step = 2 ** Math.floor(Math.log2(capacity)) / 8;
  return Math.floor(capacity / step) * step;
}

/** Marks a size class as just used: the pool map's order is least recently used first. */
function touch(key: string, list: ArrayBufferView[]): void {
  pool.delete(key);
  pool.set(key, list);
}

/**
 * Makes room for `bytes` in a full pool by dropping the idle buffers of the least recently
 * used size classes other than `keep` (the class being released into); false when even that
 * is not enough. Dropping the released buffer instead would leave the pool full of sizes no
 * longer asked for: a server whose steps change shape (a burst of prompts, then decoding)
 * would then miss the pool on every step and fault in fresh pages each time.
 */
function makeRoom(bytes: number, keep: string): boolean {
  for (const [key, list] of pool) {
    if (pooledBytes + bytes <= poolLimitBytes) return true;
    if (key === keep) continue;
    while (list.length > 0 && pooledBytes + bytes > poolLimitBytes) pooledBytes -= list.pop()!.byteLength;
    if (list.length === 0) pool.delete(key);
  }
  return pooledBytes + bytes <= poolLimitBytes;
}

/** An array of n elements whose contents are unspecified (pooled buffers are not zeroed). */
export function allocUninit<D extends DType>(dtype: D, n: number): DTypeArrays[D] {
  if (n < POOL_MIN_ELEMENTS) return allocArray(dtype, n);
  const cls = sizeClass(n);
  const key = `${dtype}:${cls}`;
  const list = pool.get(key);
  let full = list?.pop();
  if (full) {
    stats.hits++;
    pooledBytes -= full.byteLength;
    touch(key, list!);
  } else {
    stats.misses++;
    full = allocArray(dtype, cls);
  }
  const a = full as DTypeArrays[D];
  return (a.length === n ? a : a.subarray(0, n)) as DTypeArrays[D];
}

/** A zero-filled array of n elements. */
export function allocZeros<D extends DType>(dtype: D, n: number): DTypeArrays[D] {
  const a = allocUninit(dtype, n);
  if (n >= POOL_MIN_ELEMENTS) a.fill(0);
  return a;
}

/** Gives back an array allocUninit/allocZeros made (its whole buffer goes back to the pool). */
export function releaseArray(dtype: DType, a: ArrayBufferView & { length: number }): void {
  if (a.length < POOL_MIN_ELEMENTS || a.byteOffset !== 0) return;
  const bytes = a.buffer.byteLength;
  if (bytes > poolLimitBytes) return;
  const cls = classBelow(bytes / BYTES_PER_ELEMENT[dtype]);
  const key = `${dtype}:${cls}`;
  if (pooledBytes + bytes > poolLimitBytes && !makeRoom(bytes, key)) return;
  let list = pool.get(key);
  if (list) touch(key, list);
  else pool.set(key, (list = []));
  const Ctor = a.constructor as new (b: ArrayBufferLike, off: number, len: number) => ArrayBufferView;
  list.push(new Ctor(a.buffer, 0, cls));
  pooledBytes += cls * BYTES_PER_ELEMENT[dtype];
}

// Bytes of tensor storage made and not yet disposed (a tensor dropped without dispose()
// stays counted): what activation checkpointing saves shows up here.
let liveBytes = 0;
let peakBytes = 0;

function countBytes(n: number): void {
  liveBytes += n;
  if (liveBytes > peakBytes) peakBytes = liveBytes;
}

/**
 * Bytes held by tensors not yet disposed (views count once), and the most held at once
 * since the last `resetPeakTensorBytes()`. Tensors dropped without dispose() stay counted.
 *
 * @example
 * resetPeakTensorBytes();
 * tidy(() => backward(batchLoss(model, batch)));
 * console.log(tensorBytes().peak); // the step's peak tensor memory
 */
export function tensorBytes(): { live: number; peak: number } {
  return { live: liveBytes, peak: peakBytes };
}

/** Starts a new peak measurement at the current live bytes. */
export function resetPeakTensorBytes(): void {
  peakBytes = liveBytes;
}

let generation = 0;

/**
 * A number that changes whenever a watched storage's array may have changed identity (packed,
 * unpacked, released to the pool) or a module's parameters or children changed
 * (`arraysChanged`). Code that keeps typed arrays of parameters between calls (the grouped
 * LoRA kernel's table of adapter weights) watches their storages and rebuilds when it moves.
 */
export function arraysGeneration(): number {
  return generation;
}

/** Moves arraysGeneration: a module's parameters or children changed. */
export function arraysChanged(): void {
  generation++;
}

/** Shared, reference-counted backing store: reshape views share one. */
export class Storage<D extends DType = DType> {
  refs = 0;
  /** Set by code that keeps this storage's array between calls: its changes move arraysGeneration. */
  watched = false;
  /**
   * A backend's packed form of a frozen weight while it replaces `data` (then null): the
   * row-major array is dropped, so a packed weight never costs its memory twice.
   */
  packed: PackedWeight | null = null;
  constructor(
    readonly dtype: D,
    public data: DTypeArrays[D] | null,
    /** false for arrays the user handed in: never returned to the pool. */
    readonly pooled: boolean,
    /** A shape-only placeholder (no data yet): weights about to be loaded from a file. */
    readonly meta = false,
  ) {}
  retain(): void {
    if (this.refs++ === 0) countBytes(this.data?.byteLength ?? this.packed?.byteLength ?? 0);
  }
  release(): void {
    if (--this.refs > 0) return;
    if (this.watched) generation++;
    if (this.packed) {
      countBytes(-this.packed.byteLength);
      this.packed = null;
      return;
    }
    if (this.data === null) return;
    countBytes(-this.data.byteLength);
    if (this.pooled) releaseArray(this.dtype, this.data);
    this.data = null;
  }
  /** Replaces the row-major data by its packed form `p` (the array is left to the collector). */
  pack(p: PackedWeight): void {
    if (this.data === null || this.packed)
      throw new LorakitError("Storage.pack: only row-major data can be packed");
    if (this.refs > 0) countBytes(p.byteLength - this.data.byteLength);
    if (this.watched) generation++;
    this.packed = p;
    this.data = null;
  }
  /** Back to row-major data (a new array, bit for bit the one packed); the packed form is dropped. */
  unpack(): void {
    const p = this.packed;
    if (!p) return;
    const out = allocArray(this.dtype, p.rows * p.cols);
    p.unpack(out as Float32Array | Uint16Array);
    if (this.refs > 0) countBytes(out.byteLength - p.byteLength);
    if (this.watched) generation++;
    this.data = out;
    this.packed = null;
  }
}

export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

const scopes: Set<Disposable>[] = [];
const kept = new WeakSet<Disposable>();

/** Called by every tensor constructor. */
export function track(t: Disposable): void {
  scopes[scopes.length - 1]?.add(t);
}

/** Excludes a tensor from the enclosing tidy scopes' cleanup. */
export function keep<T extends Disposable>(t: T): T {
  kept.add(t);
  for (const s of scopes) s.delete(t);
  return t;
}

type Returned =
  | Disposable
  | readonly Returned[]
  | { [k: string]: unknown }
  | number
  | string
  | boolean
  | undefined
  | null
  // biome-ignore lint/suspicious/noConfusingVoidType: tidy takes callbacks that return nothing
  | void;

function collectReturned(v: unknown, out: Set<unknown>, depth = 0): void {
  if (v === null || typeof v !== "object" || depth > 4) return;
  if ("dispose" in v && "isDisposed" in v) {
    out.add(v);
    return;
  }
  if (Array.isArray(v)) for (const x of v) collectReturned(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype)
    for (const x of Object.values(v)) collectReturned(x, out, depth + 1);
}

/**
 * Runs fn and disposes the tensors it created, except those in its result (a tensor,
 * or arrays / plain objects of them) and those marked with `keep`. Returned tensors
 * move to the enclosing scope.
 *
 * @example
 * const lossValue = tidy(() => {
 *   const loss = crossEntropy(model.forward(x), y);
 *   backward(loss); // inside the scope: the graph's intermediates are still alive
 *   return loss.item();
 * });
 */
export function tidy<T extends Returned>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const ret = new Set<unknown>();
  collectReturned(result, ret);
  for (const t of scope) {
    if (ret.has(t)) track(t);
    else if (!kept.has(t)) t.dispose();
  }
  return result;
}
