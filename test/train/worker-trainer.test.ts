// Training off the main thread: a WorkerTrainer driving runTrainerWorker in a worker_threads
// Worker trains the demo model to exactly the losses and adapter bytes of an in-process
// Trainer run with the same seed; cancel stops between steps and leaves the partial adapter
// (equal to an in-process run of that many steps); the worker's errors reject with their
// message; and malformed messages are refused on both sides.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import { bytesFolderSource } from "../../src/io/folder-source.js";
import { generate } from "../../src/models/generate.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { loadModelFromSource } from "../../src/models/load-folder.js";
import { AdamW, constantScheduleWithWarmup, LrScheduler } from "../../src/optim/index.js";
import { adapterFiles } from "../../src/peft/adapter-folder.js";
import { getPeftModel } from "../../src/peft/model.js";
import type { Tokenizer } from "../../src/tokenizer/tokenizer.js";
import { Batcher, padIdFor, prepareSplits, recordsDataset, textDataset } from "../../src/train/data.js";
import { Trainer } from "../../src/train/trainer.js";
import { WorkerTrainer } from "../../src/train/worker/client.js";
import { runTrainerWorker, type WorkerPortLike } from "../../src/train/worker/handler.js";
import type { WorkerProgress } from "../../src/train/worker/protocol.js";
import { PROTOCOL, WorkerError, WorkerProtocolError } from "../../src/train/worker/protocol.js";
import { repoRoot } from "../util/repo.js";

const DEMO = join(repoRoot(), "models", "demo-base");
const FILES: Record<string, Uint8Array> = {};
for (const f of readdirSync(DEMO)) FILES[f] = new Uint8Array(readFileSync(join(DEMO, f)));

const TEXT =
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, " +
  "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery " +
  "part of the world. It is a way I have of driving off the spleen and regulating the circulation. ".repeat(
    3,
  );
const SETTINGS = { r: 4, loraAlpha: 8, lr: 2e-3, batchSize: 2, seqLen: 32, seed: 3 };

/** A worker_threads Worker as the Worker-like port WorkerTrainer takes. */
function startWorker(): WorkerTrainer {
  const w = new Worker(new URL("./worker-entry.js", import.meta.url));
  const port: WorkerPortLike & { terminate(): void } = {
    postMessage: (msg) => w.postMessage(msg),
    addEventListener: (type: string, listener: (ev: { data: unknown }) => void) => {
      if (type === "message") w.on("message", (data) => listener({ data }));
      else if (type === "error")
        w.on("error", (e) => (listener as (ev: unknown) => void)({ message: e.message }));
    },
    terminate: () => void w.terminate(),
  };
  return new WorkerTrainer(port);
}

/** Chat and completion records, as a JSONL text. */
const RECORDS = [
  {
    messages: [
      { role: "user", content: "Who calls?" },
      { role: "assistant", content: "Call me Ishmael." },
    ],
  },
  { prompt: "Some years ago,", completion: " never mind how long precisely." },
  {
    messages: [
      { role: "user", content: "Where to?" },
      { role: "assistant", content: "The watery part of the world." },
    ],
  },
]
  .map((r) => JSON.stringify(r))
  .join("\n");

/**
 * The same run in this thread, built by hand: steps with a constant learning rate, on TEXT or,
 * given, on records (packed).
 */
async function inProcess(steps: number, records?: string) {
  const { model, tokenizer } = await loadModelFromSource(bytesFolderSource(FILES, "demo-base"));
  const tok = tokenizer as Tokenizer;
  const ds = records
    ? recordsDataset(records, tok, { seqLen: SETTINGS.seqLen })
    : textDataset(TEXT, tok, { seqLen: SETTINGS.seqLen });
  const { train } = prepareSplits(ds, {
    seqLen: SETTINGS.seqLen,
    validFraction: 0,
    seed: SETTINGS.seed,
    pack: records !== undefined,
  });
  const peft = getPeftModel(
    model,
    { r: SETTINGS.r, loraAlpha: SETTINGS.loraAlpha, loraDropout: 0, targetModules: ["q_proj", "v_proj"] },
    "default",
    { seed: SETTINGS.seed },
  );
  const params = [...peft.namedParameters()].filter(([, p]) => p.requiresGrad).map(([, p]) => p);
  const opt = new AdamW(params, { lr: SETTINGS.lr, weightDecay: 0 });
  const sched = new LrScheduler(opt, constantScheduleWithWarmup());
  const batcher = new Batcher(train, {
    batchSize: SETTINGS.batchSize,
    seqLen: SETTINGS.seqLen,
    seed: SETTINGS.seed,
    padId: padIdFor(tok),
  });
  const trainer = new Trainer(peft, batcher, opt, sched, { steps, rng: peft.rng });
  for (const _ of trainer.run());
  return { trainer, peft, model: model as LlamaForCausalLM, tok };
}

const trainers: WorkerTrainer[] = [];
after(() => {
  for (const t of trainers) t.dispose();
});

