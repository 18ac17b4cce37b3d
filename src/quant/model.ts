// Quantising a model in place and the bitsandbytes checkpoint layout of a Linear4bit
// (what transformers + bitsandbytes write: Linear4bit._save_to_state_dict +
// QuantState.as_dict(packed=True), and read: QuantState.from_dict). Browser-safe.
import type { Tensor } from "../core/tensor.js";
import { fromArray } from "../core/tensor.js";
import { Linear } from "../nn/layers.js";
import type { Module } from "../nn/module.js";
import type { TensorSource } from "../nn/state.js";
import { Linear4bit } from "./linear4bit.js";
import type { Nf4Tensor } from "./nf4.js";
import { checkBlocksize, NF4_CODE, numelOf, parseQuantState, QuantError, quantStateJson } from "./nf4.js";

export interface QuantizeModelOptions {
  blocksize?: number;
  doubleQuant?: boolean;
  /** Which linear layers to quantise (default: every Linear inside a decoder block, `…layers.N.…`). */
  filter?: (path: string) => boolean;
}

/** Module paths inside a decoder block (model.layers.N.…): what QLoRA quantises. */
export const DECODER_LINEAR = /(^|\.)layers\.\d+\./;

/** A checkpoint key of a decoder linear's weight (model.layers.N.….X_proj.weight): what NF4 stores. */
export function isDecoderLinearWeight(name: string): boolean {
  return name.endsWith("_proj.weight") && DECODER_LINEAR.test(name);
}

/**
 * Replaces every decoder-block Linear by a Linear4bit (NF4, block 64, double quantisation),
 * as transformers' load_in_4bit does (embeddings, norms and lm_head stay as they are).
 * Returns the quantised module paths.
 *
 * @example
 * quantizeModel(model); // then getPeftModel(model, config) for QLoRA
 */
export function quantizeModel(model: Module, opts: QuantizeModelOptions = {}): string[] {
  const filter = opts.filter ?? ((p: string) => DECODER_LINEAR.test(p));
  const targets: [string, Linear][] = [];
  for (const [path, m] of model.namedModules())
    if (m instanceof Linear && filter(path)) targets.push([path, m]);
  for (const [path, lin] of targets) {
    const q = Linear4bit.fromWeight(lin.weight, lin.bias, opts);
    q.training = lin.training;
    model.setSubmodule(path, q);
  }
  return targets.map(([p]) => p);
}

/** Every Linear4bit of a model with its path. */
export function linear4bitModules(model: Module): [string, Linear4bit][] {
  const out: [string, Linear4bit][] = [];
  for (const [path, m] of model.namedModules()) if (m instanceof Linear4bit) out.push([path, m]);
  return out;
}

/** transformers' BitsAndBytesConfig(load_in_4bit=True, nf4, double quant).to_dict(), keys sorted. */
export function bnbQuantizationConfig(
  opts: { doubleQuant?: boolean; computeDtype?: string } = {},
): Record<string, unknown> {
  return {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: opts.computeDtype ?? "float32",
    bnb_4bit_quant_storage: "uint8",
    bnb_4bit_quant_type: "nf4",
    bnb_4bit_use_double_quant: opts.doubleQuant ?? true,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: null,
    llm_int8_threshold: 6.0,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: "bitsandbytes",
  };
}

/** True when a config.json object describes a bitsandbytes 4-bit checkpoint. */
export function isBnb4bitConfig(cfg: unknown): boolean {
  const q = (cfg as { quantization_config?: Record<string, unknown> } | null)?.quantization_config;
  if (!q) return false;
  if (q.quant_method !== undefined && q.quant_method !== "bitsandbytes")
    throw new QuantError(
      `quantization_config.quant_method "${String(q.quant_method)}" is not supported (only bitsandbytes 4-bit)`,
    );
  if (q.load_in_4bit !== true && q._load_in_4bit !== true)
    throw new QuantError("only bitsandbytes 4-bit (load_in_4bit) checkpoints are supported, not 8-bit");
  const t = q.bnb_4bit_quant_type ?? "fp4";
  if (t !== "nf4") throw new QuantError(`bnb_4bit_quant_type "${String(t)}" is not supported (only nf4)`);
  return true;
}

