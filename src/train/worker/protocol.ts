// The messages between a WorkerTrainer (the page's main thread) and runTrainerWorker (inside a
// Worker): typed here, and checked on arrival on both sides, so a stray or malformed message
// fails with a message that names the field instead of somewhere deep in training.
//
// Client → worker: { protocol, id, request }.  Worker → client: { protocol, id, type: "result",
// value } | { protocol, id, type: "error", error: { name, message } } | { protocol, id, type:
// "progress", event }. `id` pairs a reply with its request (null on an error about a message
// that had no usable id). Messages without `protocol` are not ours and are ignored.
import { LorakitError } from "../../core/errors.js";
import type { FileLike } from "../../io/folder-source.js";
import type { WeightDType } from "../../models/assemble.js";
import { RECORD_FORMATS, type RecordFormat } from "../data-records.js";

export const PROTOCOL = "lorakit-trainer/1";

/** A message on the worker channel broke the protocol. */
export class WorkerProtocolError extends LorakitError {}

/** Where the worker reads a model folder from. */
export type WorkerModelSource =
  | { url: string }
  | { files: FileLike[] }
  | { bytes: Record<string, Uint8Array | string>; label?: string };

export interface WorkerLoadOptions {
  /** Resident dtype of the weight matrices (see LoadModelOptions). Default "auto". */
  dtype?: WeightDType;
}

/**
 * One LoRA training run, on a plain text or on JSON records (exactly one of `text` and
 * `records`).
 */
export interface WorkerTrainRequest {
  /** A plain training text (cut into windows of seqLen+1 tokens, repeated as the steps need). */
  text?: string;
  /**
   * JSON records: JSONL text, a JSON array text, or the parsed records; chat `{messages}`,
   * alpaca `{instruction, input?, output}`, `{prompt, completion}` or `{text}` records, trained
   * on the answers only (see recordsDataset; `lorakit train --data x.jsonl` reads the same).
   */
  records?: string | unknown[];
  /** The records' format; "auto" (default) detects it per record. */
  format?: RecordFormat | "auto";
  /** Records: train on the prompts and user turns too. Default false. */
  trainOnPrompt?: boolean;
  /** Records: lay short examples end to end into seqLen rows. Default false. */
  pack?: boolean;
  /** Optimizer steps. */
  steps: number;
  /** LoRA rank. Default 8. */
  r?: number;
  /** LoRA alpha. Default 2·r. */
  loraAlpha?: number;
  /** LoRA dropout. Default 0. */
  loraDropout?: number;
  /** Module names, or "all-linear". Default ["q_proj", "v_proj"]. */
  targetModules?: string[] | "all-linear";
  /** Peak learning rate. Default 2e-4. */
  lr?: number;
  /** Rows per batch. Default 4. */
  batchSize?: number;
  /** Tokens per row. Default 128. */
  seqLen?: number;
  /** Seed of the adapter's initialisation, the split and the batch order. Default 0. */
  seed?: number;
  /** Fraction of the text's windows (or of the records) held out for eval loss (0 = none). Default 0.05. */
  evalFraction?: number;
  /** Evaluate every N steps (0: only before and after). Default 0. */
  evalEvery?: number;
  /** Learning-rate schedule. Default "cosine". */
  schedule?: "constant" | "linear" | "cosine";
  /** Warm-up steps of the schedule. Default 0. */
  warmupSteps?: number;
}

export interface WorkerGenerateOptions {
  /** Default 32. */
  maxNewTokens?: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  stopAtEos?: boolean;
  /** Use the trained adapter (default true once one exists); false = the base model. */
  adapter?: boolean;
}

export interface WorkerEvaluateOptions {
  /** Window length in tokens. Default 128. */
  seqLen?: number;
  /** Use the trained adapter (default true once one exists); false = the base model. */
  adapter?: boolean;
}

export type WorkerRequest =
  | { kind: "load"; source: WorkerModelSource; options: WorkerLoadOptions }
  | { kind: "train"; request: WorkerTrainRequest }
  | { kind: "cancel" }
  | { kind: "generate"; prompt: string; options: WorkerGenerateOptions }
  | { kind: "evaluate"; text: string; options: WorkerEvaluateOptions }
  | { kind: "adapterFiles" };