describe("WorkerTrainer over worker_threads", () => {
  test("trains to the in-process Trainer's losses and adapter bytes; generates as in-process", async () => {
    const wt = startWorker();
    trainers.push(wt);
    const info = await wt.load({ bytes: FILES, label: "demo-base" });
    assert.equal(info.backend, "ref");
    assert.deepEqual(info.kernels, { name: "ref", threads: null, notice: null });
    assert.equal(info.source, "demo-base");
    const events: WorkerProgress[] = [];
    wt.on("progress", (e) => events.push(e));
    const steps = 4;
    const result = await wt.train({ text: TEXT, steps, ...SETTINGS, evalFraction: 0, schedule: "constant" });
    const ref = await inProcess(steps);
    assert.equal(result.cancelled, false);
    assert.equal(result.steps, steps);
    assert.deepEqual(result.losses, ref.trainer.losses);
    const stepLosses = events.flatMap((e) => (e.type === "step" ? [e.loss] : []));
    assert.deepEqual(
      stepLosses,
      ref.trainer.losses.map((l) => l.loss),
    );
    assert.ok(events.some((e) => e.type === "start"));

    const files = await wt.adapterFiles();
    const want = adapterFiles(ref.peft, { baseModelNameOrPath: "demo-base" });
    assert.equal(files["adapter_config.json"], want["adapter_config.json"]);
    assert.deepEqual(files["adapter_model.safetensors"], want["adapter_model.safetensors"]);

    const prompt = "Call me";
    const ids = ref.tok.encode(prompt);
    const gen = await wt.generate(prompt, { maxNewTokens: 6 });
    assert.deepEqual(gen.tokens, generate(ref.model, ids, { maxNewTokens: 6 }));
    assert.equal(gen.text, ref.tok.decode(gen.tokens));
    const base = await wt.generate(prompt, { maxNewTokens: 6, adapter: false });
    assert.deepEqual(
      base.tokens,
      ref.peft.withAdaptersDisabled(() => generate(ref.model, ids, { maxNewTokens: 6 })),
    );
    const ev = await wt.evaluate(TEXT, { seqLen: 32 });
    assert.ok(Number.isFinite(ev.loss) && ev.tokens > 0);
  });

  test("trains on chat and completion records (answers only, packed) as recordsDataset does in-process", async () => {
    const wt = startWorker();
    trainers.push(wt);
    await wt.load({ bytes: FILES });
    const steps = 3;
    const result = await wt.train({
      records: RECORDS,
      pack: true,
      steps,
      ...SETTINGS,
      evalFraction: 0,
      schedule: "constant",
    });
    const ref = await inProcess(steps, RECORDS);
    assert.deepEqual(result.losses, ref.trainer.losses);
    const files = await wt.adapterFiles();
    assert.deepEqual(files["adapter_model.safetensors"], adapterFiles(ref.peft)["adapter_model.safetensors"]);
    // Parsed records are the same data as their JSONL text.
    const parsed = RECORDS.split("\n").map((l) => JSON.parse(l));
    const again = await wt.train({
      records: parsed,
      pack: true,
      steps,
      ...SETTINGS,
      evalFraction: 0,
      schedule: "constant",
    });
    assert.deepEqual(again.losses, result.losses);
    await assert.rejects(wt.train({ records: "{nope", steps: 1 }), (e: Error) => {
      assert.equal(e.name, "DataError");
      assert.match(e.message, /the training records/);
      return true;
    });
    await assert.rejects(wt.train({ text: TEXT, records: RECORDS, steps: 1 }), {
      name: "WorkerProtocolError",
      message: /give exactly one of "text" \(a plain text\) and "records"/,
    });
    await assert.rejects(wt.train({ text: TEXT, pack: true, steps: 1 }), {
      name: "WorkerProtocolError",
      message: /"pack" applies to "records", not to a plain "text"/,
    });
    await assert.rejects(wt.train({ records: RECORDS, format: "sharegpt" as "chat", steps: 1 }), {
      name: "WorkerProtocolError",
      message: /"format" must be auto, text, completion, alpaca, chat/,
    });
  });

  test("cancel stops between steps; the partial adapter equals an in-process run of that many steps", async () => {
    const wt = startWorker();
    trainers.push(wt);
    await wt.load({ bytes: FILES });
    let asked = false;
    wt.on("progress", (e) => {
      if (e.type === "step" && e.step === 2 && !asked) {
        asked = true;
        void wt.cancel();
      }
    });
    const total = 500;
    const result = await wt.train({
      text: TEXT,
      steps: total,
      ...SETTINGS,
      evalFraction: 0,
      schedule: "constant",
    });
    assert.equal(result.cancelled, true);
    assert.ok(result.steps >= 2 && result.steps < total, `stopped at ${result.steps}`);
    assert.equal(result.losses.length, result.steps);
    const files = await wt.adapterFiles();
    const ref = await inProcess(result.steps);
    assert.deepEqual(result.losses, ref.trainer.losses);
    assert.deepEqual(files["adapter_model.safetensors"], adapterFiles(ref.peft)["adapter_model.safetensors"]);
    // The worker takes requests again, and a new run is not stopped by the old cancel.
    const again = await wt.train({ text: TEXT, steps: 2, ...SETTINGS, evalFraction: 0.2 });
    assert.equal(again.cancelled, false);
    assert.equal(again.steps, 2);
    assert.ok(again.evalLossBefore !== null && again.evalLossAfter !== null);
  });

  test("the worker's errors reject with their message and class name", async () => {
    const wt = startWorker();
    trainers.push(wt);
    await assert.rejects(wt.train({ text: TEXT, steps: 2 }), (e: Error) => {
      assert.ok(e instanceof WorkerError);
      assert.equal(e.name, "TrainingError");
      assert.match(e.message, /no model loaded yet: call load\(\) first/);
      return true;
    });
    await assert.rejects(wt.load({ bytes: { "config.json": "{nope" }, label: "broken" }), {
      message: "broken/config.json: not valid JSON",
    });
    await wt.load({ bytes: FILES });
    await assert.rejects(wt.train({ text: TEXT, steps: 0 }), {
      name: "WorkerProtocolError",
      message: 'trainer worker: train request: "steps" must be a positive integer, got 0',
    });
    await assert.rejects(wt.train({ text: TEXT, steps: 2, targetModules: ["no_such_proj"] }), (e: Error) => {
      assert.equal(e.name, "PeftError");
      return true;
    });
    await assert.rejects(wt.adapterFiles(), /no adapter yet: call train\(\) first/);
    wt.dispose();
    await assert.rejects(wt.generate("x"), /WorkerTrainer was disposed/);
  });
});

