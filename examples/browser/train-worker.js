// The page's training Worker: the model, the tokenizer and the LoRA live here, so a training
// step never blocks the page. The page sends the model's files (bytes), the text and the
// settings; this posts back progress per step, the eval losses, the generations before and
// after, and the adapter as PEFT files.
//
// Messages in:  { type: "train", files: { [name]: ArrayBuffer }, text, settings }
//               { type: "cancel" }
// Messages out: { type: "status", text } | { type: "start", ... } | { type: "step", ... }
//               { type: "done", ... } | { type: "error", message }
import {
  AdamW,
  adapterStateDict,
  Batcher,
  evalBatches,
  evaluateBatches,
  generate,
  getPeftModel,
  LlamaForCausalLM,
  LrScheduler,
  loadStateDict,
  loadWasmBackend,
  loraConfigToJson,
  padIdFor,
  parseLlamaConfig,
  parseSafetensors,
  prepareSplits,
  scheduleByName,
  serializeSafetensors,
  setBackend,
  Tokenizer,
  Trainer,
  textDataset,
} from "lorakit";
import { refBackend } from "../../dist/src/kernels/ref/index.js";

let cancelled = false;
/** The loaded WebAssembly backend (the page starts a new Worker, so new threads, per run). */
let wasm = null;

self.onmessage = (e) => {
  const msg = e.data;
  if (msg.type === "cancel") cancelled = true;
  else if (msg.type === "train") {
    cancelled = false;
    train(msg).catch((err) => {
      console.error(err);
      self.postMessage({ type: "error", message: err instanceof Error ? err.message : String(err) });
    });
  }
};

const status = (text) => self.postMessage({ type: "status", text });

/** The kernels for a run: lorakit's WebAssembly kernels (threaded here, in a Worker of a cross-origin isolated page) or the TypeScript reference. */
async function useBackend(name, threads) {
  if (name === "ref") {
    setBackend(refBackend);
    return { name: "ref", threads: 1, notice: null };
  }
  wasm ??= await loadWasmBackend({ install: false, threads });
  setBackend(wasm.backend);
  return { name: "wasm", threads: wasm.threads, notice: wasm.notice };
}

/** A TensorSource over one safetensors file, or over the shards a model.safetensors.index.json names. */
function checkpointSource(files) {
  const views = new Map();
  if (files["model.safetensors.index.json"]) {
    const index = JSON.parse(new TextDecoder().decode(files["model.safetensors.index.json"]));
    for (const [tensor, shard] of Object.entries(index.weight_map ?? {})) {
      if (!files[shard]) throw new Error(`the shard index names ${shard}, which was not given`);
      if (!views.has(shard)) views.set(shard, parseSafetensors(new Uint8Array(files[shard])));
      views.set(`#${tensor}`, views.get(shard));
    }
  } else if (files["model.safetensors"]) {
    const v = parseSafetensors(new Uint8Array(files["model.safetensors"]));
    for (const n of v.names()) views.set(`#${n}`, v);
  } else throw new Error("no model.safetensors or model.safetensors.index.json among the model's files");
  const view = (n) => views.get(`#${n}`);
  return {
    names: () => [...views.keys()].filter((k) => k.startsWith("#")).map((k) => k.slice(1)),
    has: (n) => view(n) !== undefined,
    shape: (n) => view(n).info(n).shape,
    tensor: (n, o) => view(n).tensor(n, o),
    dtypeOf: (n) => view(n).info(n).dtype,
  };
}

/** The base model, frozen: config → modules from placeholders → weights → tied embeddings. */
function loadModel(files) {
  const text = (name) => (files[name] ? new TextDecoder().decode(files[name]) : null);
  if (!files["config.json"]) throw new Error("no config.json among the model's files");
  const config = parseLlamaConfig(JSON.parse(text("config.json")));
  if (!files["tokenizer.json"]) throw new Error("no tokenizer.json among the model's files");
  const tokenizer = Tokenizer.fromJSON(text("tokenizer.json"), text("tokenizer_config.json") ?? "{}");
  const src = checkpointSource(files);
  const model = new LlamaForCausalLM(config, { meta: true });
  // A bf16 checkpoint keeps its weight matrices in bf16 (as the Node loader's "auto").
  const isMatrix = (p) =>
    p.endsWith("_proj.weight") || p === "lm_head.weight" || p.endsWith("embed_tokens.weight");
  const report = loadStateDict(model, src, {
    dtypeFor: (p) => (isMatrix(p) && src.dtypeOf(p) === "BF16" ? "bf16" : "f32"),
    ignoreMissing: (p) => p === "lm_head.weight" && config.tieWordEmbeddings,
    ignoreUnexpected: (n) =>
      n.endsWith("rotary_emb.inv_freq") || (n === "lm_head.weight" && config.tieWordEmbeddings),
  });
  model.tieWeights();
  for (const [path, p] of model.namedParameters()) {
    if (p.isMeta) throw new Error(`${path} was not loaded (no tensor of that name in the checkpoint)`);
    p.requiresGrad = false;
  }
  return { model, tokenizer, report };
}

