// Issue 17, the command line under hostile flags: each bad value ends in one clear
// `lorakit: ...` line and a non-zero exit, never a stack trace or a V8 abort, and is checked
// before any work that it would spoil.
import assert from "node:assert/strict";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { capThreads } from "../../src/cli/setup.js";
import { buildWorld, cli, failsClearly, oneJson, type World } from "./cli-world.js";

/** A copy of `dir` with its JSON file `name` edited. */
function edited(dir: string, copy: string, name: string, edit: (j: Record<string, unknown>) => void): string {
  cpSync(dir, copy, { recursive: true });
  const p = join(copy, name);
  const j = JSON.parse(readFileSync(p, "utf8"));
  edit(j);
  writeFileSync(p, JSON.stringify(j));
  return copy;
}

let w: World;
before(() => {
  w = buildWorld();
});
after(() => w?.cleanup());

describe("hostile command-line flags", { timeout: 120_000 }, () => {
  test("--threads beyond the cores is capped to them, with a notice", async () => {
    assert.equal(capThreads(1000, 2), 2);
    assert.equal(capThreads(1, 2), 1);
    const r = await cli(["eval", "--model", w.modelDir, "--text", w.textFile, "--threads", "1000", "--json"]);
    oneJson(r);
    assert.match(r.stderr, /lorakit: --threads 1000 is more than the \d+ cores here; using \d+/);
  });

  test('adapter config fields of the wrong type: target_modules 5, use_rslora "no"', async () => {
    const five = edited(w.adapterDir, join(w.root, "tm5"), "adapter_config.json", (j) => {
      j.target_modules = 5;
    });
    failsClearly(
      await cli(["eval", "--model", w.modelDir, "--adapter", five, "--text", w.textFile, "--json"]),
      /target_modules/,
    );
    const no = edited(w.adapterDir, join(w.root, "rs-no"), "adapter_config.json", (j) => {
      j.use_rslora = "no";
    });
    failsClearly(
      await cli(["eval", "--model", w.modelDir, "--adapter", no, "--text", w.textFile, "--json"]),
      /use_rslora/,
    );
  });

  test("absurd config sizes are refused before anything is allocated, even by info", async () => {
    for (const [k, v] of [
      ["num_hidden_layers", 1e9],
      ["hidden_size", 1e9],
      ["vocab_size", 1e8],
    ] as const) {
      const big = edited(w.modelDir, join(w.root, `big-${k}`), "config.json", (j) => {
        j[k] = v;
      });
      failsClearly(
        await cli(["info", "--model", big]),
        new RegExp(`"${k}" is ${v}; lorakit accepts at most`),
      );
    }
  });

  test("absurd or contradictory train flags are refused before loading", async () => {
    const base = ["train", "--model", w.modelDir, "--data", w.textFile, "--out", join(w.root, "never")];
    failsClearly(await cli([...base, "--r", "1e9"]), /--r must be in \[1, 65,536\]/);
    failsClearly(await cli([...base, "--batch-size", "1e9"]), /--batch-size must be in/);
    failsClearly(
      await cli([...base, "--method", "gora", "--gora-min-rank", "0"]),
      /--gora-min-rank must be in/,
    );
    failsClearly(
      await cli([...base, "--method", "gora", "--gora-min-rank", "8", "--gora-max-rank", "4"]),
      /--gora-max-rank \(4\) must be ≥ --gora-min-rank \(8\)/,
    );
  });

  test("--out naming an existing file fails before training and leaves the file alone", async () => {
    const r = await cli([
      "train",
      "--model",
      w.modelDir,
      "--data",
      w.textFile,
      "--out",
      w.textFile,
      "--steps",
      "2",
    ]);
    failsClearly(r, /--out .* is a file, not a folder/);
    assert.doesNotMatch(r.stderr, /step 1|eval loss/);
    assert.match(readFileSync(w.textFile, "utf8"), /^Call me Ishmael/);
  });

  test("inspect --plot into a missing folder fails before the work, naming the folder", async () => {
    failsClearly(
      await cli(["inspect", w.adapterDir, "--plot", join(w.root, "no-such", "x.svg")]),
      /the folder .*no-such does not exist/,
    );
  });

  test("serve --host that names no address fails at once", async () => {
    failsClearly(
      await cli(["serve", "--model", w.modelDir, "--host", "999.1.1.1", "--port", "0"]),
      /--host 999\.1\.1\.1 is neither an IP address/,
    );
  });
});
