// Resumable training: a run killed right after a checkpoint and resumed in a fresh setup (new
// model, optimizer, scheduler, batcher) continues to exactly the losses and adapter weights of
// the uninterrupted run — with LoRA dropout on (the RNG state is part of the checkpoint) and a
// cosine schedule. A checkpoint whose save was interrupted is never picked up or loaded as if
// it were complete. Non-finite losses stop training with a TrainingError naming the step. And
// the CLI: `train --steps 4 --checkpoint-every 2` then `--resume true --steps 6` ends at the
// final loss of one `--steps 6` run.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Rng } from "../../src/core/rng.js";
import { fromArray, type Tensor } from "../../src/core/tensor.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { saveModel } from "../../src/models/node/load.js";
import { AdamW, cosineScheduleWithWarmup, LrScheduler } from "../../src/optim/index.js";
import { getPeftModel, type PeftModel } from "../../src/peft/model.js";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { saveTokenizer } from "../../src/tokenizer/node.js";
import { Tokenizer } from "../../src/tokenizer/tokenizer.js";
import { Batcher, padIdFor, textDataset } from "../../src/train/data.js";
import {
  CheckpointError,
  latestCheckpoint,
  loadCheckpoint,
  restoreParams,
  saveCheckpoint,
} from "../../src/train/node/checkpoint.js";
import { Trainer, TrainingError } from "../../src/train/trainer.js";
import { repoRoot } from "../util/repo.js";
import { tinyModel } from "../util/tiny-model.js";

const ROOT = repoRoot();
const CLI = join(ROOT, "dist/src/cli/main.js");

const CORPUS =
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, " +
  "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery " +
  "part of the world. It is a way I have of driving off the spleen and regulating the circulation. " +
  "Whenever I find myself growing grim about the mouth; whenever it is a damp, drizzly November in my soul, " +
  "then, I account it high time to get to sea as soon as I can.\n";
const trained = trainBpeTokenizer(CORPUS.repeat(3), { vocabSize: 300 });
const tok = Tokenizer.fromJSON(trained.tokenizerJson, trained.tokenizerConfig);

const TOTAL = 12;
const KILL_AT = 6;
const SEQ = 16;

