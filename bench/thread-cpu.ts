// CPU time of each of this process's threads, from Linux's /proc/self/task/<tid>/stat (user and
// system clock ticks at 100 per second); null where there is no /proc. Node has no per-thread
// CPU clock before version 23, and bench/serve wants to tell the HTTP thread from the engine's.
import { readdirSync, readFileSync } from "node:fs";

/** Thread id → CPU milliseconds so far. */
export type ThreadCpu = Map<number, number>;

const MS_PER_TICK = 10;

export function threadCpuMs(): ThreadCpu | null {
  let tids: string[];
  try {
    tids = readdirSync("/proc/self/task");
  } catch {
    return null;
  }
  const out: ThreadCpu = new Map();
  for (const tid of tids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
    } catch {
      continue; // the thread ended in between
    }
    // Fields after the command name (which may hold spaces) in parentheses: utime is the 12th.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(Number(tid), (Number(f[11]) + Number(f[12])) * MS_PER_TICK);
  }
  return out;
}

/** CPU seconds of this process (every thread) since `since`. */
export function cpuSeconds(since: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(since);
  return (c.user + c.system) / 1e6;
}

/**
 * [what f returns (a GFLOP/s rate), the same rate per CPU-second of this process]: on a host
 * shared with other work, wall-clock rates fall with whatever else runs; CPU time does much
 * less, so a share of the per-CPU-second figure is the steadier one.
 */
export function perCpuSecond(f: () => number): [number, number] {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const g = f();
  const wall = (performance.now() - t0) / 1000;
  return [g, (g * wall) / cpuSeconds(c0)];
}