export const REQUEST_KINDS = ["load", "train", "cancel", "generate", "evaluate", "adapterFiles"] as const;

/** What load() resolves to. */
export interface WorkerModelInfo {
  /** The kernel backend the worker runs on ("ref", "wasm", ...). */
  backend: string;
  /**
   * The kernels in more detail: `threads` and `notice` come from what the `backend` hook of
   * runTrainerWorker returned (e.g. loadWasmBackend's handle: threads running, and why fewer
   * than asked), null when it returned none.
   */
  kernels: { name: string; threads: number | null; notice: string | null };
  /** config.json as loaded (Hugging Face keys). */
  config: Record<string, unknown>;
  /** Parameters of the base model. */
  params: number;
  /** Tokens the tokenizer knows. */
  vocabSize: number;
  /** Where the model came from (its URL or folder name). */
  source: string;
}

/** Progress while a request runs. */
export type WorkerProgress =
  | { type: "load"; file: string; loaded: number; total: number | null }
  | {
      type: "start";
      totalSteps: number;
      trainableParams: number;
      trainExamples: number;
      evalExamples: number;
    }
  | {
      type: "step";
      step: number;
      totalSteps: number;
      loss: number;
      lr: number;
      tokensPerSecond: number;
      elapsedSeconds: number;
    }
  | { type: "eval"; step: number; loss: number };

/** What train() resolves to, cancelled or not. */
export interface WorkerTrainResult {
  /** Optimizer steps run. */
  steps: number;
  /** True when cancel() stopped the run before its last step. */
  cancelled: boolean;
  finalLoss: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
  losses: { step: number; loss: number; lr: number }[];
  /** Held-out loss before and after training (null without held-out data). */
  evalLossBefore: number | null;
  evalLossAfter: number | null;
  /** PEFT's `trainable params: N || all params: M || trainable%: P` line. */
  trainableLine: string;
}

export interface WorkerGenerateResult {
  text: string;
  tokens: number[];
}

export interface WorkerEvaluateResult {
  loss: number;
  tokens: number;
}

export interface WorkerAdapterFiles {
  "adapter_config.json": string;
  "adapter_model.safetensors": Uint8Array;
}

export interface RequestMessage {
  protocol: typeof PROTOCOL;
  id: number;
  request: WorkerRequest;
}

export type ResponseMessage =
  | { protocol: typeof PROTOCOL; id: number; type: "result"; value: unknown }
  | { protocol: typeof PROTOCOL; id: number | null; type: "error"; error: { name: string; message: string } }
  | { protocol: typeof PROTOCOL; id: number; type: "progress"; event: WorkerProgress };

type Obj = Record<string, unknown>;

const isObj = (x: unknown): x is Obj => typeof x === "object" && x !== null && !Array.isArray(x);
const show = (x: unknown) => {
  try {
    return JSON.stringify(x) ?? String(x);
  } catch {
    return String(x);
  }
};

/** True for a message of this protocol (others on the same port are left alone). */
export function isProtocolMessage(msg: unknown): msg is Obj {
  return isObj(msg) && msg.protocol === PROTOCOL;
}

function fail(where: string, what: string, got: unknown): never {
  throw new WorkerProtocolError(`trainer worker: ${where}: ${what}, got ${show(got)}`);
}

/** Field checks for optional settings: absent is fine, present must have the right form. */
function optNumber(o: Obj, key: string, where: string, ok: (n: number) => boolean, what: string): void {
  if (o[key] === undefined) return;
  if (typeof o[key] !== "number" || !ok(o[key] as number)) fail(where, `"${key}" must be ${what}`, o[key]);
}
const posInt = (n: number) => Number.isInteger(n) && n >= 1;
const nonNegInt = (n: number) => Number.isInteger(n) && n >= 0;
const posFinite = (n: number) => Number.isFinite(n) && n > 0;