const tmp = mkdtempSync(join(tmpdir(), "lorakit-resume-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Setup {
  peft: PeftModel<LlamaForCausalLM>;
  trainer: Trainer;
  live: Map<string, Tensor>;
}

/** Everything a training process builds from scratch: model, adapter, data, optimizer, schedule. */
function setup(
  opts: { steps?: number; restoreRng?: boolean; lr?: number; checkpointEvery?: number } = {},
): Setup {
  const model = tinyModel(7, { vocab_size: tok.vocabSize });
  const peft = getPeftModel(
    model,
    { r: 4, loraAlpha: 8, loraDropout: 0.2, targetModules: ["q_proj", "v_proj"] },
    "default",
    { seed: 1 },
  );
  peft.rng.setState(new Rng(99).getState());
  const ds = textDataset(CORPUS, tok, { seqLen: SEQ });
  const batcher = new Batcher(ds.examples, { batchSize: 2, seqLen: SEQ, seed: 3, padId: padIdFor(tok) });
  const named = [...peft.namedParameters()].filter(([, p]) => p.requiresGrad);
  const opt = new AdamW(
    named.map(([, p]) => p),
    { lr: opts.lr ?? 1e-2, weightDecay: 0.01 },
  );
  const sched = new LrScheduler(
    opt,
    cosineScheduleWithWarmup({ numWarmupSteps: 2, numTrainingSteps: TOTAL }),
  );
  const trainer = new Trainer(peft, batcher, opt, sched, {
    steps: opts.steps ?? TOTAL,
    maxGradNorm: 1,
    checkpointEvery: opts.checkpointEvery ?? 3,
    rng: opts.restoreRng === false ? null : peft.rng,
  });
  return { peft, trainer, live: new Map(named) };
}

/** Runs to the end (or until `killAt`, right after that step's checkpoint is on disk). */
function runTrainer(
  s: Setup,
  ckptRoot: string | null,
  killAt = Number.POSITIVE_INFINITY,
): Map<number, number> {
  const losses = new Map<number, number>();
  for (const ev of s.trainer.run()) {
    if (ev.type === "step") losses.set(ev.step, ev.loss);
    if (ev.type === "checkpoint" && ckptRoot) {
      saveCheckpoint(ckptRoot, s.live, ev.state);
      if (ev.step >= killAt) break; // the process dies here
    }
  }
  return losses;
}

function resumeFrom(dir: string, opts: { restoreRng?: boolean } = {}): Setup {
  const s = setup(opts);
  const ck = loadCheckpoint(dir);
  restoreParams(s.live, ck.params, dir);
  s.trainer.restore(ck.state);
  return s;
}

function adapterBytes(s: Setup): Map<string, Float32Array> {
  return new Map([...s.live].map(([n, t]) => [n, Float32Array.from(t.data as Float32Array)]));
}

describe("resume from a checkpoint", () => {
  const root = join(tmp, "lib");
  const full = setup();
  const fullLosses = runTrainer(full, null);
  const fullWeights = adapterBytes(full);

  test("the uninterrupted run trains (dropout on, cosine schedule)", () => {
    assert.equal(fullLosses.size, TOTAL);
    for (const l of fullLosses.values()) assert.ok(Number.isFinite(l));
    const lrs = full.trainer.losses.map((l) => l.lr);
    assert.equal(lrs[0], 0); // warm-up starts at 0
    assert.ok(Math.abs(lrs[2] - 1e-2) < 1e-12 && lrs[TOTAL - 1] < lrs[6] && lrs[6] < lrs[2], `lrs ${lrs}`);
    for (const [n, w] of fullWeights)
      if (n.includes("lora_B"))
        assert.ok(
          w.some((x) => x !== 0),
          `${n} moved from its zero init`,
        );
  });

  test("killed after the step-6 checkpoint, resumed in a fresh setup → identical losses and weights", () => {
    const first = setup();
    const before = runTrainer(first, root, KILL_AT);
    assert.equal(first.trainer.step, KILL_AT);
    for (let s = 1; s <= KILL_AT; s++) assert.equal(before.get(s), fullLosses.get(s), `step ${s}`);

    const dir = latestCheckpoint(root);
    assert.equal(dir, join(root, `checkpoint-${KILL_AT}`));
    const resumed = resumeFrom(dir!);
    assert.equal(resumed.trainer.step, KILL_AT);
    const after = runTrainer(resumed, root);
    assert.deepEqual([...after.keys()], [7, 8, 9, 10, 11, 12]);
    for (const [s, l] of after)
      assert.equal(l, fullLosses.get(s), `step ${s}: resumed ${l} vs ${fullLosses.get(s)}`);
    // the loss history carried in the checkpoint is the uninterrupted run's
    assert.deepEqual(
      resumed.trainer.losses.map((l) => l.loss),
      [...fullLosses.values()],
    );
    const w = adapterBytes(resumed);
    for (const [n, want] of fullWeights) assert.deepEqual(w.get(n), want, n);
  });

  test("the RNG state matters: resuming without it changes the losses (the test above has teeth)", () => {
    const resumed = resumeFrom(join(root, `checkpoint-${KILL_AT}`), { restoreRng: false });
    const after = runTrainer(resumed, null);
    assert.notEqual(after.get(KILL_AT + 1), fullLosses.get(KILL_AT + 1));
  });

  test("an interrupted save is never picked up, and a partial checkpoint is refused with a clear error", () => {
    const good = join(root, `checkpoint-${KILL_AT}`);
    // 1. The process died while writing into its temporary folder (before the rename).
    const tmpDir = join(root, ".tmp-checkpoint-15-4242");
    mkdirSync(tmpDir);
    cpSync(join(good, "trainable.safetensors"), join(tmpDir, "trainable.safetensors"));
    // 2. A checkpoint folder without trainer_state.json (what the old layout could leave).
    const noState = join(root, "checkpoint-18");
    cpSync(good, noState, { recursive: true });
    rmSync(join(noState, "trainer_state.json"));
    assert.equal(latestCheckpoint(root), join(root, "checkpoint-12"), "the resumed run's last checkpoint");
    for (const s of [9, 12]) rmSync(join(root, `checkpoint-${s}`), { recursive: true });
    assert.equal(latestCheckpoint(root), good);
    assert.throws(
      () => loadCheckpoint(noState),
      (e: unknown) =>
        e instanceof CheckpointError &&
        /checkpoint-18: not a lorakit checkpoint \(no trainer_state\.json\)/.test(e.message),
    );
    assert.throws(() => loadCheckpoint(tmpDir), CheckpointError);
    // 3. A truncated state file or tensor file fails loudly rather than loading wrong values.
    const badJson = join(root, "checkpoint-20");
    cpSync(good, badJson, { recursive: true });
    const state = readFileSync(join(badJson, "trainer_state.json"), "utf8");
    writeFileSync(join(badJson, "trainer_state.json"), state.slice(0, state.length >> 1));
    assert.throws(
      () => loadCheckpoint(badJson),
      (e: unknown) => e instanceof CheckpointError && /trainer_state\.json: unreadable/.test(e.message),
    );
    const badTensors = join(root, "checkpoint-21");
    cpSync(good, badTensors, { recursive: true });
    const st = join(badTensors, "trainable.safetensors");
    truncateSync(st, readFileSync(st).length - 8);
    assert.throws(() => loadCheckpoint(badTensors));
    // the complete checkpoint still loads and resumes
    assert.equal(loadCheckpoint(good).state.step, KILL_AT);
  });
});

describe("non-finite training stops with a TrainingError naming the step", () => {
  test("absurd learning rate", (t) => {
    const s = setup({ lr: 1e30, checkpointEvery: 0 });
    let last = 0;
    let message = "";
    assert.throws(
      () => {
        for (const ev of s.trainer.run()) if (ev.type === "step") last = ev.step;
      },
      (e: unknown) => {
        assert.ok(e instanceof TrainingError, String(e));
        const m = /at step (\d+)/.exec(e.message);
        assert.ok(m, e.message);
        assert.equal(Number(m[1]), last + 1, e.message);
        assert.ok(last >= 1, "the first step (lr 0 in warm-up) is fine");
        message = e.message;
        return true;
      },
    );
    t.diagnostic(message);
  });

  test("a poisoned adapter weight", () => {
    const s = setup({ checkpointEvery: 0 });
    const [name, a] = [...s.live].find(([n]) => n.includes("lora_A"))!;
    assert.ok(name);
    (a.data as Float32Array)[3] = Number.NaN;
    assert.throws(
      () => {
        for (const _ev of s.trainer.run()) {
          // run until it throws
        }
      },
      (e: unknown) =>
        e instanceof TrainingError && /the loss is NaN at step 1 \(micro-batch 1\)/.test(e.message),
    );
  });

  test("a non-finite gradient with a finite loss", () => {
    const s = setup({ checkpointEvery: 0 });
    const [name, b] = [...s.live].find(([n]) => n.includes("lora_B"))!;
    const g = new Float32Array(b.size);
    g[0] = Number.POSITIVE_INFINITY;
    b.grad = fromArray(g, b.shape); // backward accumulates into it
    assert.throws(
      () => {
        for (const _ev of s.trainer.run()) {
          // run until it throws
        }
      },
      (e: unknown) =>
        e instanceof TrainingError &&
        e.message === `the gradient norm is Infinity at step 1; first non-finite gradient: ${name}`,
    );
  });
});

describe("CLI: train --checkpoint-every, then --resume", () => {
  const modelDir = join(tmp, "base");
  saveModel(tinyModel(11, { vocab_size: tok.vocabSize }), modelDir);
  saveTokenizer(modelDir, trained);
  const data = join(tmp, "data.txt");
  writeFileSync(data, CORPUS.repeat(2));

  function cli(out: string, ...extra: string[]): Record<string, unknown> {
    const stdout = execFileSync(
      process.execPath,
      [
        CLI,
        "train",
        "--model",
        modelDir,
        "--data",
        data,
        "--out",
        out,
        "--seq-len",
        String(SEQ),
        "--batch-size",
        "2",
        "--r",
        "4",
        "--lora-alpha",
        "8",
        "--lr",
        "1e-2",
        "--lora-dropout",
        "0.1",
        "--json",
        ...extra,
      ],
      {
        encoding: "utf8",
        env: { ...process.env, LORAKIT_BACKEND: "ref" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    assert.equal(stdout.trim().split("\n").length, 1, `stdout is one line: ${stdout}`);
    const o = JSON.parse(stdout) as Record<string, unknown>;
    assert.ok(o !== null && typeof o === "object" && !Array.isArray(o));
    for (const k of ["steps", "final_loss", "tokens_per_second"]) assert.equal(typeof o[k], "number", k);
    return o;
  }
  /** loss.csv's step, loss, lr columns. */
  const rows = (s: string) => s.split("\n").map((l) => l.split(",").slice(0, 3).join(","));

  test("--steps 4 --checkpoint-every 2, then --resume true --steps 6 = one --steps 6 run (constant lr)", () => {
    // A decaying schedule depends on --steps, so 4-then-6 equals one 6-step run only with a
    // constant one; the cosine case is the next test (and the library test above).
    const one = cli(join(tmp, "one"), "--steps", "6", "--schedule", "constant");
    const split = join(tmp, "split");
    const a = cli(split, "--steps", "4", "--checkpoint-every", "2", "--schedule", "constant");
    assert.equal(a.steps, 4);
    assert.ok(existsSync(join(split, "checkpoints", "checkpoint-4", "trainer_state.json")));
    const b = cli(split, "--steps", "6", "--schedule", "constant", "--resume", "true");
    assert.equal(b.steps, 6);
    assert.equal(b.resumed_from, join(split, "checkpoints", "checkpoint-4"));
    assert.equal(one.steps, 6);
    assert.equal(b.final_loss, one.final_loss);
    assert.deepEqual(
      rows(readFileSync(join(split, "loss.csv"), "utf8")),
      rows(readFileSync(join(tmp, "one", "loss.csv"), "utf8")),
    );
  });

  test("cosine schedule: killed after checkpoint-4 of a 6-step run, --resume true ends identically", () => {
    const out = join(tmp, "cos");
    const ref = cli(out, "--steps", "6", "--checkpoint-every", "2", "--warmup-steps", "1");
    const csv = readFileSync(join(out, "loss.csv"), "utf8");
    rmSync(join(out, "checkpoints", "checkpoint-6"), { recursive: true }); // died before saving it
    const again = cli(
      out,
      "--steps",
      "6",
      "--checkpoint-every",
      "2",
      "--warmup-steps",
      "1",
      "--resume",
      "true",
    );
    assert.equal(again.resumed_from, join(out, "checkpoints", "checkpoint-4"));
    assert.equal(again.final_loss, ref.final_loss);
    assert.deepEqual(rows(readFileSync(join(out, "loss.csv"), "utf8")), rows(csv));
  });

  test("AdaLoRA: killed after checkpoint-4 of an 8-step run, --resume true ends identically (allocator state restored)", () => {
    const out = join(tmp, "ada");
    const args = [
      "--steps",
      "8",
      "--checkpoint-every",
      "4",
      "--method",
      "adalora",
      "--init-r",
      "6",
      "--target-r",
      "2",
      "--tinit",
      "1",
      "--tfinal",
      "2",
      "--delta-t",
      "1",
      "--lr",
      "3e-2",
    ];
    const ref = cli(out, ...args);
    const csv = readFileSync(join(out, "loss.csv"), "utf8");
    rmSync(join(out, "checkpoints", "checkpoint-8"), { recursive: true });
    const again = cli(out, ...args, "--resume", "true");
    assert.equal(again.resumed_from, join(out, "checkpoints", "checkpoint-4"));
    assert.equal(again.final_loss, ref.final_loss);
    assert.deepEqual(rows(readFileSync(join(out, "loss.csv"), "utf8")), rows(csv));
    assert.deepEqual(again.final_ranks, ref.final_ranks);
  });
});
