// Setup shared by the benchmarks on the demo task: the shipped base model, the kernel
// backend, and the SOTU 1990–2021 text in a temporary folder.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { demoBaseDir } from "../src/cli/demo/paths.js";
import { writeDemoTaskData } from "../src/cli/demo/task.js";
import { setupBackend } from "../src/cli/setup.js";

export interface DemoTask {
  base: string;
  dataFile: string;
  work: string;
  backend: string;
  cleanup(): void;
}

/** The demo task, or exit 0 with a message when the demo base model is missing. */
export async function prepareDemoTask(bench: string): Promise<DemoTask> {
  const base = demoBaseDir();
  if (!existsSync(join(base, "config.json"))) {
    console.log(
      `${bench}: the demo base model is missing at ${base}; build it first (npm run build:demo-base).`,
    );
    process.exit(0);
  }
  const backend = await setupBackend();
  const work = mkdtempSync(join(tmpdir(), `lorakit-${bench}-`));
  const dataFile = writeDemoTaskData(work).path;
  return { base, dataFile, work, backend, cleanup: () => rmSync(work, { recursive: true, force: true }) };
}