function checkTrainRequest(r: unknown): WorkerTrainRequest {
  const where = "train request";
  if (!isObj(r)) fail(where, "must be an object", r);
  if ((r.text === undefined) === (r.records === undefined))
    fail(where, 'give exactly one of "text" (a plain text) and "records" (JSON records)', {
      text: r.text === undefined ? undefined : "…",
      records: r.records === undefined ? undefined : "…",
    });
  if (r.text !== undefined && (typeof r.text !== "string" || r.text.length === 0))
    fail(where, '"text" must be a non-empty string', r.text);
  if (
    r.records !== undefined &&
    !(
      (typeof r.records === "string" && r.records.length > 0) ||
      (Array.isArray(r.records) && r.records.length > 0)
    )
  )
    fail(where, '"records" must be a non-empty JSONL/JSON text or a non-empty array of records', r.records);
  if (r.format !== undefined && r.format !== "auto" && !RECORD_FORMATS.includes(r.format as RecordFormat))
    fail(where, `"format" must be auto, ${RECORD_FORMATS.join(", ")}`, r.format);
  for (const key of ["trainOnPrompt", "pack"])
    if (r[key] !== undefined && typeof r[key] !== "boolean")
      fail(where, `"${key}" must be true or false`, r[key]);
  if (r.text !== undefined)
    for (const key of ["format", "trainOnPrompt", "pack"])
      if (r[key] !== undefined) fail(where, `"${key}" applies to "records", not to a plain "text"`, r[key]);
  if (typeof r.steps !== "number" || !posInt(r.steps))
    fail(where, '"steps" must be a positive integer', r.steps);
  optNumber(r, "r", where, posInt, "a positive integer");
  optNumber(r, "loraAlpha", where, posFinite, "a positive number");
  optNumber(r, "loraDropout", where, (n) => n >= 0 && n < 1, "in [0, 1)");
  optNumber(r, "lr", where, posFinite, "a positive number");
  optNumber(r, "batchSize", where, posInt, "a positive integer");
  optNumber(r, "seqLen", where, (n) => Number.isInteger(n) && n >= 2, "an integer ≥ 2");
  optNumber(r, "seed", where, nonNegInt, "a non-negative integer");
  optNumber(r, "evalFraction", where, (n) => n >= 0 && n < 1, "in [0, 1)");
  optNumber(r, "evalEvery", where, nonNegInt, "a non-negative integer");
  optNumber(r, "warmupSteps", where, nonNegInt, "a non-negative integer");
  const t = r.targetModules;
  if (
    t !== undefined &&
    t !== "all-linear" &&
    !(Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === "string" && x.length > 0))
  )
    fail(where, '"targetModules" must be "all-linear" or a non-empty list of module names', t);
  if (r.schedule !== undefined && !["constant", "linear", "cosine"].includes(r.schedule as string))
    fail(where, '"schedule" must be constant, linear or cosine', r.schedule);
  return r as unknown as WorkerTrainRequest;
}

function checkSource(s: unknown): WorkerModelSource {
  const where = "load source";
  if (!isObj(s)) fail(where, "must be { url }, { files } or { bytes }", s);
  if ("url" in s) {
    if (typeof s.url !== "string" || s.url === "") fail(where, '"url" must be a non-empty string', s.url);
    return { url: s.url };
  }
  if ("files" in s) {
    const files = s.files;
    if (
      !Array.isArray(files) ||
      !files.every((f) => isObj(f) && typeof f.name === "string" && typeof f.arrayBuffer === "function")
    )
      fail(where, '"files" must be a list of File objects', files);
    return { files: files as FileLike[] };
  }
  if ("bytes" in s) {
    const b = s.bytes;
    if (!isObj(b) || !Object.values(b).every((v) => typeof v === "string" || v instanceof Uint8Array))
      fail(where, '"bytes" must map file names to Uint8Array or string', Object.keys(isObj(b) ? b : {}));
    if (s.label !== undefined && typeof s.label !== "string")
      fail(where, '"label" must be a string', s.label);
    return { bytes: b as Record<string, Uint8Array | string>, label: s.label as string | undefined };
  }
  return fail(where, "must be { url }, { files } or { bytes }", Object.keys(s));
}

function checkOptions(o: unknown, where: string): Obj {
  if (o === undefined) return {};
  if (!isObj(o)) fail(where, "options must be an object", o);
  return o;
}

