// The wasm module's linear memory as the host uses it: a bump arena that every kernel call
// resets. A call copies its operands in (each 16-byte aligned), runs, and copies outputs
// back out; nothing stays allocated between calls. The memory grows to the largest call
// seen and stays that size (WebAssembly memory never shrinks).
import { BackendError } from "../../core/errors.js";

const PAGE = 65536;
/** wasm32 addresses 4 GiB; the module is linked with that maximum. */
const MAX_BYTES = 4 * 1024 * 1024 * 1024;

type Typed = Float32Array | Uint16Array | Int32Array | Uint8Array;

export class WasmArena {
  private readonly memory: WebAssembly.Memory;
  private readonly base: number;
  private readonly maxBytes: number;
  private top: number;

  /** `maxBytes`: the most the memory may grow to (a shared memory's maximum may be below 4 GiB). */
  constructor(memory: WebAssembly.Memory, heapBase: number, maxBytes = MAX_BYTES) {
    this.memory = memory;
    this.base = align16(heapBase);
    this.maxBytes = Math.min(maxBytes, MAX_BYTES);
    this.top = this.base;
  }

  /** Frees everything allocated since the last reset. */
  reset(): void {
    this.top = this.base;
  }

  /** Reserves `bytes` (16-byte aligned) and returns its address; grows the memory when needed. */
  alloc(bytes: number): number {
    const at = this.top;
    const end = align16(at + bytes);
    if (end > this.maxBytes)
      throw new BackendError(
        `lorakit: a wasm kernel call needs ${end} bytes of memory, more than this WebAssembly memory's ${this.maxBytes}; use the native backend for products this large`,
      );
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return at;
  }

  /** Copies `count` elements of `src` from element `start` into fresh memory; returns the address. */
  copyIn(src: Typed, start = 0, count = src.length - start): number {
    const at = this.alloc(count * src.BYTES_PER_ELEMENT);
    this.view(src, at, count).set(src.subarray(start, start + count));
    return at;
  }

  /** A view of `count` elements at `at`, of the same element type as `like`. Re-take views after alloc (growth detaches them). */
  view<T extends Typed>(like: T, at: number, count: number): T {
    const Ctor = like.constructor as new (b: ArrayBuffer, o: number, n: number) => T;
    return new Ctor(this.memory.buffer, at, count);
  }
}

/** x rounded up to a multiple of 16 (arithmetic, not bitwise: addresses pass 2³¹). */
function align16(x: number): number {
  return Math.ceil(x / 16) * 16;
}
