// `lorakit train` options: defaults ← a YAML/JSON config file ← command-line flags.
// Keys are the flag names (kebab-case; snake_case and camelCase are accepted in files).
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { CliError } from "./output.js";

export interface TrainOptions {
  model: string;
  data: string;
  out: string;
  validData: string | null;
  steps: number;
  batchSize: number;
  seqLen: number;
  gradAccum: number;
  lr: number;
  schedule: "constant" | "linear" | "cosine";
  warmupSteps: number;
  weightDecay: number;
  maxGradNorm: number;
  loraPlusRatio: number | null;
  r: number;
  loraAlpha: number;
  loraDropout: number;
  targetModules: string[] | string;
  useRslora: boolean;
  seed: number;
  threads: number | null;
  evalEvery: number;
  validFraction: number;
  checkpointEvery: number;
  /** Checkpoints kept under OUT/checkpoints (the latest ones; 0 keeps every one). */
  saveTotalLimit: number;
  resume: string | boolean;
  full: boolean;
  pack: boolean;
  trainOnPrompt: boolean;
  logEvery: number;
  /** QLoRA: quantise the decoder linears of the base to NF4 (while loading) before attaching adapters. */
  quantize: "none" | "nf4";
  /** The dtype the frozen weights live in: auto (the checkpoint's own bf16, else f32), f32, bf16. */
  dtype: "auto" | "f32" | "bf16";
  /** Memory budget of the run ("4GiB", "6000MB", bytes; null: the machine's available memory less a margin). */
  maxMemory: string | null;
  /** Recompute each decoder layer's activations in backward: auto (when the budget needs it), on, off. */
  gradientCheckpointing: "auto" | "on" | "off";
  method: "lora" | "adalora" | "gora";
  initR: number;
  targetR: number;
  tinit: number;
  tfinal: number;
  deltaT: number;
  beta1: number;
  beta2: number;
  orthRegWeight: number;
  goraBatches: number;
  goraImportance: "union_frobenius_norm" | "union_mean" | "grad_frobenius_norm" | "grad_mean";
  goraMinRank: number;
  goraMaxRank: number;
  goraGamma: number;
}

/** Every default, documented. */
export const TRAIN_DEFAULTS: Readonly<Omit<TrainOptions, "model" | "data" | "out">> = Object.freeze({
  validData: null,
  steps: 100,
  batchSize: 4,
  seqLen: 128,
  /** Micro-batches per optimizer step. */
  gradAccum: 1,
  lr: 2e-4,
  schedule: "cosine",
  warmupSteps: 0,
  weightDecay: 0,
  maxGradNorm: 1,
  /** LoRA+: B's learning rate is lr × this (null = plain AdamW). */
  loraPlusRatio: null,
  r: 8,
  loraAlpha: 16,
  loraDropout: 0,
  targetModules: ["q_proj", "v_proj"],
  useRslora: false,
  seed: 0,
  threads: null,
  /** Evaluate on the held-out split every N steps (0: only before and after). */
  evalEvery: 0,
  /** Fraction of the data held out for eval when no --valid-data is given. */
  validFraction: 0.05,
  checkpointEvery: 0,
  /** Hugging Face Trainer's save_total_limit: the latest 2 checkpoints stay (0: all). */
  saveTotalLimit: 2,
  resume: false,
  /** Train every parameter (no adapter): baselines and building a base model. */
  full: false,
  pack: false,
  trainOnPrompt: false,
  logEvery: 1,
  quantize: "none",
  dtype: "auto",
  maxMemory: null,
  gradientCheckpointing: "auto",
  /** lora; adalora (PEFT's AdaLoRA, total_step = steps); gora (GoRA ranks and init, budget of rank r). */
  method: "lora",
  /** AdaLoRA (PEFT's AdaLoraConfig defaults): initial and target average rank. */
  initR: 12,
  targetR: 8,
  /** AdaLoRA: warm-up steps before pruning, final steps with the mask fixed, steps between allocations. */
  tinit: 0,
  tfinal: 0,
  deltaT: 1,
  /** AdaLoRA: EMA coefficients of sensitivity and uncertainty. */
  beta1: 0.85,
  beta2: 0.85,
  /** AdaLoRA: weight of the orthogonal regulariser. */
  orthRegWeight: 0.5,
  /** GoRA: batches of gradient accumulation before training. */
  goraBatches: 8,
  /** GoRA: layer importance (‖W⊙G‖_F, the reference code's default). */
  goraImportance: "union_frobenius_norm",
  /** GoRA: rank bounds per layer (reference defaults). */
  goraMinRank: 1,
  goraMaxRank: 9999,
  /** GoRA: γ in B = G·A⁺·γ/α (reference default 0.02). */
  goraGamma: 0.02,
});

