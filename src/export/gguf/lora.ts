// A PEFT LoRA adapter as a GGUF LoRA adapter for llama.cpp (convert_lora_to_gguf.py;
// llama.cpp src/llama-adapter.cpp): general.type "adapter", adapter.type "lora",
// adapter.lora.alpha, and per adapted matrix `<llama.cpp name>.lora_a` (PEFT's A, [r, in]) and
// `.lora_b` (PEFT's B, [out, r]), B's rows permuted like the base q/k rows for `llama`.
//
// llama.cpp scales every pair by alpha / r with one alpha for the whole file and r = the
// pair's own rank (llama_adapter_lora_weight::get_scale). PEFT's scale is alpha_m / r_m per
// module (alpha_pattern / rank_pattern), or alpha_m / √r_m with rsLoRA. Where the two differ
// B is multiplied by PEFT's scale / llama.cpp's, so s·B·A is the same product.
import type { Tensor } from "../../core/tensor.js";
import type { LlamaConfig } from "../../models/llama/config.js";
import type { LoraConfig } from "../../peft/config.js";
import { KEY_PREFIX, splitAdapterTensors } from "../../peft/format.js";
import { loraScale } from "../../peft/lora/layer.js";
import { rankAndAlpha } from "../../peft/targets.js";
import { ExportError } from "../errors.js";
import type { GgmlType, GgufKv } from "./format.js";
import { kv } from "./format.js";
import { ggufArch, ggufTensorName, permuteRopeRows, ropePermutation } from "./llama-arch.js";

export type GgufAdapterDType = "f32" | "f16" | "bf16";
const TYPE: Record<GgufAdapterDType, GgmlType> = { f32: "F32", f16: "F16", bf16: "BF16" };

export interface AdapterGgufTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly type: GgmlType;
  readonly data: Float32Array;
}

export interface AdapterGguf {
  readonly metadata: GgufKv[];
  readonly tensors: AdapterGgufTensor[];
  /** adapter.lora.alpha written. */
  readonly alpha: number;
  /** Modules whose B was rescaled so that llama.cpp's alpha / r gives PEFT's scale. */
  readonly rescaled: number;
  readonly modules: number;
}

const MERGE_HINT = "export the merged model instead (lorakit export-gguf --merge)";

/** [out, in] of each adaptable linear, from the base config. */
function linearShape(c: LlamaConfig, path: string): [number, number] | null {
  const q = c.numAttentionHeads * c.headDim;
  const kvd = c.numKeyValueHeads * c.headDim;
  const m = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)$/.exec(path);
  if (path === "lm_head") return [c.vocabSize, c.hiddenSize];
  if (!m || Number(m[1]) >= c.numHiddenLayers) return null;
  const shapes: Record<string, [number, number]> = {
    q_proj: [q, c.hiddenSize],
    k_proj: [kvd, c.hiddenSize],
    v_proj: [kvd, c.hiddenSize],
    o_proj: [c.hiddenSize, q],
    gate_proj: [c.intermediateSize, c.hiddenSize],
    up_proj: [c.intermediateSize, c.hiddenSize],
    down_proj: [c.hiddenSize, c.intermediateSize],
  };
  return shapes[m[3]] ?? null;
}

/**
 * The GGUF LoRA adapter for `config`'s adapter tensors (PEFT keys), on a base model with
 * `base`. Refuses, with the reason and the --merge hint, what a GGUF LoRA cannot hold: DoRA,
 * LoRA biases, modules_to_save, an adapter on a tied lm_head.
 *
 * @example
 * const a = adapterGguf(baseConfig, adapterConfig, tensors, { dtype: "f32" });
 */