function sample(model, tokenizer, prompt) {
  const ids = generate(model, tokenizer.encode(prompt), {
    maxNewTokens: 48,
    temperature: 0.8,
    topK: 40,
    seed: 1,
  });
  return prompt + tokenizer.decode(ids);
}

/** adapter_config.json text and adapter_model.safetensors bytes, as PEFT's save_pretrained writes them. */
function adapterFiles(peft, baseModelNameOrPath) {
  const cfg = peft.peftConfig.get("default");
  const targets = [...new Set((peft.targetsOf.get("default") ?? []).map((p) => p.split(".").pop()))].sort();
  const json = loraConfigToJson(cfg, { inferenceMode: true, baseModelNameOrPath, targetModules: targets });
  const weights = serializeSafetensors(adapterStateDict(peft, "default"), { format: "pt" });
  return { config: JSON.stringify(json, null, 2), weights };
}

async function train({ files, text, settings: s }) {
  status("loading the kernels");
  const kernels = await useBackend(s.backend, s.threads);
  status("loading the model");
  const { model, tokenizer } = loadModel(files);
  status("tokenizing the text");
  const data = textDataset(text, tokenizer, { seqLen: s.seqLen, source: "the page's text" });
  const { train, valid } = prepareSplits(data, {
    seqLen: s.seqLen,
    validFraction: s.validFraction,
    seed: s.seed,
  });
  const padId = padIdFor(tokenizer);
  const peft = getPeftModel(
    model,
    { r: s.r, loraAlpha: s.loraAlpha, targetModules: "all-linear" },
    "default",
    {
      seed: s.seed,
    },
  );
  const named = [...peft.namedParameters()].filter(([, p]) => p.requiresGrad);
  const opt = new AdamW(
    named.map(([, p]) => p),
    { lr: s.lr, weightDecay: 0 },
  );
  const sched = new LrScheduler(
    opt,
    scheduleByName("cosine", { numWarmupSteps: s.warmupSteps, numTrainingSteps: s.steps }),
  );
  const batcher = new Batcher(train, { batchSize: s.batchSize, seqLen: s.seqLen, seed: s.seed, padId });
  const validBatches = evalBatches(valid, { batchSize: s.batchSize, seqLen: s.seqLen, padId });
  const trainer = new Trainer(peft, batcher, opt, sched, { steps: s.steps, maxGradNorm: 1 });
  status("measuring the eval loss before training");
  const evalBefore = validBatches.length ? evaluateBatches(peft, validBatches).loss : null;
  self.postMessage({
    type: "start",
    kernels,
    trainableParams: named.reduce((a, [, p]) => a + p.size, 0),
    trainExamples: train.length,
    validExamples: valid.length,
    evalBefore,
  });
  let tokensPerSecond = 0;
  for (const ev of trainer.run()) {
    if (ev.type === "step") {
      tokensPerSecond = ev.tokensPerSecond;
      self.postMessage({ ...ev });
      // Let a "cancel" message in between steps.
      await new Promise((r) => setTimeout(r, 0));
      if (cancelled) break;
    }
  }
  status("measuring the eval loss after training");
  const evalAfter = validBatches.length ? evaluateBatches(peft, validBatches).loss : null;
  status("generating");
  const before = peft.withAdaptersDisabled(() => sample(model, tokenizer, s.prompt));
  const after = sample(model, tokenizer, s.prompt);
  const out = adapterFiles(peft, s.modelName);
  self.postMessage(
    {
      type: "done",
      steps: trainer.step,
      cancelled,
      evalBefore,
      evalAfter,
      tokensPerSecond,
      before,
      after,
      adapterConfig: out.config,
      adapterWeights: out.weights.buffer,
    },
    [out.weights.buffer],
  );
}
