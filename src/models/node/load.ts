// Reading and writing LLaMA-family checkpoints in Hugging Face layout (node only):
// config.json + model.safetensors (or shards with model.safetensors.index.json).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DType } from "../../core/dtype.js";
import { BYTES_PER_ELEMENT } from "../../core/dtype.js";
import { LorakitError } from "../../core/errors.js";
import type { Tensor } from "../../core/tensor.js";
import { openCheckpoint, saveShardedSafetensors } from "../../io/node/index.js";
import type { RawTensor, SafetensorsDType } from "../../io/safetensors-dtype.js";
import { Linear } from "../../nn/layers.js";
import type { LoadReport, TensorSource } from "../../nn/state.js";
import { loadStateDict } from "../../nn/state.js";
import { Linear4bit } from "../../quant/linear4bit.js";
import {
  bnbQuantizationConfig,
  DECODER_LINEAR,
  isBnb4bitConfig,
  isDecoderLinearWeight,
  linear4bitModules,
  nf4FromSource,
  nf4Paths,
  nf4StateTensors,
} from "../../quant/model.js";
import { nf4ResidentBytes } from "../../quant/nf4.js";
import type { LlamaConfig } from "../llama/config.js";
import { llamaConfigToJson, parseLlamaConfig } from "../llama/config.js";
import { LlamaForCausalLM } from "../llama/model.js";

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

export function readModelConfig(dir: string) {
  const p = join(dir, "config.json");
  if (!existsSync(p)) throw new LorakitError(`${dir}: no config.json (is this a Hugging Face model folder?)`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(p, "utf8"));
  } catch (e) {
    throw new LorakitError(`${p}: not valid JSON`, { cause: e });
  }
  return parseLlamaConfig(json);
}

function readRawConfig(dir: string): unknown {
  return JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
}

/** The checkpoint file of a model folder (the shard index, or model.safetensors); a clear error otherwise. */
export function checkpointPath(dir: string): string {
  for (const f of ["model.safetensors.index.json", "model.safetensors"])
    if (existsSync(join(dir, f))) return join(dir, f);
  if (existsSync(join(dir, "pytorch_model.bin")) || existsSync(join(dir, "pytorch_model.bin.index.json")))
    throw new LorakitError(
      `${dir}: only pytorch_model.bin (a Python pickle) is present; lorakit reads safetensors only and never runs code from a file.\n  Convert it once in Python: model.save_pretrained(dir, safe_serialization=True)`,
    );
  throw new LorakitError(`${dir}: no model.safetensors or model.safetensors.index.json`);
}

export interface CheckpointSummary {
  config: LlamaConfig;
  /** Every tensor of the checkpoint as stored: name, file dtype, shape, bytes. */
  tensors: { name: string; dtype: SafetensorsDType; shape: readonly number[]; bytes: number }[];
  /** True for a bitsandbytes 4-bit checkpoint. */
  quantized: boolean;
}

/**
 * What a model folder holds, from config.json and the safetensors headers alone (no weight
 * is read): a 7B checkpoint answers in milliseconds in a few MB.
 */
export function describeCheckpoint(dir: string): CheckpointSummary {
  const config = readModelConfig(dir);
  const ckpt = openCheckpoint(checkpointPath(dir));
  try {
    const tensors = ckpt.names().map((name) => {
      const i = ckpt.info(name);
      return { name, dtype: i.dtype, shape: i.shape, bytes: i.byteLength };
    });
    return { config, tensors, quantized: isBnb4bitConfig(readRawConfig(dir)) };
  } finally {
    ckpt.close();
  }
}

/**
 * Bytes the model's weights will take once loaded with `opts` (the dtype each tensor gets,
 * NF4 for the decoder linears when quantising), from the headers alone.
 */
export function residentWeightBytes(summary: CheckpointSummary, opts: LoadModelOptions = {}): number {
  const dtype = opts.dtype ?? "auto";
  let bytes = 0;
  for (const t of summary.tensors) {
    if (t.name.endsWith("rotary_emb.inv_freq")) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (summary.quantized) bytes += t.dtype === "U8" || t.dtype === "F32" ? t.bytes : n * 4;
    else if (opts.quantize === "nf4" && isDecoderLinearWeight(t.name)) bytes += nf4ResidentBytes(n);
    else bytes += n * BYTES_PER_ELEMENT[residentDType(t.name, t.dtype, dtype)];
  }
  return bytes;
}

/** The resident dtype of one checkpoint tensor under `dtype` (see LoadModelOptions). */
export function residentDType(path: string, fileDType: SafetensorsDType, dtype: WeightDType): DType {
  const isMatrix =
    path.endsWith("_proj.weight") || path === "lm_head.weight" || path.endsWith("embed_tokens.weight");
  if (!isMatrix || dtype === "f32") return "f32";
  if (dtype === "bf16") return "bf16";
  return fileDType === "BF16" ? "bf16" : "f32";
}

/**
 * Loads a Hugging Face LLaMA / Mistral / Qwen2 checkpoint folder. The model is built from
 * shape-only placeholders and each tensor is read from disk straight into its resident
 * dtype (see `opts.dtype`), one at a time, so memory peaks at the loaded model plus one
 * tensor. Fails on missing weights and shape mismatches; reports unexpected keys.
 *
 * @example
 * const { model } = loadModel("./my-model");                      // bf16 checkpoints stay bf16
 * const { model: q } = loadModel("./Llama-2-7b", { quantize: "nf4" }); // QLoRA base in ~3.9 GB
 */
