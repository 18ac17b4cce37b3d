// Issue 17, the command line under hostile flags: each bad value ends in one clear
// `lorakit: ...` line and a non-zero exit, never a stack trace or a V8 abort, and is checked
// before any work that it would spoil.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { capThreads } from "../../src/cli/setup.js";
import { buildWorld, cli, oneJson, type World } from "./cli-world.js";

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
});
