// Runs a test file again in a child process with LORAKIT_CPU set: the native path is chosen once
// per process, so a file checks a lower path's kernels (on a host that has a higher one) by
// running itself there. Asserts that the child passed at least one test and failed none (its
// report asked for as TAP, which Node 23 and later no longer print by default).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export function passesOnForcedPath(fileUrl: string, path: string): void {
  const env: NodeJS.ProcessEnv = { ...process.env, LORAKIT_CPU: path };
  delete env.NODE_TEST_CONTEXT; // run as a fresh test process, not as a runner's child
  const r = spawnSync(process.execPath, ["--test", "--test-reporter=tap", fileURLToPath(fileUrl)], {
    env,
    encoding: "utf8",
  });
  assert.equal(r.status, 0, `${path} path failed:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /# pass [1-9]/, r.stdout);
  assert.match(r.stdout, /# fail 0/, r.stdout);
}
