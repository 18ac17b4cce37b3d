// Building a LLaMA-family model from a Hugging Face folder's contents, browser-safe: the checks
// on config.json, the choice of checkpoint file, and the assembly of the model from checkpoint
// tensors (resident dtype, NF4 on load, bitsandbytes 4-bit checkpoints, tied embeddings, frozen
// weights). The node loader (models/node/load.ts) feeds it a whole checkpoint read lazily from
// disk; the folder loader (load-folder.ts) feeds it one shard at a time, so both give the same
// model, report and errors.
import type { DType } from "../core/dtype.js";
import { LorakitError } from "../core/errors.js";
import type { Tensor } from "../core/tensor.js";
import type { SafetensorsDType } from "../io/safetensors-dtype.js";
import { Linear } from "../nn/layers.js";
import type { LoadReport, TensorSource } from "../nn/state.js";
import { loadStateDict } from "../nn/state.js";
import { Linear4bit } from "../quant/linear4bit.js";
import { DECODER_LINEAR, isBnb4bitConfig, nf4FromSource, nf4Paths } from "../quant/model.js";
import type { LlamaConfig } from "./llama/config.js";
import { parseLlamaConfig } from "./llama/config.js";
import { LlamaForCausalLM } from "./llama/model.js";

/** Storage of the frozen weight matrices; compute is always f32. */
export type WeightDType = "auto" | "f32" | "bf16";

export interface LoadModelOptions {
  /**
   * The dtype the weight matrices (decoder linears, embeddings, lm_head) live in: "auto"
   * (default) keeps a BF16 checkpoint in bf16 and widens everything else to f32; "f32"; or
   * "bf16". Norms and biases are f32. An F16 checkpoint is widened (exact) under "auto"
   * because the kernels read bf16 panels, and narrowing f16 to bf16 drops 3 mantissa bits
   * (0.7 % relative on logits measured on the test models): ask for "bf16" to trade that
   * for half the memory.
   */
  dtype?: WeightDType;
  /**
   * "nf4": quantise every decoder linear to NF4 (block 64, double quantisation) as it is read,
   * so the float weights of the model never exist at once (QLoRA on a model larger than memory).
   */
  quantize?: "nf4" | null;
}

export interface LoadedModel {
  model: LlamaForCausalLM;
  report: LoadReport;
}

/** The checkpoint files a loader looks for, in the order transformers prefers them. */
export const CHECKPOINT_FILES = ["model.safetensors.index.json", "model.safetensors"] as const;
/** Files that mean "a PyTorch pickle checkpoint", which lorakit refuses to read. */
export const PICKLE_FILES = ["pytorch_model.bin", "pytorch_model.bin.index.json"] as const;

/** config.json is absent from the folder `label`. */
export function noConfigError(label: string): LorakitError {
  return new LorakitError(`${label}: no config.json (is this a Hugging Face model folder?)`);
}

/** config.json's text → its JSON (`path` names the file in errors). */
export function parseConfigJson(path: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LorakitError(`${path}: not valid JSON`, { cause: e });
  }
}

/** config.json's text → the checked LlamaConfig. */
export function parseConfigText(path: string, text: string): LlamaConfig {
  return parseLlamaConfig(parseConfigJson(path, text));
}

/**
 * Which checkpoint file of the folder `label` to read, given which files it has: the shard
 * index, else model.safetensors; a clear error for a pickle-only or empty folder.
 */
export function chooseCheckpointFile(
  label: string,
  has: (name: string) => boolean,
): (typeof CHECKPOINT_FILES)[number] {
  for (const f of CHECKPOINT_FILES) if (has(f)) return f;
  if (PICKLE_FILES.some(has))
    throw new LorakitError(
      `${label}: only pytorch_model.bin (a Python pickle) is present; lorakit reads safetensors only and never runs code from a file.\n  Convert it once in Python: model.save_pretrained(dir, safe_serialization=True)`,
    );
  throw new LorakitError(`${label}: no model.safetensors or model.safetensors.index.json`);
}

/** Refuses a dtype option that is not auto, f32 or bf16. */
export function checkWeightDType(dtype: unknown): WeightDType {
  if (!["auto", "f32", "bf16"].includes(dtype as string))
    throw new LorakitError(`dtype must be auto, f32 or bf16, got ${JSON.stringify(dtype)}`);
  return dtype as WeightDType;
}

/** The resident dtype of one checkpoint tensor under `dtype` (see LoadModelOptions). */
export function residentDType(path: string, fileDType: SafetensorsDType, dtype: WeightDType): DType {
  const isMatrix =
    path.endsWith("_proj.weight") || path === "lm_head.weight" || path.endsWith("embed_tokens.weight");
  if (!isMatrix || dtype === "f32") return "f32";
  if (dtype === "bf16") return "bf16";
  return fileDType === "BF16" ? "bf16" : "f32";
}

/** Some tensors of a checkpoint, read synchronously: the whole checkpoint, or one shard. */
export interface CheckpointPart {
  names(): string[];
  has(name: string): boolean;
  info(name: string): { readonly dtype: SafetensorsDType; readonly shape: readonly number[] };
  tensor(name: string, opts?: { dtype?: DType }): Tensor;
}

function checkShape(name: string, got: readonly number[], want: readonly number[]): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i]))
    throw new LorakitError(
      `loading ${name}: the checkpoint has shape [${got.join(", ")}] but the model expects [${want.join(", ")}] (does config.json match the weights?)`,
    );
}

