// The kernel functions as the host files (gemm.ts, attention.ts, ops.ts) call them: without
// the trailing (tid, nth), which are filled in here: (0, 1) on one thread, or each part's
// (part, parts) when the pool cuts the call into parts (pool.ts).
import type { ThreadedKernel, WasmExports } from "./module.js";
import { THREADED_KERNELS } from "./module.js";
import type { WasmThreadPool } from "./pool.js";

type WithoutThread<T> = T extends [...infer A, number, number] ? A : never;

export type KernelCalls = {
  [K in ThreadedKernel]: (...args: WithoutThread<Parameters<WasmExports[K]>>) => void;
} & {
  wasm_gemm_scratch_bytes(m: number, n: number, k: number, batch: number, nth: number): number;
  wasm_gemm_packed_b_bytes(m: number, n: number, k: number, batch: number): number;
  /** On the calling thread alone (it is a small fraction of the product it serves). */
  wasm_gemm_pack_b(transB: number, n: number, k: number, b: number, bBf16: number, dst: number): void;
  /**
   * Runs kernel `name` (arguments without tid and nth) and calls `onPart(part, parts)` on this
   * thread as each part's output is ready (pool.ts's run; one thread: part 0 of 1 at the end).
   */
  runParts(
    name: ThreadedKernel,
    args: readonly number[],
    onPart: (part: number, parts: number) => void,
  ): void;
  /** Parts a call may be cut into (WasmThreadPool.parts): per-part scratch areas are this many times one. */
  readonly parts: number;
};

export function kernelCalls(ex: WasmExports, pool: WasmThreadPool | null): KernelCalls {
  const calls: Record<string, unknown> = {
    wasm_gemm_scratch_bytes: (m: number, n: number, k: number, batch: number, nth: number) =>
      ex.wasm_gemm_scratch_bytes(m, n, k, batch, nth),
    wasm_gemm_packed_b_bytes: (m: number, n: number, k: number, batch: number) =>
      ex.wasm_gemm_packed_b_bytes(m, n, k, batch),
    wasm_gemm_pack_b: (transB: number, n: number, k: number, b: number, bBf16: number, dst: number) =>
      ex.wasm_gemm_pack_b(transB, n, k, b, bBf16, dst),
  };
  for (const name of THREADED_KERNELS) {
    const fn = ex[name] as (...a: number[]) => void;
    calls[name] = pool
      ? (...args: number[]) => pool.run(name, args)
      : (...args: number[]) => fn(...args, 0, 1);
  }
  calls.runParts = (
    name: ThreadedKernel,
    args: readonly number[],
    onPart: (part: number, parts: number) => void,
  ) => {
    if (pool) {
      pool.run(name, args, onPart);
      return;
    }
    (ex[name] as (...a: number[]) => void)(...args, 0, 1);
    onPart(0, 1);
  };
  Object.defineProperty(calls, "parts", { get: () => (pool ? pool.parts : 1), enumerable: true });
  return calls as unknown as KernelCalls;
}
