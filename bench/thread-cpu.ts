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
