// The browser example in a real browser: headless Chromium (Debian's, driven by
// playwright-core; no browser is downloaded) opens examples/browser/, loads the demo model,
// trains a LoRA for 20 steps in the page's Worker on the WebAssembly kernels, and downloads
// the adapter; Node then loads that adapter onto the same base model and must get the eval
// loss the page reported.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Browser, chromium, type Page } from "playwright-core";
import { DEMO_TASK_YEARS } from "../../src/cli/demo/task.js";
import { sotuText } from "../../src/data/corpora.js";
import { loadModel } from "../../src/models/node/load.js";
import { fromPretrained } from "../../src/peft/node/io.js";
import { loadTokenizer } from "../../src/tokenizer/node.js";
import { evalBatches, padIdFor, prepareSplits, textDataset } from "../../src/train/data.js";
import { evaluateBatches } from "../../src/train/trainer.js";
import { repoRoot } from "../util/repo.js";
import {
  CHROMIUM,
  chromiumArgs,
  chromiumMissing,
  type ExampleServer,
  startExampleServer,
} from "./example-server.js";

const skip = chromiumMissing() ?? false;
const STEPS = 20;
const SEQ_LEN = 128;
const BATCH = 8;
/** Two addresses (~80 K characters): enough for 20 steps and a held-out set, quick to tokenize. */
const TEXT = sotuText({ years: [2020, 2021] });
/** The page's fixed recipe (app.js RECIPE). */
const VALID_FRACTION = 0.03;
const SEED = 0;

