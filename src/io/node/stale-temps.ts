// Temporary files and folders that lorakit's atomic writers leave when a process is killed
// mid-write (kill -9, out of memory): each name carries the writer's process id, so a later
// run in the same folder removes those whose process is gone and never touches a live one's.
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

/** Names lorakit writes temporaries under, with the writer's pid captured. */
const TEMP_NAMES: readonly RegExp[] = [
  /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/, // writeTempBeside / adapter folders: .NAME.PID.HEX.tmp
  /^\.tmp-checkpoint-\d+-(\d+)$/, // training checkpoints being written
  /^\.quantize-(\d+)-\d+.*\.tmp$/, // quantize's shards being assembled
];

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes the temporaries of dead lorakit processes directly inside `dir`; returns their names. */
export function removeStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names)
    for (const re of TEMP_NAMES) {
      const m = re.exec(n);
      if (!m) continue;
      if (!alive(Number(m[1]))) {
        rmSync(join(dir, n), { recursive: true, force: true });
        removed.push(n);
      }
      break;
    }
  return removed;
}
