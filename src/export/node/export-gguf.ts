// `lorakit export-gguf` as library functions (node only): a Hugging Face model folder, a PEFT
// adapter, or the two merged, written as GGUF files that llama.cpp (and Ollama, LM Studio,
// node-llama-cpp) load. The base model streams from its checkpoint tensor by tensor.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import type { Tensor } from "../../core/tensor.js";
import { openCheckpoint } from "../../io/node/index.js";
import type { LlamaConfig } from "../../models/llama/config.js";
import type { LlamaForCausalLM } from "../../models/llama/model.js";
import { checkpointPath, loadModel, readModelConfig } from "../../models/node/load.js";
import { fromPretrained, readAdapterDir } from "../../peft/node/io.js";
import { isBnb4bitConfig } from "../../quant/model.js";
import { ExportError } from "../errors.js";
import { encodeGgmlData } from "../gguf/encode.js";
import type { GgufKv } from "../gguf/format.js";
import type { GgufModelDType, GgufModelPlan } from "../gguf/llama-arch.js";
import { llama3RopeFactors, permuteRopeRows, planModelGguf } from "../gguf/llama-arch.js";
import type { GgufAdapterDType } from "../gguf/lora.js";
import { adapterGguf } from "../gguf/lora.js";
import { tokenizerGguf } from "../gguf/tokenizer.js";
import { writeGgufFile } from "./gguf-file.js";

/** "auto": the checkpoint's own float type (bf16 stays bf16, f16 stays f16, else f32). */
export type GgufDTypeOption = GgufModelDType | "auto";

export interface ExportModelResult {
  out: string;
  arch: string;
  /** The tensor type of the weight matrices. */
  dtype: GgufModelDType;
  tensors: number;
  bytes: number;
  /** tokenizer.ggml.pre */
  pre: string;
  chatTemplate: string | null;
  addBos: boolean | null;
  warnings: string[];
}

function readJsonIfAny(path: string): unknown {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ExportError(`${path}: not valid JSON`, { cause: e });
  }
}

/**
 * The chat template files of a folder as gguf-py's SpecialVocab reads them: chat_template.jinja,
 * with additional_chat_templates/*.jinja as named templates beside it ("default" first, the others
 * by file name; the converter takes them in directory order), else chat_template.json's
 * chat_template.
 */
function folderChatTemplates(dir: string): string | { name: string; template: string }[] | null {
  const jinja = join(dir, "chat_template.jinja");
  if (existsSync(jinja)) {
    const main = readFileSync(jinja, "utf8");
    const extraDir = join(dir, "additional_chat_templates");
    const extra = existsSync(extraDir)
      ? readdirSync(extraDir)
          .filter((f) => f.endsWith(".jinja"))
          .sort()
      : [];
    if (extra.length === 0) return main;
    return [
      { name: "default", template: main },
      ...extra.map((f) => ({
        name: f.slice(0, -".jinja".length),
        template: readFileSync(join(extraDir, f), "utf8"),
      })),
    ];
  }
  const json = join(dir, "chat_template.json");
  if (existsSync(json)) {
    const parsed = readJsonIfAny(json);
    const t =
      typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>).chat_template
        : undefined;
    if (t === undefined || t === null) return null;
    if (typeof t === "string" || Array.isArray(t)) return t as string | { name: string; template: string }[];
    throw new ExportError(`${json}: chat_template must be a string or a list of {name, template}`);
  }
  return null;
}

/** The tokenizer metadata of a model folder (a GGUF model carries its tokenizer). */
function folderTokenizer(dir: string, config: LlamaConfig, arch: string) {
  const tjPath = join(dir, "tokenizer.json");
  if (!existsSync(tjPath))
    throw new ExportError(
      `${dir}: no tokenizer.json; a GGUF model carries its tokenizer, so the folder needs one (AutoTokenizer.from_pretrained(dir).save_pretrained(dir) writes it)`,
    );
  const raw = readJsonIfAny(join(dir, "config.json")) as Record<string, unknown>;
  return tokenizerGguf({
    tokenizerJson: readJsonIfAny(tjPath),
    tokenizerConfig: readJsonIfAny(join(dir, "tokenizer_config.json")),
    vocabSize: config.vocabSize,
    configTokenIds: {
      bos: raw.bos_token_id,
      eos: raw.eos_token_id,
      unk: raw.unk_token_id,
      sep: raw.sep_token_id,
      pad: raw.pad_token_id,
      mask: raw.mask_token_id,
    },
    chatTemplateFile: folderChatTemplates(dir),
    writeAddSpacePrefix: arch === "llama",
  });
}

