// Runs every compiled test file under dist/test with node's own test runner.
// Node 20's `--test` takes no globs, so the files are listed here.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith(".test.js")) out.push(p);
  }
  return out;
}

const filter = process.argv[2];
const files = collect("dist/test").filter((f) => !filter || f.includes(filter));
if (files.length === 0) {
  console.error(`no test files found under dist/test${filter ? ` matching ${filter}` : ""}`);
  process.exit(1);
}
const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", ...files], { stdio: "inherit" });
process.exit(r.status ?? 1);
