// Runs every compiled test file under dist/test with node's own test runner.
// Node 20's `--test` takes no globs, so the files are listed here.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
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
// The tests' temporary folders (theirs and their child processes': os.tmpdir() follows TMPDIR)
// go under one folder of this run, removed at the end, so a run leaves nothing in /tmp even
// where a test does not clean up after itself.
const tmp = mkdtempSync(join(tmpdir(), "lorakit-tests-"));
let status = 1;
try {
  const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", ...files], {
    stdio: "inherit",
    env: { ...process.env, TMPDIR: tmp },
  });
  status = r.status ?? 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(status);
