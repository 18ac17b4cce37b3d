// Shared start-up for commands: pick the kernel backend (native when it loads) and say so
// on stderr when it had to fall back.
import { log } from "./output.js";

export async function setupBackend(threads?: number): Promise<string> {
  if (threads !== undefined) process.env.LORAKIT_THREADS = String(threads);
  const { selectBackend } = await import("../kernels/select.js");
  const { backend, notice } = await selectBackend();
  if (notice) log(notice);
  const b = backend as { setThreads?: (n: number) => void };
  if (threads !== undefined) b.setThreads?.(threads);
  return backend.name;
}
