// A small world for the issue-17 command-line tests: the CLI run as a child process on the
// reference kernels, a tiny model folder with its tokenizer, a text file and an adapter.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { saveModel } from "../../src/models/node/load.js";
import { getPeftModel } from "../../src/peft/model.js";
import { savePretrained } from "../../src/peft/node/io.js";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { saveTokenizer } from "../../src/tokenizer/node.js";
import { tinyModel } from "../util/tiny-model.js";

const HERE = dirname(fileURLToPath(import.meta.url));
export const CLI = join(HERE, "..", "..", "src", "cli", "main.js");

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/src/cli/main.js ...args` on the reference kernels (extra env merged in). */
export function cli(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, LORAKIT_BACKEND: "ref", NO_COLOR: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
      cwd,
    });
    let stdout = "";
    let stderr = "";
    p.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    p.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Failed with a one-line `lorakit: ...` message naming `re`, no JS stack, nothing on stdout. */
export function failsClearly(r: Run, re: RegExp): void {
  assert.notEqual(r.code, 0, `should fail; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.ok(r.code !== null && r.code < 128, `killed or aborted (code ${r.code}):\n${r.stderr}`);
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  const msg = lines.find((l) => l.startsWith("lorakit: ") && re.test(l));
  assert.ok(msg, `no "lorakit: ..." line matching ${re} on stderr:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+\)?/, `a stack trace on stderr:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /FATAL ERROR|Abort|Segmentation/, r.stderr);
}

/** stdout holds exactly one JSON object and the command succeeded. */
export function oneJson(r: Run): Record<string, unknown> {
  assert.equal(r.code, 0, `exit ${r.code}; stderr:\n${r.stderr}`);
  const lines = r.stdout.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `stdout should be one JSON line, got:\n${r.stdout}`);
  return JSON.parse(lines[0]) as Record<string, unknown>;
}

export const CORPUS =
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, " +
  "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery " +
  "part of the world. It is a way I have of driving off the spleen and regulating the circulation.\n";

export interface World {
  root: string;
  modelDir: string;
  adapterDir: string;
  textFile: string;
  vocab: number;
  cleanup(): void;
}

/** A model folder (tiny LLaMA, BPE tokenizer), an adapter on q,v and a text file in a temp folder. */
export function buildWorld(prefix = "lorakit-hostile-"): World {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const modelDir = join(root, "model");
  const adapterDir = join(root, "adapter");
  const textFile = join(root, "text.txt");
  const trained = trainBpeTokenizer(CORPUS.repeat(3), { vocabSize: 300 });
  const tj = trained.tokenizerJson;
  const vocab =
    Object.keys(tj.model.vocab).length + tj.added_tokens.filter((t) => !(t.content in tj.model.vocab)).length;
  saveModel(tinyModel(0, { vocab_size: vocab }), modelDir);
  saveTokenizer(modelDir, trained);
  writeFileSync(textFile, CORPUS.repeat(2));
  const pm = getPeftModel(
    tinyModel(0, { vocab_size: vocab }),
    { r: 2, loraAlpha: 4, targetModules: ["q_proj", "v_proj"], initLoraWeights: false },
    "default",
    { seed: 3 },
  );
  savePretrained(pm, adapterDir);
  return {
    root,
    modelDir,
    adapterDir,
    textFile,
    vocab,
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
