// What a training worker holds and does: one base model with its tokenizer, at most one LoRA
// adapter on it, and the operations the protocol offers (load, train, generate, evaluate,
// adapter files). Browser-safe and independent of the message channel, so the handler stays a
// thin dispatcher.
import { backend } from "../../core/engine.js";
import type { ModelFolderSource } from "../../io/folder-source.js";
import { bytesFolderSource, filesFolderSource, urlFolderSource } from "../../io/folder-source.js";
import { evaluateNll } from "../../models/evaluate.js";
import { generate } from "../../models/generate.js";
import { llamaConfigToJson } from "../../models/llama/config.js";
import type { LlamaForCausalLM } from "../../models/llama/model.js";
import { loadModelFromSource } from "../../models/load-folder.js";
import { AdamW } from "../../optim/adamw.js";
import { LrScheduler, scheduleByName } from "../../optim/schedule.js";
import { adapterFiles } from "../../peft/adapter-folder.js";
import { getPeftModel, type PeftModel } from "../../peft/model.js";
import type { Tokenizer } from "../../tokenizer/tokenizer.js";
import {
  Batcher,
  type Dataset,
  evalBatches,
  padIdFor,
  prepareSplits,
  recordsDataset,
  textDataset,
} from "../data.js";
import { evaluateBatches, Trainer, TrainingError } from "../trainer.js";
import type {
  WorkerAdapterFiles,
  WorkerEvaluateOptions,
  WorkerEvaluateResult,
  WorkerGenerateOptions,
  WorkerGenerateResult,
  WorkerLoadOptions,
  WorkerModelInfo,
  WorkerModelSource,
  WorkerProgress,
  WorkerTrainRequest,
  WorkerTrainResult,
} from "./protocol.js";

/** The defaults of a train request, documented in WorkerTrainRequest. */
export const WORKER_TRAIN_DEFAULTS = Object.freeze({
  r: 8,
  loraDropout: 0,
  targetModules: ["q_proj", "v_proj"] as readonly string[],
  lr: 2e-4,
  batchSize: 4,
  seqLen: 128,
  seed: 0,
  evalFraction: 0.05,
  evalEvery: 0,
  schedule: "cosine" as const,
  warmupSteps: 0,
});