/** Checks a request message (worker side). Throws WorkerProtocolError naming what is wrong. */
export function parseRequestMessage(msg: Obj): RequestMessage {
  if (typeof msg.id !== "number" || !Number.isInteger(msg.id))
    fail("request", '"id" must be an integer', msg.id);
  const req = msg.request;
  if (!isObj(req)) fail("request", '"request" must be an object', req);
  const kind = req.kind;
  switch (kind) {
    case "load": {
      const options = checkOptions(req.options, "load");
      if (options.dtype !== undefined && !["auto", "f32", "bf16"].includes(options.dtype as string))
        fail("load", '"dtype" must be auto, f32 or bf16', options.dtype);
      return { protocol: PROTOCOL, id: msg.id, request: { kind, source: checkSource(req.source), options } };
    }
    case "train":
      return { protocol: PROTOCOL, id: msg.id, request: { kind, request: checkTrainRequest(req.request) } };
    case "cancel":
    case "adapterFiles":
      return { protocol: PROTOCOL, id: msg.id, request: { kind } };
    case "generate": {
      if (typeof req.prompt !== "string") fail("generate", '"prompt" must be a string', req.prompt);
      const o = checkOptions(req.options, "generate");
      optNumber(o, "maxNewTokens", "generate", nonNegInt, "a non-negative integer");
      optNumber(o, "temperature", "generate", (n) => Number.isFinite(n) && n >= 0, "a number ≥ 0");
      optNumber(o, "topK", "generate", nonNegInt, "a non-negative integer");
      optNumber(o, "topP", "generate", (n) => n > 0 && n <= 1, "in (0, 1]");
      optNumber(o, "seed", "generate", nonNegInt, "a non-negative integer");
      return { protocol: PROTOCOL, id: msg.id, request: { kind, prompt: req.prompt, options: o } };
    }
    case "evaluate": {
      if (typeof req.text !== "string") fail("evaluate", '"text" must be a string', req.text);
      const o = checkOptions(req.options, "evaluate");
      optNumber(o, "seqLen", "evaluate", (n) => Number.isInteger(n) && n >= 2, "an integer ≥ 2");
      return { protocol: PROTOCOL, id: msg.id, request: { kind, text: req.text, options: o } };
    }
    default:
      return fail("request", `"kind" must be one of ${REQUEST_KINDS.join(", ")}`, kind);
  }
}

/** Checks a reply message (client side). Throws WorkerProtocolError naming what is wrong. */
export function parseResponseMessage(msg: Obj): ResponseMessage {
  const id = msg.id;
  switch (msg.type) {
    case "result":
      if (typeof id !== "number") fail("reply", '"id" must be a number', id);
      return { protocol: PROTOCOL, id, type: "result", value: msg.value };
    case "progress": {
      if (typeof id !== "number") fail("reply", '"id" must be a number', id);
      const ev = msg.event;
      if (!isObj(ev) || !["load", "start", "step", "eval"].includes(ev.type as string))
        fail("progress", '"event.type" must be load, start, step or eval', isObj(ev) ? ev.type : ev);
      return { protocol: PROTOCOL, id, type: "progress", event: ev as unknown as WorkerProgress };
    }
    case "error": {
      if (id !== null && typeof id !== "number") fail("reply", '"id" must be a number or null', id);
      const e = msg.error;
      if (!isObj(e) || typeof e.message !== "string" || typeof e.name !== "string")
        fail("error reply", '"error" must be { name, message }', e);
      return { protocol: PROTOCOL, id, type: "error", error: { name: e.name, message: e.message } };
    }
    default:
      return fail("reply", '"type" must be result, progress or error', msg.type);
  }
}

/** An Error (or anything thrown) as an error reply's payload. */
export function errorPayload(e: unknown): { name: string; message: string } {
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: "Error", message: String(e) };
}

/** The error a client rejects with: the worker's message, and its class name in `name`. */
export class WorkerError extends LorakitError {
  constructor(
    readonly remoteName: string,
    message: string,
  ) {
    super(message);
    this.name = remoteName;
  }
}
