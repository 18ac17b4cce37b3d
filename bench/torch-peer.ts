import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

// The environment of a PyTorch peer process (bench/py/*.py): its best settings on this
// machine (ARCHITECTURE.md) — OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, glibc's mmap/trim
// thresholds raised, OpenMP threads as asked — for its process only. PyTorch from Debian
// needs libopenblas0-pthread (apt); on the generic BLAS it multiplies at ~4 GFLOP/s.

export function torchPeerEnv(threads: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MALLOC_MMAP_THRESHOLD_: "4294967296",
    MALLOC_TRIM_THRESHOLD_: "4294967296",
    OMP_NUM_THREADS: String(threads),
  };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}

/** A long-lived PyTorch peer (bench/py/<name>) that answers one JSON line per request line. */
export interface TorchPeer {
  /** The first line the peer printed (its version and settings). */
  hello: Record<string, unknown>;
  ask(line: string): Promise<Record<string, unknown>>;
  close(): void;
}

/** Finds a peer script from dist/bench (compiled) or bench (source). */
export function torchPeerScript(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const beside = join(here, "py", name);
  return existsSync(beside) ? beside : join(here, "..", "..", "bench", "py", name);
}

/**
 * Starts /usr/bin/python3 on a peer script with torchPeerEnv(threads). Rejects with the peer's
 * last stderr line when it cannot start (no python3-torch, for one) or dies mid-run.
 */
export function startTorchPeer(name: string, threads: number): Promise<TorchPeer> {
  const child = spawn("/usr/bin/python3", [torchPeerScript(name), String(threads)], {
    env: torchPeerEnv(threads),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => {
    stderr += d;
  });
  const waiting: { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
  const failure = (why: string) => new Error(`PyTorch peer ${name}: ${why}`);
  const lastLine = () => stderr.trim().split("\n").pop() || "no output";
  createInterface({ input: child.stdout }).on("line", (line) => {
    waiting.shift()?.resolve(JSON.parse(line) as Record<string, unknown>);
  });
  child.on("error", (e) => {
    for (const w of waiting.splice(0)) w.reject(failure(e.message));
  });
  child.on("close", (code) => {
    for (const w of waiting.splice(0)) w.reject(failure(`exited with ${code}: ${lastLine()}`));
  });
  const next = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => waiting.push({ resolve, reject }));
  return next().then((hello) => ({
    hello,
    ask(line: string) {
      const answer = next();
      child.stdin.write(`${line}\n`);
      return answer;
    },
    close() {
      child.stdin.end();
    },
  }));
}