describe("the trainer protocol refuses malformed messages", () => {
  /** Two in-process ends joined directly: what one posts, the other receives. */
  function pair() {
    const a: { fn?: (ev: { data: unknown }) => void } = {};
    const b: { fn?: (ev: { data: unknown }) => void } = {};
    const left: WorkerPortLike = {
      postMessage: (m) => queueMicrotask(() => b.fn?.({ data: structuredClone(m) })),
      addEventListener: (t, fn) => {
        if (t === "message") a.fn = fn;
      },
    };
    const right: WorkerPortLike = {
      postMessage: (m) => queueMicrotask(() => a.fn?.({ data: structuredClone(m) })),
      addEventListener: (t, fn) => {
        if (t === "message") b.fn = fn;
      },
    };
    return { left, right };
  }

  test("the worker answers a bad request with an error naming the field", async () => {
    const { left, right } = pair();
    runTrainerWorker(right);
    const replies: unknown[] = [];
    left.addEventListener?.("message", (ev) => replies.push(ev.data));
    left.postMessage({ protocol: PROTOCOL, id: 7, request: { kind: "fly" } });
    left.postMessage({ protocol: PROTOCOL, id: "x", request: { kind: "cancel" } });
    left.postMessage({ hello: "not ours" });
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(replies, [
      {
        protocol: PROTOCOL,
        id: 7,
        type: "error",
        error: {
          name: "WorkerProtocolError",
          message:
            'trainer worker: request: "kind" must be one of load, train, cancel, generate, evaluate, adapterFiles, got "fly"',
        },
      },
      {
        protocol: PROTOCOL,
        id: null,
        type: "error",
        error: {
          name: "WorkerProtocolError",
          message: 'trainer worker: request: "id" must be an integer, got "x"',
        },
      },
    ]);
  });

  test("the backend hook runs once, before the first request; its failure is that request's error", async () => {
    let calls = 0;
    const ok = pair();
    runTrainerWorker(ok.right, {
      backend: async () => {
        calls++;
        return { threads: 3, notice: "not cross-origin isolated: 1 thread" };
      },
    });
    const client = new WorkerTrainer(ok.left);
    await assert.rejects(client.adapterFiles(), /no adapter yet/);
    await assert.rejects(client.generate("x"), /no model loaded yet/);
    const info = await client.load({ bytes: FILES });
    assert.deepEqual(info.kernels, {
      name: "ref",
      threads: 3,
      notice: "not cross-origin isolated: 1 thread",
    });
    assert.equal(calls, 1);

    const bad = pair();
    runTrainerWorker(bad.right, {
      backend: () => {
        throw new Error("WebAssembly threads are not available here");
      },
    });
    const failing = new WorkerTrainer(bad.left);
    await assert.rejects(failing.load({ bytes: FILES }), {
      name: "Error",
      message: "WebAssembly threads are not available here",
    });
  });

  test("the client rejects pending calls on a reply it cannot read", async () => {
    const { left, right } = pair();
    const client = new WorkerTrainer(left);
    right.addEventListener?.("message", () =>
      right.postMessage({ protocol: PROTOCOL, id: 1, type: "bogus" }),
    );
    await assert.rejects(client.adapterFiles(), (e: Error) => {
      assert.ok(e instanceof WorkerProtocolError);
      assert.equal(e.message, 'trainer worker: reply: "type" must be result, progress or error, got "bogus"');
      return true;
    });
  });
});