/** Model plan metadata with the tokenizer's keys before general.quantization_version (as the converter orders them). */
function withTokenizer(plan: GgufModelPlan, tok: GgufKv[]): GgufKv[] {
  const last = plan.metadata[plan.metadata.length - 1];
  return [...plan.metadata.slice(0, -1), ...tok, last];
}

function resolveDType(dtype: GgufDTypeOption, fileDTypes: readonly string[]): GgufModelDType {
  if (dtype !== "auto") return dtype;
  if (fileDTypes.length && fileDTypes.every((d) => d === "BF16")) return "bf16";
  if (fileDTypes.length && fileDTypes.every((d) => d === "F16")) return "f16";
  return "f32";
}

export interface ExportModelOptions {
  dtype?: GgufDTypeOption;
  /** general.name (default: the folder's name). */
  name?: string;
  /** Called after each tensor is written. */
  onTensor?: (name: string, done: number, total: number) => void;
}

function checkOut(out: string, inputs: string[]): void {
  if (!out.endsWith(".gguf")) throw new ExportError(`--out ${out}: name the file *.gguf`);
  for (const i of inputs)
    if (resolve(out) === resolve(i))
      throw new ExportError(`--out ${out} is one of the inputs; write somewhere else`);
}

/**
 * Writes the model folder `dir` (config.json, safetensors, tokenizer.json) as one GGUF file
 * for llama.cpp, reading one tensor at a time.
 *
 * @example
 * const r = exportModelGguf("./Qwen2.5-0.5B", "./qwen2.5-0.5b-f16.gguf", { dtype: "f16" });
 */
export function exportModelGguf(dir: string, out: string, opts: ExportModelOptions = {}): ExportModelResult {
  checkOut(out, [dir]);
  const config = readModelConfig(dir);
  if (isBnb4bitConfig(readJsonIfAny(join(dir, "config.json"))))
    throw new ExportError(
      `${dir} is a 4-bit bitsandbytes checkpoint; export the float checkpoint it was quantised from (--dtype q8_0 gives an 8-bit GGUF)`,
    );
  const ckpt = openCheckpoint(checkpointPath(dir));
  try {
    const names = ckpt.names();
    const matrices = names.filter((n) => ckpt.info(n).shape.length === 2).map((n) => ckpt.info(n).dtype);
    const dtype = resolveDType(opts.dtype ?? "auto", matrices);
    const plan = planModelGguf(config, names, (n) => ckpt.info(n).shape, {
      dtype,
      name: opts.name ?? basename(resolve(dir)),
    });
    const tok = folderTokenizer(dir, config, plan.arch);
    const bytes = writeGgufFile(out, withTokenizer(plan, tok.metadata), plan.tensors, (i, info) => {
      const t = plan.tensors[i];
      let x: Float32Array;
      if (t.source === "rope_freqs") x = llama3RopeFactors(config);
      else {
        x = ckpt.tensor(t.source, { dtype: "f32" }).data as Float32Array;
        if (t.permute) x = permuteRopeRows(x, x.length / t.shape[0], t.permute);
      }
      const data = encodeGgmlData(x, info.type);
      opts.onTensor?.(info.name, i + 1, plan.tensors.length);
      return data;
    });
    return {
      out,
      arch: plan.arch,
      dtype,
      tensors: plan.tensors.length,
      bytes,
      pre: tok.pre,
      chatTemplate: tok.chatTemplate,
      addBos: tok.addBos,
      warnings: plan.warnings,
    };
  } finally {
    ckpt.close();
  }
}

