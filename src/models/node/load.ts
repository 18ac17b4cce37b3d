// Reading and writing LLaMA-family checkpoints in Hugging Face layout (node only):
// config.json + model.safetensors (or shards with model.safetensors.index.json).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BYTES_PER_ELEMENT } from "../../core/dtype.js";
import type { Tensor } from "../../core/tensor.js";
import { openCheckpoint, saveShardedSafetensors } from "../../io/node/index.js";
import type { RawTensor, SafetensorsDType } from "../../io/safetensors-dtype.js";
import {
  bnbQuantizationConfig,
  isBnb4bitConfig,
  isDecoderLinearWeight,
  linear4bitModules,
  nf4StateTensors,
} from "../../quant/model.js";
import { nf4ResidentBytes } from "../../quant/nf4.js";
import type { LoadedModel, LoadModelOptions } from "../assemble.js";
import {
  checkWeightDType,
  chooseCheckpointFile,
  ModelAssembly,
  noConfigError,
  parseConfigJson,
  parseConfigText,
  residentDType,
} from "../assemble.js";
import type { LlamaConfig } from "../llama/config.js";
import { llamaConfigToJson } from "../llama/config.js";
import type { LlamaForCausalLM } from "../llama/model.js";

export type { LoadedModel, LoadModelOptions, WeightDType } from "../assemble.js";
export { residentDType } from "../assemble.js";

export function readModelConfig(dir: string) {
  const p = join(dir, "config.json");
  if (!existsSync(p)) throw noConfigError(dir);
  return parseConfigText(p, readFileSync(p, "utf8"));
}

function readRawConfig(dir: string): unknown {
  const p = join(dir, "config.json");
  return parseConfigJson(p, readFileSync(p, "utf8"));
}

/** The checkpoint file of a model folder (the shard index, or model.safetensors); a clear error otherwise. */
export function checkpointPath(dir: string): string {
  return join(
    dir,
    chooseCheckpointFile(dir, (f) => existsSync(join(dir, f))),
  );
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
  checkWeightDType(opts.dtype ?? "auto");
  const ckpt = openCheckpoint(checkpointPath(dir));
  try {
    // The whole checkpoint is one part: each tensor is read from its file when its turn comes.
    const asm = new ModelAssembly(dir, config, readRawConfig(dir), opts);
    asm.addPart({
      names: () => ckpt.names(),
      has: (n) => ckpt.has(n),
      info: (n) => ckpt.info(n),
      tensor: (n, o) => ckpt.tensor(n, o),
    });
    return asm.finish(ckpt.names());
  } finally {
    ckpt.close();
  }
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