/** Lets queued messages (a cancel) in between two training steps. */
function yieldToEvents(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function sourceOf(s: WorkerModelSource, onProgress: (p: WorkerProgress) => void): ModelFolderSource {
  const progress = (p: { file: string; loaded: number; total: number | null }) =>
    onProgress({ type: "load", ...p });
  if ("url" in s) return urlFolderSource(s.url, { onProgress: progress });
  if ("files" in s) return filesFolderSource(s.files, { onProgress: progress });
  return bytesFolderSource(s.bytes, s.label);
}

/** The kernels' name, and threads / notice from a backend handle such as loadWasmBackend's. */
function kernelsOf(info: unknown): WorkerModelInfo["kernels"] {
  const o = typeof info === "object" && info !== null ? (info as Record<string, unknown>) : {};
  return {
    name: backend().name,
    threads: typeof o.threads === "number" ? o.threads : null,
    notice: typeof o.notice === "string" ? o.notice : null,
  };
}

export class TrainerSession {
  private model: LlamaForCausalLM | null = null;
  private tokenizer: Tokenizer | null = null;
  private peft: PeftModel<LlamaForCausalLM> | null = null;
  private stopRequested = false;
  /** True while train() runs. */
  training = false;

  private loaded(): { model: LlamaForCausalLM; tokenizer: Tokenizer } {
    if (!this.model || !this.tokenizer) throw new TrainingError("no model loaded yet: call load() first");
    return { model: this.model, tokenizer: this.tokenizer };
  }

  async load(
    source: WorkerModelSource,
    opts: WorkerLoadOptions,
    onProgress: (p: WorkerProgress) => void,
    /** What the backend hook returned (threads, notice), if anything. */
    backendInfo: unknown = null,
  ): Promise<WorkerModelInfo> {
    const src = sourceOf(source, onProgress);
    const { model, tokenizer } = await loadModelFromSource(src, { dtype: opts.dtype });
    this.model = model;
    this.tokenizer = tokenizer;
    this.peft = null;
    let params = 0;
    for (const [, p] of model.namedParameters()) params += p.size;
    return {
      backend: backend().name,
      kernels: kernelsOf(backendInfo),
      config: llamaConfigToJson(model.config),
      params,
      vocabSize: tokenizer?.vocabSize ?? 0,
      source: src.label,
    };
  }

  /**
   * Asks the running (or next) train() to stop after its current step; the handler calls it only
   * while a train request is pending. Returns whether one is running now.
   */
  cancel(): boolean {
    this.stopRequested = true;
    return this.training;
  }

  /**
   * Trains a fresh LoRA adapter on `req.text` or `req.records` (a previous adapter is removed first), yielding to
   * the event loop between steps so that cancel() can arrive. A cancelled run keeps the adapter
   * as trained so far.
   */
  async train(req: WorkerTrainRequest, onProgress: (p: WorkerProgress) => void): Promise<WorkerTrainResult> {
    try {
      return await this.runTraining(req, onProgress);
    } finally {
      // A cancel that came for this run must not stop the next one.
      this.training = false;
      this.stopRequested = false;
    }
  }

  private async runTraining(
    req: WorkerTrainRequest,
    onProgress: (p: WorkerProgress) => void,
  ): Promise<WorkerTrainResult> {
    const { model, tokenizer } = this.loaded();
    const d = WORKER_TRAIN_DEFAULTS;
    const seqLen = req.seqLen ?? d.seqLen;
    const batchSize = req.batchSize ?? d.batchSize;
    const seed = req.seed ?? d.seed;
    const r = req.r ?? d.r;
    const ds: Dataset =
      req.records !== undefined
        ? recordsDataset(req.records, tokenizer, {
            seqLen,
            source: "the training records",
            format: req.format,
            trainOnPrompt: req.trainOnPrompt,
          })
        : textDataset(req.text ?? "", tokenizer, { seqLen, source: "the training text" });
    const evalFraction = ds.examples.length >= 2 ? (req.evalFraction ?? d.evalFraction) : 0;
    const { train, valid } = prepareSplits(ds, {
      seqLen,
      validFraction: evalFraction,
      seed,
      pack: req.pack ?? false,
    });
    if (this.peft) {
      this.peft.unload();
      this.peft = null;
    }
    const peft = getPeftModel(
      model,
      {
        r,
        loraAlpha: req.loraAlpha ?? 2 * r,
        loraDropout: req.loraDropout ?? d.loraDropout,
        targetModules: req.targetModules ?? [...d.targetModules],
      },
      "default",
      { seed },
    );
    this.peft = peft;
    const named = [...peft.namedParameters()].filter(([, p]) => p.requiresGrad);
    const opt = new AdamW(
      named.map(([, p]) => p),
      { lr: req.lr ?? d.lr, weightDecay: 0 },
    );
    const sched = new LrScheduler(
      opt,
      scheduleByName(req.schedule ?? d.schedule, {
        numWarmupSteps: req.warmupSteps ?? d.warmupSteps,
        numTrainingSteps: req.steps,
      }),
    );
    const padId = padIdFor(tokenizer);
    const batcher = new Batcher(train, { batchSize, seqLen, seed, padId });
    const validBatches = valid.length ? evalBatches(valid, { batchSize, seqLen, padId }) : [];
    const trainer = new Trainer(peft, batcher, opt, sched, {
      steps: req.steps,
      evalEvery: req.evalEvery ?? d.evalEvery,
      evalBatches: validBatches,
      rng: peft.rng,
    });
    const evalLossBefore = validBatches.length ? evaluateBatches(peft, validBatches).loss : null;
    const counts = peft.countParameters();
    const trainableLine = peft.trainableParametersLine();
    onProgress({
      type: "start",
      totalSteps: req.steps,
      trainableParams: counts.trainable,
      trainExamples: train.length,
      evalExamples: valid.length,
    });
    if (evalLossBefore !== null) onProgress({ type: "eval", step: 0, loss: evalLossBefore });

    this.training = true;
    let cancelled = false;
    let evalLossAfter: number | null = null;
    let last = { tokensPerSecond: 0, elapsedSeconds: 0 };
    const run = trainer.run();
    try {
      for (;;) {
        const { value: ev, done } = run.next();
        if (done) break;
        if (ev.type === "step") {
          last = ev;
          const { step, totalSteps, loss, lr, tokensPerSecond, elapsedSeconds } = ev;
          onProgress({ type: "step", step, totalSteps, loss, lr, tokensPerSecond, elapsedSeconds });
          await yieldToEvents();
          if (this.stopRequested && step < totalSteps) {
            cancelled = true;
            break;
          }
        } else if (ev.type === "eval") {
          evalLossAfter = ev.loss;
          onProgress({ type: "eval", step: ev.step, loss: ev.loss });
        } else if (ev.type === "end") last = ev;
      }
    } finally {
      run.return(undefined);
    }
    if (cancelled && validBatches.length) {
      evalLossAfter = evaluateBatches(peft, validBatches).loss;
      onProgress({ type: "eval", step: trainer.step, loss: evalLossAfter });
    }
    const losses = trainer.losses.map((l) => ({ ...l }));
    return {
      steps: trainer.step,
      cancelled,
      finalLoss: losses.length ? losses[losses.length - 1].loss : Number.NaN,
      tokensPerSecond: last.tokensPerSecond,
      elapsedSeconds: last.elapsedSeconds,
      losses,
      evalLossBefore,
      evalLossAfter,
      trainableLine,
    };
  }

  /** Runs fn on the adapted model, or on the base model when `adapter` is false or there is no adapter. */
  private withAdapterChoice<T>(adapter: boolean | undefined, fn: () => T): T {
    if (this.peft && adapter === false) return this.peft.withAdaptersDisabled(fn);
    return fn();
  }

  generate(prompt: string, opts: WorkerGenerateOptions): WorkerGenerateResult {
    const { model, tokenizer } = this.loaded();
    const ids = tokenizer.encode(prompt);
    if (ids.length === 0) throw new TrainingError("generate: the prompt is empty (0 tokens); give some text");
    const tokens = this.withAdapterChoice(opts.adapter, () =>
      generate(model, ids, {
        maxNewTokens: opts.maxNewTokens ?? 32,
        temperature: opts.temperature ?? 0,
        topK: opts.topK,
        topP: opts.topP,
        seed: opts.seed,
        stopAtEos: opts.stopAtEos,
      }),
    );
    return { text: tokenizer.decode(tokens), tokens };
  }

  evaluate(text: string, opts: WorkerEvaluateOptions): WorkerEvaluateResult {
    const { model, tokenizer } = this.loaded();
    const ids = tokenizer.encode(text);
    const r = this.withAdapterChoice(opts.adapter, () =>
      evaluateNll(model, ids, { seqLen: opts.seqLen ?? 128 }),
    );
    return { loss: r.loss, tokens: r.tokens };
  }

  adapterFiles(): WorkerAdapterFiles {
    if (!this.peft) throw new TrainingError("no adapter yet: call train() first");
    return adapterFiles(this.peft, { baseModelNameOrPath: this.model?.nameOrPath ?? null });
  }
}