export interface ExportAdapterResult {
  out: string;
  arch: string;
  modules: number;
  /** adapter.lora.alpha */
  alpha: number;
  /** Modules whose B carries PEFT's scale / llama.cpp's (rsLoRA, rank or alpha patterns). */
  rescaled: number;
  bytes: number;
}

/**
 * Writes the PEFT adapter in `adapterDir` as a GGUF LoRA adapter for the base model in
 * `modelDir` (only its config.json is read).
 *
 * @example
 * exportAdapterGguf("./Llama-3.2-1B", "./out/adapter", "./adapter.gguf");
 */
export function exportAdapterGguf(
  modelDir: string,
  adapterDir: string,
  out: string,
  opts: { dtype?: GgufAdapterDType; name?: string } = {},
): ExportAdapterResult {
  checkOut(out, [modelDir, adapterDir]);
  const base = readModelConfig(modelDir);
  const { config, tensors } = readAdapterDir(adapterDir);
  const a = adapterGguf(base, config, tensors, {
    dtype: opts.dtype ?? "f32",
    name: opts.name ?? basename(resolve(adapterDir)),
    where: adapterDir,
  });
  const bytes = writeGgufFile(out, a.metadata, a.tensors, (i, info) =>
    encodeGgmlData(a.tensors[i].data, info.type),
  );
  return {
    out,
    arch: base.modelType === "qwen2" ? "qwen2" : "llama",
    modules: a.modules,
    alpha: a.alpha,
    rescaled: a.rescaled,
    bytes,
  };
}

/**
 * Writes an in-memory model (e.g. a merged PeftModel's base) as a GGUF model, with the
 * tokenizer of `tokenizerDir`.
 */
export function exportLoadedModelGguf(
  model: LlamaForCausalLM,
  tokenizerDir: string,
  out: string,
  opts: { dtype: GgufModelDType; name?: string },
): ExportModelResult {
  const params = new Map<string, Tensor>(model.namedParameters());
  const plan = planModelGguf(model.config, [...params.keys()], (n) => params.get(n)!.shape, opts);
  const tok = folderTokenizer(tokenizerDir, model.config, plan.arch);
  const bytes = writeGgufFile(out, withTokenizer(plan, tok.metadata), plan.tensors, (i, info) => {
    const t = plan.tensors[i];
    let x: Float32Array;
    if (t.source === "rope_freqs") x = llama3RopeFactors(model.config);
    else {
      x = params.get(t.source)!.to("f32").data as Float32Array;
      if (t.permute) x = permuteRopeRows(x, x.length / t.shape[0], t.permute);
    }
    return encodeGgmlData(x, info.type);
  });
  return {
    out,
    arch: plan.arch,
    dtype: opts.dtype,
    tensors: plan.tensors.length,
    bytes,
    pre: tok.pre,
    chatTemplate: tok.chatTemplate,
    addBos: tok.addBos,
    warnings: plan.warnings,
  };
}

/**
 * Merges the adapter into the base model (W += s·B·A, as `lorakit merge`; DoRA included) and
 * writes the result as a GGUF model.
 *
 * @example
 * exportMergedGguf("./Llama-3.2-1B", "./out/adapter", "./merged-q8_0.gguf", { dtype: "q8_0" });
 */
export function exportMergedGguf(
  modelDir: string,
  adapterDir: string,
  out: string,
  opts: ExportModelOptions = {},
): ExportModelResult {
  checkOut(out, [modelDir, adapterDir]);
  const { model } = loadModel(modelDir, { dtype: "auto" });
  const fileDType = model.model.embed_tokens.weight.dtype === "bf16" ? ["BF16"] : ["F32"];
  const dtype = resolveDType(opts.dtype ?? "auto", fileDType);
  const merged = fromPretrained(model, adapterDir).mergeAndUnload();
  return exportLoadedModelGguf(merged, modelDir, out, {
    dtype,
    name: opts.name ?? `${basename(resolve(modelDir))}+${basename(resolve(adapterDir))}`,
  });
}
