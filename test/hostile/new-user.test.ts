// Issue 17, what a new user stumbles on: a stale progress bar, the trainable line twice,
// defaults that barely learn on the demo model, 4-bit weights left out of parameter counts,
// --resume losing earlier evals, serve without --json, --json errors with an empty stdout, a
// server outliving a killed parent, machine paths in shared files, colours in pipes, mixed
// message prefixes.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { demoLoraFlags } from "../../src/cli/demo/lora-recipe.js";
import { TrainProgress } from "../../src/cli/progress.js";
import { loadModel } from "../../src/models/node/load.js";
import { countParameters } from "../../src/peft/count.js";
import { getPeftModel } from "../../src/peft/model.js";
import { savePretrained } from "../../src/peft/node/io.js";
import { repoRoot } from "../util/repo.js";
import { buildWorld, CLI, CORPUS, cli, oneJson, type World } from "./cli-world.js";

let w: World;
before(() => {
  w = buildWorld();
  writeFileSync(join(w.root, "data.txt"), CORPUS.repeat(6));
});
after(() => w?.cleanup());

const small = ["--batch-size", "1", "--seq-len", "16"];

describe("a new user's first runs", { timeout: 180_000 }, () => {
  test("after the final eval the progress bar is gone, not left with {loss} placeholders", () => {
    const chunks: string[] = [];
    const write = process.stderr.write;
    const tty = process.stderr.isTTY;
    Object.defineProperty(process.stderr, "isTTY", { value: true, configurable: true });
    process.stderr.write = ((s: string | Uint8Array) => {
      chunks.push(String(s));
      return true;
    }) as typeof process.stderr.write;
    try {
      const p = new TrainProgress({ json: false, logEvery: 1 });
      p.event({ type: "start", step: 0, totalSteps: 2 } as never);
      for (const step of [1, 2])
        p.event({
          type: "step",
          step,
          totalSteps: 2,
          loss: 3.5,
          lr: 1e-3,
          gradNorm: 1,
          tokens: 8,
          tokensPerSecond: 100,
          elapsedSeconds: 1,
        } as never);
      p.event({ type: "eval", step: 2, loss: 3.4, tokens: 8 } as never);
      p.event({ type: "end" } as never);
      p.stop();
    } finally {
      process.stderr.write = write;
      Object.defineProperty(process.stderr, "isTTY", { value: tty, configurable: true });
    }
    const all = chunks.join("");
    assert.doesNotMatch(all, /\{loss\}|\{lr\}|\{tps\}/, "a bar restarted without its values");
    const afterEval = all.slice(all.indexOf("eval at step 2"));
    assert.doesNotMatch(afterEval, /train \|/, "the bar came back after the final eval");
  });

  test("train prints the trainable line once, with one message prefix, and shows the demo recipe in --help", async () => {
    const r = await cli([
      "train",
      "--model",
      w.modelDir,
      "--data",
      join(w.root, "data.txt"),
      "--out",
      join(w.root, "once"),
      "--steps",
      "2",
      ...small,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((r.stdout + r.stderr).match(/trainable params:/g)?.length, 1, r.stdout + r.stderr);
    for (const line of (r.stdout + r.stderr).split("\n"))
      if (line.startsWith("lorakit")) assert.match(line, /^lorakit: /);
    const help = await cli(["train", "--help"]);
    assert.ok(help.stdout.includes(demoLoraFlags()), help.stdout);
    assert.ok(!(help.stdout + help.stderr).includes("\u001b["), "colour codes in piped output");
  });

  test("4-bit weights count in all params, as PEFT counts them", () => {
    const plain = getPeftModel(loadModel(w.modelDir).model, { r: 2, targetModules: ["q_proj"] });
    const q = getPeftModel(loadModel(w.modelDir, { quantize: "nf4" }).model, {
      r: 2,
      targetModules: ["q_proj"],
    });
    assert.deepEqual(countParameters(q), countParameters(plain));
    assert.equal(q.countParameters().all, plain.countParameters().all);
  });

  test("--resume keeps the earlier evals (step 0 included) in loss.csv and loss.svg", async () => {
    const out = join(w.root, "resume");
    const args = [
      "train",
      "--model",
      w.modelDir,
      "--data",
      join(w.root, "data.txt"),
      "--out",
      out,
      ...small,
      "--steps",
      "4",
      "--eval-every",
      "2",
      "--checkpoint-every",
      "2",
      "--valid-fraction",
      "0.3",
      "--json",
    ];
    const full = oneJson(await cli(args));
    const csvFull = readFileSync(join(out, "loss.csv"), "utf8");
    const r = oneJson(await cli([...args, "--resume", join(out, "checkpoints", "checkpoint-2")]));
    assert.equal(r.final_loss, full.final_loss);
    const csv = readFileSync(join(out, "loss.csv"), "utf8");
    assert.equal(csv, csvFull, "the resumed run's loss.csv differs from the uninterrupted one's");
    const evalRows = csv
      .trim()
      .split("\n")
      .slice(1)
      .filter((l) => !l.endsWith(","));
    assert.deepEqual(
      evalRows.map((l) => Number(l.split(",")[0])),
      [0, 2, 4],
    );
    assert.match(csv, /^0,,,\d/m);
    const svg = readFileSync(join(out, "loss.svg"), "utf8");
    // 3 eval points plus the legend's dot; the legend draws a line for the train loss only.
    assert.equal(svg.match(/<circle /g)?.length, 4);
  });

  test("--json failures leave one error object on stdout", async () => {
    for (const args of [
      ["eval", "--model", join(w.root, "no-such"), "--text", w.textFile, "--json"],
      ["eval", "--json"],
      ["eval", "--modle", "x", "--json"],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stdout.trim().split("\n");
      assert.equal(lines.length, 1, r.stdout);
      const e = JSON.parse(lines[0]).error;
      assert.equal(typeof e.message, "string");
      assert.equal(typeof e.type, "string");
      assert.match(r.stderr, /^lorakit: /m);
    }
  });

  test("build-demo-base without --out writes ./demo-base, never the shipped model", async () => {
    const shipped = join(repoRoot(), "models", "demo-base", "model.safetensors");
    const before = readFileSync(shipped);
    const r = await cli(["build-demo-base", "--steps", "1", "--json"], { LORAKIT_BACKEND: "auto" }, w.root);
    oneJson(r);
    assert.ok(existsSync(join(w.root, "demo-base", "model.safetensors")));
    assert.deepEqual(readFileSync(shipped), before);
  });

  test("base_model_name_or_path is the model as the caller named it, not a machine path", () => {
    const rel = join("model");
    const prev = process.cwd();
    process.chdir(w.root);
    try {
      const pm = getPeftModel(loadModel(rel).model, { r: 2, targetModules: ["q_proj"] });
      savePretrained(pm, "lib-adapter");
      const cfg = JSON.parse(readFileSync(join(w.root, "lib-adapter", "adapter_config.json"), "utf8"));
      assert.equal(cfg.base_model_name_or_path, "model");
    } finally {
      process.chdir(prev);
    }
  });

  test("serve --json prints one object once listening, and a server whose parent is killed stops", async () => {
    // A parent (as npx is) that starts `serve --json` and reports its child's pid.
    const parent = spawn(
      process.execPath,
      [
        "-e",
        `const c = require("node:child_process").spawn(process.execPath, ${JSON.stringify([CLI, "serve", "--model", w.modelDir, "--port", "0", "--json"])}, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, LORAKIT_BACKEND: "ref" } });
         c.stdout.on("data", (d) => process.stdout.write(JSON.stringify({ pid: c.pid, line: String(d) }) + "\\n"));`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const first = await new Promise<{ pid: number; line: string }>((resolve, reject) => {
      parent.stdout.setEncoding("utf8").once("data", (s: string) => resolve(JSON.parse(s.split("\n")[0])));
      parent.once("exit", () => reject(new Error("the parent exited first")));
    });
    const info = JSON.parse(first.line);
    assert.match(info.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((await fetch(`${info.url}/health`)).status, 200);
    parent.kill("SIGKILL");
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    while (alive(first.pid)) await new Promise((r) => setTimeout(r, 100));
  });
});