export function loadModel(dir: string, opts: LoadModelOptions = {}): LoadedModel {
  const config = readModelConfig(dir);
  const dtype = opts.dtype ?? "auto";
  if (!["auto", "f32", "bf16"].includes(dtype))
    throw new LorakitError(`dtype must be auto, f32 or bf16, got ${JSON.stringify(dtype)}`);
  const ckpt = openCheckpoint(checkpointPath(dir));
  const src: TensorSource = {
    names: () => ckpt.names(),
    has: (n) => ckpt.has(n),
    shape: (n) => ckpt.info(n).shape,
    tensor: (n, o) => ckpt.tensor(n, o),
  };
  try {
    const model = new LlamaForCausalLM(config, { meta: true });
    model.nameOrPath = dir;
    // NF4 linears (a bitsandbytes 4-bit checkpoint, or opts.quantize) become Linear4bit
    // modules before the rest is loaded; their keys are then skipped.
    const quantized = new Set<string>();
    if (isBnb4bitConfig(readRawConfig(dir))) {
      for (const path of nf4Paths(ckpt.names())) {
        const bias = ckpt.has(`${path}.bias`) ? ckpt.tensor(`${path}.bias`, { dtype: "f32" }) : null;
        model.setSubmodule(path, new Linear4bit(nf4FromSource(src, path), bias));
        quantized.add(path);
      }
    } else if (opts.quantize === "nf4") {
      for (const [path, m] of [...model.namedModules()]) {
        if (!(m instanceof Linear) || !DECODER_LINEAR.test(path)) continue;
        const wKey = `${path}.weight`;
        if (!ckpt.has(wKey)) continue; // reported as missing by loadStateDict below
        checkShape(wKey, ckpt.info(wKey).shape, m.weight.shape);
        // Read in the file's own dtype (a bf16 weight is quantised from its bf16 values, and
        // the quant state records bfloat16 as bitsandbytes does); the float copy dies here.
        const w = ckpt.tensor(wKey);
        const bias =
          m.bias && ckpt.has(`${path}.bias`) ? ckpt.tensor(`${path}.bias`, { dtype: "f32" }) : null;
        model.setSubmodule(path, Linear4bit.fromWeight(w, bias));
        quantized.add(path);
      }
    }
    const isQuantKey = (n: string) => {
      const i = n.indexOf(".weight");
      return i > 0 && quantized.has(n.slice(0, i)) && n !== `${n.slice(0, i)}.bias`;
    };
    const report = loadStateDict(model, src, {
      dtypeFor: (path) => residentDType(path, ckpt.info(path).dtype, dtype),
      ignoreMissing: (p) => p === "lm_head.weight" && config.tieWordEmbeddings,
      ignoreUnexpected: (n) =>
        n.endsWith("rotary_emb.inv_freq") ||
        (n === "lm_head.weight" && config.tieWordEmbeddings) ||
        isQuantKey(n),
    });
    model.tieWeights();
    for (const [path, p] of model.namedParameters()) {
      if (p.isMeta)
        throw new LorakitError(`${dir}: ${path} was not loaded (no tensor of that name in the checkpoint)`);
      p.requiresGrad = false;
    }
    return { model, report };
  } finally {
    ckpt.close();
  }
}

function checkShape(name: string, got: readonly number[], want: readonly number[]): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i]))
    throw new LorakitError(
      `loading ${name}: the checkpoint has shape [${got.join(", ")}] but the model expects [${want.join(", ")}] (does config.json match the weights?)`,
    );
}

export interface SaveModelOptions {
  /** Largest shard in bytes (default 5e9 as transformers). */
  maxShardBytes?: number;
  /** Store linear weights as bf16 (the file's dtype). Default: each tensor's own dtype. */
  dtype?: "f32" | "bf16";
}

/** Writes config.json and the weights (sharded when large) in Hugging Face layout. */
export function saveModel(model: LlamaForCausalLM, dir: string, opts: SaveModelOptions = {}): void {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, Tensor | RawTensor>();
  for (const [path, t] of model.namedParameters()) {
    if (path === "lm_head.weight" && model.config.tieWordEmbeddings) continue;
    tensors.set(path, opts.dtype === "bf16" && t.dtype !== "bf16" ? t.to("bf16") : t);
  }
  // NF4 linears are written in the layout transformers + bitsandbytes use.
  const q4 = linear4bitModules(model);
  // (u8 tensors go as raw U8 entries: the writer reads any {dtype, shape, data: Uint8Array} as raw)
  for (const [path, l] of q4)
    for (const [k, t] of nf4StateTensors(path, l.q))
      tensors.set(k, t.dtype === "u8" ? { dtype: "U8", shape: t.shape, data: t.data as Uint8Array } : t);
  const cfgJson = llamaConfigToJson(model.config);
  if (opts.dtype) cfgJson.torch_dtype = opts.dtype === "bf16" ? "bfloat16" : "float32";
  if (q4.length > 0)
    cfgJson.quantization_config = bnbQuantizationConfig({
      doubleQuant: q4.every(([, l]) => l.q.nested !== null),
    });
  writeFileSync(join(dir, "config.json"), `${JSON.stringify(cfgJson, null, 2)}\n`);
  saveShardedSafetensors(dir, tensors, { maxShardSize: opts.maxShardBytes });
}