export function adapterGguf(
  base: LlamaConfig,
  config: LoraConfig,
  tensors: ReadonlyMap<string, Tensor>,
  opts: { dtype: GgufAdapterDType; name?: string; where?: string },
): AdapterGguf {
  const where = opts.where ?? "adapter";
  const arch = ggufArch(base);
  const cannot = (what: string, why: string) =>
    new ExportError(`GGUF: ${where}: a GGUF LoRA adapter cannot hold ${what}: ${why}; ${MERGE_HINT}`);
  if (!(opts.dtype in TYPE))
    throw new ExportError(
      `GGUF: an adapter's dtype must be f32, f16 or bf16, got ${JSON.stringify(opts.dtype)}`,
    );
  if (config.useDora)
    throw cannot(
      "a DoRA adapter",
      "DoRA rescales each output row by m / ‖W + s·B·A‖, and llama.cpp adds s·B·A·x only",
    );
  const { lora, other } = splitAdapterTensors(tensors, where);
  for (const [path, e] of lora) {
    if (e.magnitude) throw cannot(`a DoRA magnitude (${path})`, "llama.cpp adds s·B·A·x only");
    if (e.bBias)
      throw cannot(`a LoRA bias (${path}.lora_B.bias, lora_bias)`, "llama.cpp's LoRA has no bias term");
  }
  for (const k of other.keys()) {
    if (config.modulesToSave?.length || !k.endsWith(".bias"))
      throw cannot(
        `${KEY_PREFIX}${k}`,
        config.modulesToSave?.length
          ? `modules_to_save (${config.modulesToSave.join(", ")}) replaces whole modules, and a GGUF adapter holds only A and B pairs`
          : "it is neither a lora_A nor a lora_B tensor",
      );
    throw cannot(
      `trained biases (${KEY_PREFIX}${k}, bias: "${config.bias}")`,
      "llama.cpp's LoRA replaces no base tensor",
    );
  }
  if (lora.size === 0) throw new ExportError(`GGUF: ${where}: the adapter holds no LoRA tensors`);
  // One alpha for the file: PEFT's lora_alpha (llama.cpp reads 0 as "scale 1", so never write 0).
  const alpha = config.loraAlpha !== 0 ? config.loraAlpha : config.r;
  const dtype = TYPE[opts.dtype];
  const out: AdapterGgufTensor[] = [];
  let rescaled = 0;
  for (const path of [...lora.keys()].sort()) {
    const e = lora.get(path)!;
    if (!e.A || !e.B) throw new ExportError(`GGUF: ${where}: ${path} has lora_${e.A ? "A" : "B"} only`);
    if (path === "lm_head" && base.tieWordEmbeddings)
      throw cannot(
        "an adapter on lm_head of a model with tied embeddings",
        "llama.cpp's output layer is token_embd.weight there, which an adapter cannot target separately",
      );
    const want = linearShape(base, path);
    const gname = ggufTensorName(path);
    if (!want || !gname)
      throw new ExportError(
        `GGUF: ${where}: ${path} is not a linear layer of llama.cpp's ${arch} architecture`,
      );
    const [outF, inF] = want;
    const r = e.A.shape[0];
    if (
      e.A.shape.length !== 2 ||
      e.A.shape[1] !== inF ||
      e.B.shape.length !== 2 ||
      e.B.shape[0] !== outF ||
      e.B.shape[1] !== r
    )
      throw new ExportError(
        `GGUF: ${where}: ${path} has lora_A [${e.A.shape.join(", ")}] and lora_B [${e.B.shape.join(", ")}], but the base model's ${path} is [${outF}, ${inF}] — was it trained on another base model?`,
      );
    const ra = rankAndAlpha(config, path);
    if (ra.r !== r)
      throw new ExportError(
        `GGUF: ${where}: ${path} has rank ${r} but adapter_config.json gives it r = ${ra.r}`,
      );
    const peftScale = loraScale(ra.alpha, r, config.useRslora);
    const factor = peftScale / (alpha / r);
    let b = e.B.to("f32").data as Float32Array;
    if (factor !== 1) {
      b = Float32Array.from(b, (v) => v * factor);
      rescaled++;
    }
    const perm = ropePermutation(base, `${path}.weight`);
    if (perm) b = permuteRopeRows(b, r, perm);
    const stem = gname.slice(0, -".weight".length);
    out.push({
      name: `${stem}.weight.lora_a`,
      shape: [r, inF],
      type: dtype,
      data: e.A.to("f32").data as Float32Array,
    });
    out.push({ name: `${stem}.weight.lora_b`, shape: [outF, r], type: dtype, data: b });
  }
  const metadata: GgufKv[] = [kv.str("general.architecture", arch), kv.str("general.type", "adapter")];
  if (opts.name) metadata.push(kv.str("general.name", opts.name));
  metadata.push(kv.str("adapter.type", "lora"), kv.f32("adapter.lora.alpha", alpha));
  return { metadata, tensors: out, alpha, rescaled, modules: lora.size };
}
