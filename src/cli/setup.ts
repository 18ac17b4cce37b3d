// Shared start-up for commands: pick the kernel backend (native when it loads) and say so
// on stderr when it had to fall back.
import { availableParallelism } from "node:os";
import { log } from "./output.js";

/**
 * The thread count to use for `requested` on a machine with `cores`: more threads than cores
 * only add switching (`--threads 1000` ran 14× slower, and deadlocked under a memory limit).
 */
export function capThreads(requested: number, cores = availableParallelism()): number {
  return Math.max(1, Math.min(requested, cores));
}

/** `--threads N` capped to the cores, saying so on stderr when it was more. */
export function threadsFlag(threads: number): number {
  const capped = capThreads(threads);
  if (capped !== threads)
    log(`lorakit: --threads ${threads} is more than the ${capped} cores here; using ${capped}`);
  return capped;
}

export async function setupBackend(threads?: number): Promise<string> {
  if (threads !== undefined) {
    threads = threadsFlag(threads);
    process.env.LORAKIT_THREADS = String(threads);
  }
  const { selectBackend } = await import("../kernels/select.js");
  const { backend, notice } = await selectBackend();
  if (notice) log(notice);
  const b = backend as { setThreads?: (n: number) => void };
  if (threads !== undefined) b.setThreads?.(threads);
  return backend.name;
}