/**
 * A model being built from a checkpoint given in parts. The model starts as shape-only
 * placeholders; each `addPart` reads that part's tensors straight into their resident dtype
 * (a part's bytes can be dropped once it returns); `finish` checks that nothing is missing,
 * ties the embeddings and freezes every weight.
 *
 * @example
 * const asm = new ModelAssembly("./my-model", config, rawConfig, { dtype: "auto" });
 * for (const shard of shards) asm.addPart(shard);
 * const { model, report } = asm.finish(allTensorNames);
 */
export class ModelAssembly {
  readonly model: LlamaForCausalLM;
  private readonly dtype: WeightDType;
  /** A bitsandbytes 4-bit checkpoint: each module's quant tensors must come in one part. */
  readonly bnb4bit: boolean;
  private readonly quantized = new Set<string>();
  private readonly loaded: string[] = [];

  constructor(
    /** The folder, as errors name it. */
    private readonly label: string,
    private readonly config: LlamaConfig,
    rawConfig: unknown,
    private readonly opts: LoadModelOptions = {},
  ) {
    this.dtype = opts.dtype ?? "auto";
    this.bnb4bit = isBnb4bitConfig(rawConfig);
    this.model = new LlamaForCausalLM(config, { meta: true });
    this.model.nameOrPath = label;
  }

  /** Loads every tensor of `part` that the model has (shape-checked); the rest waits for finish(). */
  addPart(part: CheckpointPart): void {
    const model = this.model;
    const src: TensorSource = {
      names: () => part.names(),
      has: (n) => part.has(n),
      shape: (n) => part.info(n).shape,
      tensor: (n, o) => part.tensor(n, o),
    };
    // NF4 linears (a bitsandbytes 4-bit checkpoint, or opts.quantize) become Linear4bit
    // modules before the rest is loaded; their keys are then skipped.
    if (this.bnb4bit) {
      for (const path of nf4Paths(part.names())) {
        const bias = part.has(`${path}.bias`) ? part.tensor(`${path}.bias`, { dtype: "f32" }) : null;
        model.setSubmodule(path, new Linear4bit(nf4FromSource(src, path), bias));
        this.quantized.add(path);
      }
    } else if (this.opts.quantize === "nf4") {
      for (const [path, m] of [...model.namedModules()]) {
        if (!(m instanceof Linear) || !DECODER_LINEAR.test(path)) continue;
        const wKey = `${path}.weight`;
        if (!part.has(wKey)) continue; // another part's, or reported as missing by finish()
        checkShape(wKey, part.info(wKey).shape, m.weight.shape);
        // Read in the file's own dtype (a bf16 weight is quantised from its bf16 values, and
        // the quant state records bfloat16 as bitsandbytes does); the float copy dies here.
        const w = part.tensor(wKey);
        const bias =
          m.bias && part.has(`${path}.bias`) ? part.tensor(`${path}.bias`, { dtype: "f32" }) : null;
        model.setSubmodule(path, Linear4bit.fromWeight(w, bias));
        this.quantized.add(path);
      }
    }
    const report = loadStateDict(model, src, {
      strict: false,
      dtypeFor: (path) => residentDType(path, part.info(path).dtype, this.dtype),
      // Missing and unexpected keys are judged once over the whole checkpoint, in finish().
      ignoreMissing: () => true,
      ignoreUnexpected: () => true,
    });
    this.loaded.push(...report.loaded);
  }

  private isQuantKey(n: string): boolean {
    const i = n.indexOf(".weight");
    return i > 0 && this.quantized.has(n.slice(0, i)) && n !== `${n.slice(0, i)}.bias`;
  }

  /**
   * Fails on parameters no part held (StateDictError, as loadStateDict reports them), reports
   * the checkpoint's tensors the model has no use for, ties the embeddings and freezes every
   * weight. `allNames` is every tensor name of the checkpoint, in its order.
   */
  finish(allNames: readonly string[]): LoadedModel {
    const { model, config } = this;
    const loaded = new Set(this.loaded);
    const ignoredUnexpected = (n: string) =>
      n.endsWith("rotary_emb.inv_freq") ||
      (n === "lm_head.weight" && config.tieWordEmbeddings) ||
      this.isQuantKey(n);
    // A source that holds none of the parameters still to load makes loadStateDict judge the
    // missing ones (same list, order and error as a one-pass load) and list the unexpected ones.
    const rest = loadStateDict(
      model,
      {
        names: () => [...allNames],
        has: () => false,
        shape: (n) => {
          throw new LorakitError(`${n}: no such tensor`);
        },
        tensor: (n) => {
          throw new LorakitError(`${n}: no such tensor`);
        },
      },
      {
        ignoreMissing: (p) => loaded.has(p) || (p === "lm_head.weight" && config.tieWordEmbeddings),
        ignoreUnexpected: (n) => loaded.has(n) || ignoredUnexpected(n),
      },
    );
    // The loaded list in the model's order, as a one-pass load gives it, whatever the parts' order.
    const order = new Map([...model.namedParameters()].map(([path], i) => [path, i]));
    const rank = (p: string) => order.get(p) ?? order.size;
    const loadedInOrder = this.loaded
      .map((p, i) => [p, i] as const)
      .sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1])
      .map(([p]) => p);
    model.tieWeights();
    for (const [path, p] of model.namedParameters()) {
      if (p.isMeta)
        throw new LorakitError(
          `${this.label}: ${path} was not loaded (no tensor of that name in the checkpoint)`,
        );
      p.requiresGrad = false;
    }
    return { model, report: { loaded: loadedInOrder, missing: rest.missing, unexpected: rest.unexpected } };
  }
}
