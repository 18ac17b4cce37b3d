// Reading and writing LLaMA-family checkpoints in Hugging Face layout (node only):
// config.json + model.safetensors (or shards with model.safetensors.index.json).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DType } from "../../core/dtype.js";
import { LorakitError } from "../../core/errors.js";
import type { Tensor } from "../../core/tensor.js";
import { openCheckpoint, saveShardedSafetensors } from "../../io/node/index.js";
import type { RawTensor } from "../../io/safetensors-dtype.js";
import type { LoadReport, TensorSource } from "../../nn/state.js";
import { loadStateDict } from "../../nn/state.js";
import { Linear4bit } from "../../quant/linear4bit.js";
import {
  bnbQuantizationConfig,
  isBnb4bitConfig,
  linear4bitModules,
  nf4FromSource,
  nf4Paths,
  nf4StateTensors,
} from "../../quant/model.js";
import { enableNativeNf4 } from "../../quant/node/native.js";
import { llamaConfigToJson, parseLlamaConfig } from "../llama/config.js";
import { LlamaForCausalLM } from "../llama/model.js";

export interface LoadModelOptions {
  /**
   * Storage of the frozen linear weights: "f32" (default) or "bf16" (half the memory;
   * the GEMM converts while packing). Norms and embeddings stay f32.
   */
  weightDtype?: "f32" | "bf16";
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

function checkpointPath(dir: string): string {
  for (const f of ["model.safetensors.index.json", "model.safetensors"])
    if (existsSync(join(dir, f))) return join(dir, f);
  if (existsSync(join(dir, "pytorch_model.bin")) || existsSync(join(dir, "pytorch_model.bin.index.json")))
    throw new LorakitError(
      `${dir}: only pytorch_model.bin (a Python pickle) is present; lorakit reads safetensors only and never runs code from a file.\n  Convert it once in Python: model.save_pretrained(dir, safe_serialization=True)`,
    );
  throw new LorakitError(`${dir}: no model.safetensors or model.safetensors.index.json`);
}

/**
 * Loads a Hugging Face LLaMA / Mistral / Qwen2 checkpoint folder. Tensors are read one at
 * a time from disk. Fails on missing weights and shape mismatches; reports unexpected keys.
 *
 * @example
 * const { model } = loadModel("./my-model");
 */
export function loadModel(dir: string, opts: LoadModelOptions = {}): LoadedModel {
  const config = readModelConfig(dir);
  const model = new LlamaForCausalLM(config);
  const ckpt = openCheckpoint(checkpointPath(dir));
  const src: TensorSource = {
    names: () => ckpt.names(),
    has: (n) => ckpt.has(n),
    shape: (n) => ckpt.info(n).shape,
    tensor: (n, o) => ckpt.tensor(n, o),
  };
  const linearDtype: DType = opts.weightDtype ?? "f32";
  try {
    // A bitsandbytes 4-bit checkpoint (quantization_config in config.json): its NF4 linears
    // become Linear4bit modules holding the codes as stored; the rest loads as usual.
    const quantized = new Set<string>();
    if (isBnb4bitConfig(readRawConfig(dir))) {
      enableNativeNf4();
      for (const path of nf4Paths(ckpt.names())) {
        const old = model.getSubmodule(path);
        const bias = old.param("bias");
        model.setSubmodule(path, new Linear4bit(nf4FromSource(src, path), bias));
        quantized.add(path);
      }
    }
    const isQuantKey = (n: string) => {
      const i = n.indexOf(".weight");
      return i > 0 && quantized.has(n.slice(0, i)) && n !== `${n.slice(0, i)}.bias`;
    };
    const report = loadStateDict(model, src, {
      dtypeFor: (path) => (path.endsWith("_proj.weight") || path === "lm_head.weight" ? linearDtype : "f32"),
      ignoreMissing: (p) => p === "lm_head.weight" && config.tieWordEmbeddings,
      ignoreUnexpected: (n) =>
        n.endsWith("rotary_emb.inv_freq") ||
        (n === "lm_head.weight" && config.tieWordEmbeddings) ||
        isQuantKey(n),
    });
    model.tieWeights();
    for (const p of model.parameters()) p.requiresGrad = false;
    return { model, report };
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
