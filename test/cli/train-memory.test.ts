// `lorakit train` under a memory budget, run as a user runs it: the plan is made from the
// headers before loading; a budget that cannot be met is refused before anything is loaded or
// written, naming flags that would fit; a tight budget turns checkpointing on, a loose one not.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { mobyDickText } from "../../src/data/corpora.js";
import { repoRoot } from "../util/repo.js";

const CLI = join(repoRoot(), "dist", "src", "cli", "main.js");
const MODEL = join(repoRoot(), "models", "demo-base");

function train(out: string, data: string, ...flags: string[]) {
  return spawnSync(
    process.execPath,
    [
      CLI,
      "train",
      "--model",
      MODEL,
      "--data",
      data,
      "--out",
      out,
      "--steps",
      "2",
      "--valid-fraction",
      "0",
      "--json",
      ...flags,
    ],
    { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } },
  );
}

describe("lorakit train --max-memory", () => {
  const dir = mkdtempSync(join(tmpdir(), "lorakit-budget-"));
  const data = join(dir, "moby.txt");
  writeFileSync(data, mobyDickText().slice(0, 200_000));

  test("a budget that fits without checkpointing does not pay for it", () => {
    const r = train(join(dir, "a"), data, "--batch-size", "4", "--seq-len", "128", "--max-memory", "4GiB");
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.memory.checkpointed_layers, 0);
    assert.equal(s.memory.budget, 4 * 2 ** 30);
    assert.ok(s.memory.estimate > s.memory.weights);
  });

  test("a tight budget checkpoints as few layers as fit and the run stays within it", () => {
    // The demo model at 16×512: activations dominate; checkpointing brings them under the budget.
    const probe = spawnSync(
      process.execPath,
      [
        CLI,
        "memory",
        "--model",
        MODEL,
        "--target-modules",
        "q_proj,v_proj",
        "--r",
        "8",
        "--batch-size",
        "16",
        "--seq-len",
        "512",
        "--gradient-checkpointing",
        "off",
        "--json",
      ],
      { encoding: "utf8" },
    );
    assert.equal(probe.status, 0, probe.stderr);
    const off = JSON.parse(probe.stdout).total;
    const budget = Math.floor(off * 0.85);
    const r = train(
      join(dir, "b"),
      data,
      "--batch-size",
      "16",
      "--seq-len",
      "512",
      "--max-memory",
      String(budget),
    );
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.ok(
      s.memory.checkpointed_layers >= 2 && s.memory.checkpointed_layers <= 4,
      JSON.stringify(s.memory),
    );
    assert.ok(s.memory.estimate <= budget);
    assert.match(r.stderr, /activation checkpointing on \d of 4 layers/);
  });

  test("a budget nothing fits is refused before loading, with flags that would fit, and writes nothing", () => {
    const out = join(dir, "c");
    const r = train(out, data, "--batch-size", "64", "--seq-len", "512", "--max-memory", "200MiB");
    assert.notEqual(r.status, 0);
    assert.match(
      r.stderr,
      /needs about .* but the budget is 200\.00 MiB \(--max-memory\); it would fit with: --batch-size \d+ --grad-accum \d+/,
    );
    assert.doesNotMatch(r.stderr, /data:/, "refused before reading data or weights");
    assert.equal(existsSync(out), false);
  });

  test("bad flags are refused with the reason", () => {
    const r1 = train(join(dir, "d"), data, "--max-memory", "lots");
    assert.notEqual(r1.status, 0);
    assert.match(r1.stderr, /--max-memory: cannot read "lots" as a size/);
    const r2 = train(join(dir, "e"), data, "--full", "--dtype", "bf16");
    assert.notEqual(r2.status, 0);
    assert.match(r2.stderr, /--dtype bf16 cannot be combined with --full/);
    const r3 = train(join(dir, "f"), data, "--gradient-checkpointing", "sometimes");
    assert.notEqual(r3.status, 0);
    assert.match(r3.stderr, /--gradient-checkpointing must be auto, on or off/);
  });
});