describe("the browser example in headless Chromium", { skip, timeout: 600_000 }, () => {
  let server: ExampleServer;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), "lorakit-page-"));

  before(async () => {
    server = await startExampleServer();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: chromiumArgs() });
    page = await browser.newPage();
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(server.url);
    await page.waitForSelector("html[data-ready=true]");
  });
  after(async () => {
    await browser?.close();
    server?.close();
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  });

  const text = (sel: string) => page.textContent(sel).then((t) => t ?? "");
  const value = async (sel: string) => Number(await page.getAttribute(sel, "data-value"));

  it("is cross-origin isolated (so WebAssembly threads get SharedArrayBuffer)", async () => {
    assert.equal(await page.evaluate(() => crossOriginIsolated), true);
  });

  it("loads the demo model, trains 20 steps off the main thread, and the loss falls", async () => {
    await page.click("#load-demo");
    await page.waitForSelector('#model-status[data-state="ready"]');
    // The page's State of the Union button gives the text `npm start` trains on.
    await page.click("#load-sotu");
    await page.waitForFunction(() => /characters/.test(document.getElementById("text-status")!.textContent!));
    assert.ok(
      (await page.inputValue("#text")) === sotuText({ years: [...DEMO_TASK_YEARS] }),
      "the demo's text",
    );
    await page.fill("#text", TEXT);
    await page.fill("#steps", String(STEPS));
    await page.fill("#batch", String(BATCH));
    await page.fill("#seq", String(SEQ_LEN));
    await page.selectOption("#backend", "wasm");
    await page.click("#train");
    await page.waitForFunction(
      () => ["done", "error"].includes(document.getElementById("train-status")!.dataset.state!),
      null,
      { timeout: 500_000 },
    );
    assert.equal(await text("#error"), "", "the page shows no error");
    assert.deepEqual(pageErrors, []);
    const status = await text("#train-status");
    const done = new RegExp(
      `^Done after ${STEPS} steps, [\\d,]+ tokens/s on the WebAssembly kernels \\((\\d+) threads?\\)\\.$`,
    );
    const m = done.exec(status);
    assert.ok(m, status);
    // Threaded: the page is cross-origin isolated and the kernels run in its Worker.
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    assert.equal(Number(m[1]), Math.min(cores, 8), status);
    const losses = await page.$$eval("#loss-table tr", (rows) =>
      rows.map((r) => Number((r as HTMLElement).dataset.loss)),
    );
    assert.equal(losses.length, STEPS);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(mean(losses.slice(-5)) < mean(losses.slice(0, 5)), `training loss fell: ${losses.join(", ")}`);
    const before = await value("#eval-before");
    const afterTraining = await value("#eval-after");
    assert.ok(afterTraining < before, `eval loss fell: ${before} → ${afterTraining}`);
    assert.ok((await value("#tps")) > 0);
    const prompt = await page.inputValue("#prompt");
    assert.ok((await text("#gen-before")).startsWith(prompt));
    assert.ok((await text("#gen-after")).startsWith(prompt));
  });

  it("downloads the adapter as PEFT files, and Node gets the page's eval losses from them (1e-4)", async () => {
    for (const [button, name] of [
      ["#dl-config", "adapter_config.json"],
      ["#dl-weights", "adapter_model.safetensors"],
    ]) {
      const [download] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
      assert.equal(download.suggestedFilename(), name);
      await download.saveAs(join(dir, name));
    }
    const config = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
    assert.equal(config.peft_type, "LORA");
    assert.equal(config.r, Number(await page.inputValue("#r")));
    assert.equal(config.lora_alpha, Number(await page.inputValue("#alpha")));
    assert.deepEqual(config.target_modules, [
      "down_proj",
      "gate_proj",
      "k_proj",
      "o_proj",
      "q_proj",
      "up_proj",
      "v_proj",
    ]);

    // The page's held-out set, rebuilt in Node from the same text and recipe.
    const base = join(repoRoot(), "models", "demo-base");
    const tokenizer = loadTokenizer(base);
    const data = textDataset(TEXT, tokenizer, { seqLen: SEQ_LEN });
    const { valid } = prepareSplits(data, { seqLen: SEQ_LEN, validFraction: VALID_FRACTION, seed: SEED });
    const batches = evalBatches(valid, { batchSize: BATCH, seqLen: SEQ_LEN, padId: padIdFor(tokenizer) });
    const { model } = loadModel(base);
    const baseLoss = evaluateBatches(model, batches).loss;
    const peft = fromPretrained(model, dir);
    const adaptedLoss = evaluateBatches(peft, batches).loss;

    const pageBefore = await value("#eval-before");
    const pageAfter = await value("#eval-after");
    assert.ok(Math.abs(baseLoss - pageBefore) <= 1e-4, `base model: Node ${baseLoss} vs page ${pageBefore}`);
    assert.ok(
      Math.abs(adaptedLoss - pageAfter) <= 1e-4,
      `with the adapter: Node ${adaptedLoss} vs page ${pageAfter}`,
    );
    assert.ok(
      adaptedLoss < baseLoss - 1e-3,
      `the downloaded adapter changes the model: ${baseLoss} → ${adaptedLoss}`,
    );
  });

  it("stops a run when Stop is pressed, and still offers what it trained", async () => {
    await page.fill("#steps", "100000");
    await page.click("#train");
    await page.waitForFunction(() => document.querySelectorAll("#loss-table tr").length >= 2, null, {
      timeout: 120_000,
    });
    await page.click("#stop");
    await page.waitForFunction(
      () => ["done", "error"].includes(document.getElementById("train-status")!.dataset.state!),
      null,
      { timeout: 120_000 },
    );
    const status = await text("#train-status");
    const m = /^Stopped after (\d+) steps/.exec(status);
    assert.ok(m, status);
    assert.ok(Number(m[1]) >= 2 && Number(m[1]) < 100_000, status);
    assert.equal(await page.isDisabled("#dl-weights"), false);
  });

  it("loads a model folder from the user's files or folder, and says in the page what a folder lacks", async () => {
    const base = join(repoRoot(), "models", "demo-base");
    const files = ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"];
    await page.setInputFiles(
      "#model-files",
      files.filter((f) => f !== "tokenizer.json").map((f) => join(base, f)),
    );
    await page.waitForSelector("#error:not([hidden])");
    assert.match(await text("#error"), /no tokenizer\.json in the selected files/);
    assert.equal(await text("#model-status"), "No model loaded.");
    assert.equal(await page.isDisabled("#train"), true);
    await page.setInputFiles(
      "#model-files",
      files.map((f) => join(base, f)),
    );
    await page.waitForSelector('#model-status[data-state="ready"]');
    assert.match(
      await text("#model-status"),
      /^Loaded the chosen files: llama, 4 layers, hidden size 128, vocabulary 1024/,
    );
    assert.equal(await page.isHidden("#error"), true);
    // The folder picker: a whole folder, named by its folder.
    await page.setInputFiles("#model-folder", base);
    await page.waitForSelector('#model-status[data-state="ready"]');
    assert.match(await text("#model-status"), /^Loaded demo-base: llama, 4 layers/);
  });
});