const NUMERIC: (keyof TrainOptions)[] = [
  "steps",
  "batchSize",
  "seqLen",
  "gradAccum",
  "lr",
  "warmupSteps",
  "weightDecay",
  "maxGradNorm",
  "r",
  "loraAlpha",
  "loraDropout",
  "seed",
  "threads",
  "evalEvery",
  "validFraction",
  "checkpointEvery",
  "saveTotalLimit",
  "logEvery",
  "initR",
  "targetR",
  "tinit",
  "tfinal",
  "deltaT",
  "beta1",
  "beta2",
  "orthRegWeight",
  "goraBatches",
  "goraMinRank",
  "goraMaxRank",
  "goraGamma",
];
const INTEGER = new Set<keyof TrainOptions>([
  "steps",
  "batchSize",
  "seqLen",
  "gradAccum",
  "warmupSteps",
  "r",
  "seed",
  "threads",
  "evalEvery",
  "checkpointEvery",
  "saveTotalLimit",
  "logEvery",
  "initR",
  "targetR",
  "tinit",
  "tfinal",
  "deltaT",
  "goraBatches",
  "goraMinRank",
  "goraMaxRank",
]);
const BOOLEAN: (keyof TrainOptions)[] = ["useRslora", "full", "pack", "trainOnPrompt"];

function camel(k: string): string {
  return k.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase());
}
function kebab(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

const KNOWN = new Set<string>(["model", "data", "out", ...Object.keys(TRAIN_DEFAULTS)]);

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") throw new CliError(`--config ${path}: no such file`);
    throw new CliError(`--config ${path}: cannot read it`, { cause: e });
  }
  let v: unknown;
  try {
    v = path.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new CliError(
      `--config ${path}: not valid ${path.endsWith(".json") ? "JSON" : "YAML"}: ${(e as Error).message}`,
    );
  }
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new CliError(`--config ${path}: expected a mapping of options`);
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v)) {
    const c = camel(k);
    if (!KNOWN.has(c))
      throw new CliError(
        `--config ${path}: unknown option "${k}" (known: ${[...KNOWN].map(kebab).join(", ")})`,
      );
    out[c] = val;
  }
  return out;
}

/**
 * Bounds on the sizes a run may ask for. Beyond them the numbers are typos or attacks
 * (`--batch-size 1e9` ran V8 out of memory before any check), and every bound is far above
 * what a CPU can train; within them the memory planner decides what fits.
 */
const RANGES: Partial<Record<keyof TrainOptions, [min: number, max: number]>> = {
  steps: [1, 2 ** 31 - 1],
  batchSize: [1, 1 << 16],
  seqLen: [1, 1 << 20],
  gradAccum: [1, 1 << 16],
  r: [1, 1 << 16],
  logEvery: [1, 2 ** 31 - 1],
  warmupSteps: [0, 2 ** 31 - 1],
  evalEvery: [0, 2 ** 31 - 1],
  checkpointEvery: [0, 2 ** 31 - 1],
  saveTotalLimit: [0, 2 ** 31 - 1],
  seed: [0, 2 ** 32 - 1],
  initR: [1, 1 << 16],
  targetR: [1, 1 << 16],
  tinit: [0, 2 ** 31 - 1],
  tfinal: [0, 2 ** 31 - 1],
  deltaT: [1, 2 ** 31 - 1],
  goraBatches: [1, 1 << 16],
  goraMinRank: [1, 1 << 16],
  goraMaxRank: [1, 2 ** 31 - 1],
  weightDecay: [0, Number.MAX_VALUE],
  maxGradNorm: [0, Number.MAX_VALUE],
  orthRegWeight: [0, Number.MAX_VALUE],
};

function checkRanges(o: TrainOptions): void {
  for (const [k, [min, max]] of Object.entries(RANGES) as [keyof TrainOptions, [number, number]][]) {
    const v = o[k] as number;
    if (v < min || v > max)
      throw new CliError(
        `--${kebab(k)} must be ${max === Number.MAX_VALUE ? `≥ ${min}` : `in [${min}, ${max.toLocaleString("en-US")}]`}, got ${v}`,
      );
  }
  for (const k of ["beta1", "beta2"] as const)
    if (!(o[k] >= 0 && o[k] < 1)) throw new CliError(`--${k} must be in [0, 1), got ${o[k]}`);
  if (!(o.goraGamma > 0)) throw new CliError(`--gora-gamma must be > 0, got ${o.goraGamma}`);
  if (o.goraMaxRank < o.goraMinRank)
    throw new CliError(`--gora-max-rank (${o.goraMaxRank}) must be ≥ --gora-min-rank (${o.goraMinRank})`);
}