export const QUANT_STATE_SUFFIX = ".weight.quant_state.bitsandbytes__nf4";

/** The state-dict entries of one NF4 weight under `prefix` (e.g. "model.layers.0.self_attn.q_proj"). */
export function nf4StateTensors(prefix: string, q: Nf4Tensor): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  m.set(`${prefix}.weight`, fromArray(q.packed, [q.packed.length, 1], "u8"));
  if (q.nested) {
    m.set(`${prefix}.weight.absmax`, fromArray(q.nested.q, [q.nested.q.length], "u8"));
    m.set(`${prefix}.weight.nested_absmax`, fromArray(q.nested.absmax, [q.nested.absmax.length], "f32"));
    m.set(`${prefix}.weight.nested_quant_map`, fromArray(Float32Array.from(q.nested.code), [256], "f32"));
  } else if (q.absmax) m.set(`${prefix}.weight.absmax`, fromArray(q.absmax, [q.absmax.length], "f32"));
  m.set(`${prefix}.weight.quant_map`, fromArray(Float32Array.from(q.quantMap), [q.quantMap.length], "f32"));
  const js = new TextEncoder().encode(quantStateJson(q));
  m.set(`${prefix}${QUANT_STATE_SUFFIX}`, fromArray(js, [js.length], "u8"));
  return m;
}

/** Reads one NF4 weight (QuantState.from_dict) from a checkpoint. */
export function nf4FromSource(src: TensorSource, prefix: string): Nf4Tensor {
  const get = (k: string) => {
    if (!src.has(`${prefix}.${k}`))
      throw new QuantError(`${prefix}: the 4-bit checkpoint has no ${prefix}.${k}`);
    return src.tensor(`${prefix}.${k}`);
  };
  const u8 = (t: Tensor) => {
    if (t.dtype !== "u8") throw new QuantError(`${t.name ?? prefix}: expected uint8, got ${t.dtype}`);
    return t.data as Uint8Array;
  };
  const f32 = (t: Tensor) =>
    t.dtype === "f32" ? (t.data as Float32Array) : (t.to("f32").data as Float32Array);
  const info = parseQuantState(u8(get("weight.quant_state.bitsandbytes__nf4")));
  if (info.quant_type !== "nf4")
    throw new QuantError(`${prefix}: quant_type ${info.quant_type} is not supported`);
  if (info.shape?.length !== 2) throw new QuantError(`${prefix}: quant_state shape must be 2-D`);
  const packed = u8(get("weight"));
  if (packed.length * 2 < numelOf(info.shape))
    throw new QuantError(
      `${prefix}.weight holds ${packed.length} bytes, too few for shape [${info.shape.join(", ")}]`,
    );
  const absmaxT = get("weight.absmax");
  const quantMap = src.has(`${prefix}.weight.quant_map`) ? f32(get("weight.quant_map")) : NF4_CODE;
  const nestedKey = `${prefix}.weight.nested_absmax`;
  const nested = src.has(nestedKey)
    ? {
        q: u8(absmaxT),
        absmax: f32(get("weight.nested_absmax")),
        code: f32(get("weight.nested_quant_map")),
        offset: Math.fround(Number(info.nested_offset)),
        blocksize: info.nested_blocksize ?? 256,
      }
    : null;
  checkBlocksize(info.blocksize, `${prefix}.weight.quant_state`);
  if (nested) checkBlocksize(nested.blocksize, `${prefix}.weight.quant_state (nested)`);
  const blocks = Math.ceil(numelOf(info.shape) / info.blocksize);
  if (absmaxT.size < blocks)
    throw new QuantError(
      `${prefix}.weight.absmax holds ${absmaxT.size} values, too few for ${blocks} blocks of ${info.blocksize}`,
    );
  return {
    shape: info.shape,
    blocksize: info.blocksize,
    packed,
    quantMap,
    absmax: nested ? null : f32(absmaxT),
    nested,
    dtype: info.dtype,
  };
}

/** Module paths of the NF4 weights in a checkpoint. */
export function nf4Paths(names: readonly string[]): string[] {
  return names
    .filter((n) => n.endsWith(QUANT_STATE_SUFFIX))
    .map((n) => n.slice(0, -QUANT_STATE_SUFFIX.length));
}
