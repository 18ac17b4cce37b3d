// Issue 17, a new user's first steps: the README's library example runs as printed (only the
// shipped model's path is swapped for this checkout's and the steps cut down), and the serving
// example then serves the adapter it wrote under the id the README uses.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { startServer } from "../../src/serve/server.js";
import { repoRoot } from "../util/repo.js";

/** The first ```ts block after `heading` in README.md. */
function codeBlockAfter(heading: string): string {
  const md = readFileSync(join(repoRoot(), "README.md"), "utf8");
  const from = md.indexOf(heading);
  assert.ok(from >= 0, `README has no ${heading}`);
  const m = /```ts\n([\s\S]*?)```/.exec(md.slice(from));
  assert.ok(m, `no ts block after ${heading}`);
  return m[1];
}

test("the README library example runs, and serve then answers for its adapter", {
  timeout: 300_000,
}, async () => {
  const root = repoRoot();
  const work = mkdtempSync(join(tmpdir(), "lorakit-readme-"));
  // Inside the package, so that `import "lorakit"` resolves to this checkout (self-reference).
  const scriptDir = join(root, "dist", `readme-example-${process.pid}`);
  mkdirSync(scriptDir, { recursive: true });
  try {
    let code = codeBlockAfter("## Library");
    const shipped = "node_modules/lorakit/models/demo-base";
    assert.ok(code.includes(shipped), "the example should load the model lorakit ships");
    code = code
      .replace(shipped, join(root, "models", "demo-base"))
      .replace(/numTrainingSteps: 100/, "numTrainingSteps: 3")
      .replace(/steps: 100/, "steps: 3")
      .replace("./adapters/sotu", join(work, "adapters", "sotu"));
    const script = join(scriptDir, "example.mjs");
    writeFileSync(script, code);
    const r = spawnSync(process.execPath, [script], { cwd: work, encoding: "utf8" });
    assert.equal(r.status, 0, `the example failed:\n${r.stderr}`);
    assert.match(r.stdout, /^trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: [\d.]+$/m);
    assert.ok(existsSync(join(work, "adapters", "sotu", "adapter_model.safetensors")));

    const server = await startServer({
      modelDir: join(root, "models", "demo-base"),
      adapterRoot: join(work, "adapters"),
      port: 0,
      threads: 1,
    });
    try {
      const res = await fetch(`${server.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "sotu", prompt: "The American people", max_tokens: 8 }),
      });
      const raw = await res.text();
      assert.equal(res.status, 200, raw);
      const body = JSON.parse(raw) as {
        choices: { text: string }[];
        usage: { completion_tokens: number };
      };
      assert.equal(body.usage.completion_tokens, 8);
    } finally {
      await server.close();
    }
  } finally {
    rmSync(scriptDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
});