/** Merges defaults, the config file and flags (flags given as strings or booleans), validating each. */
export function resolveTrainOptions(
  fileOpts: Record<string, unknown>,
  flags: Record<string, unknown>,
): TrainOptions {
  const merged: Record<string, unknown> = { ...TRAIN_DEFAULTS, ...fileOpts };
  for (const [k, v] of Object.entries(flags))
    if (v !== undefined && KNOWN.has(camel(k))) merged[camel(k)] = v;
  for (const k of ["model", "data", "out"])
    if (typeof merged[k] !== "string" || merged[k] === "")
      throw new CliError(`--${k} is required (on the command line or in --config)`);
  for (const k of NUMERIC) {
    const v = merged[k];
    if (v === null && k === "threads") continue;
    const n = typeof v === "number" ? v : Number(v);
    if (v === "" || v === null || !Number.isFinite(n) || (INTEGER.has(k) && !Number.isInteger(n)))
      throw new CliError(
        `--${kebab(k)} must be ${INTEGER.has(k) ? "an integer" : "a number"}, got ${JSON.stringify(v)}`,
      );
    merged[k] = n;
  }
  for (const k of BOOLEAN) {
    const v = merged[k];
    merged[k] = v === true || v === "true" || v === "1";
  }
  const o = merged as unknown as TrainOptions;
  if (o.quantize !== "none" && o.quantize !== "nf4")
    throw new CliError(`--quantize must be none or nf4, got ${JSON.stringify(o.quantize)}`);
  if (!["auto", "f32", "bf16"].includes(o.dtype))
    throw new CliError(`--dtype must be auto, f32 or bf16, got ${JSON.stringify(o.dtype)}`);
  if (!["auto", "on", "off"].includes(o.gradientCheckpointing))
    throw new CliError(
      `--gradient-checkpointing must be auto, on or off, got ${JSON.stringify(o.gradientCheckpointing)}`,
    );
  if (o.maxMemory !== null) o.maxMemory = String(o.maxMemory);
  const positive: (keyof TrainOptions)[] = ["steps", "batchSize", "seqLen", "gradAccum", "r", "logEvery"];
  for (const k of positive)
    if ((o[k] as number) < 1) throw new CliError(`--${kebab(k)} must be ≥ 1, got ${o[k]}`);
  if (o.threads !== null && o.threads < 1) throw new CliError(`--threads must be ≥ 1, got ${o.threads}`);
  checkRanges(o);
  if (!(o.lr > 0)) throw new CliError(`--lr must be > 0, got ${o.lr}`);
  if (!(o.loraDropout >= 0 && o.loraDropout < 1))
    throw new CliError(`--lora-dropout must be in [0, 1), got ${o.loraDropout}`);
  if (!(o.validFraction >= 0 && o.validFraction < 1))
    throw new CliError(`--valid-fraction must be in [0, 1), got ${o.validFraction}`);
  if (!["constant", "linear", "cosine"].includes(o.schedule))
    throw new CliError(`--schedule must be constant, linear or cosine, got ${JSON.stringify(o.schedule)}`);
  if (o.loraPlusRatio !== null) {
    const n = Number(o.loraPlusRatio);
    if (!(n > 0)) throw new CliError(`--lora-plus-ratio must be > 0, got ${JSON.stringify(o.loraPlusRatio)}`);
    o.loraPlusRatio = n;
  }
  if (typeof o.targetModules === "string" && o.targetModules !== "all-linear")
    o.targetModules = o.targetModules
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  if (Array.isArray(o.targetModules) && o.targetModules.length === 0)
    throw new CliError("--target-modules names no module");
  if (!["lora", "adalora", "gora"].includes(o.method))
    throw new CliError(`--method must be lora, adalora or gora, got ${JSON.stringify(o.method)}`);
  if (o.method !== "lora" && (o.full || o.useRslora))
    throw new CliError(`--method ${o.method} cannot be combined with --full or --use-rslora`);
  if (!["union_frobenius_norm", "union_mean", "grad_frobenius_norm", "grad_mean"].includes(o.goraImportance))
    throw new CliError(
      `--gora-importance must be union_frobenius_norm, union_mean, grad_frobenius_norm or grad_mean, got ${JSON.stringify(o.goraImportance)}`,
    );
  if (o.resume === "true") o.resume = true;
  if (o.resume === "false" || o.resume === undefined) o.resume = false;
  return o;
}
