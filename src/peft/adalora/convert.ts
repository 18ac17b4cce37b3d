// An ADALORA adapter file's content seen as a plain LoRA adapter of its final ranks, without
// a base model: A = Q⊙Λ (rows kept), B = P, r = kept triplets, alpha so that alpha/r =
// lora_alpha/(init_r + 1e-5) (PEFT keeps ranknum = init_r). Used by `lorakit inspect`.

import type { Tensor } from "../../core/tensor.js";
import { empty } from "../../core/tensor.js";
import type { LoraConfig } from "../config.js";
import { loraConfig } from "../config.js";
import { PeftError } from "../errors.js";
import { KEY_PREFIX } from "../format.js";
import type { AdaLoraConfig } from "./config.js";

/** PEFT LoRA keys (…lora_A.weight / …lora_B.weight) and a LoRA config for an ADALORA state dict. */
export function adaLoraFileAsLora(
  cfg: AdaLoraConfig,
  tensors: ReadonlyMap<string, Tensor>,
  where = "adapter",
): { config: LoraConfig; tensors: Map<string, Tensor> } {
  const out = new Map<string, Tensor>();
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  const scale = (cfg.loraAlpha > 0 ? cfg.loraAlpha : cfg.initR) / (cfg.initR + 1e-5);
  for (const [key, A] of tensors) {
    const m = /^(.*)\.lora_A$/.exec(key);
    if (!m) continue;
    const E = tensors.get(`${m[1]}.lora_E`);
    const B = tensors.get(`${m[1]}.lora_B`);
    if (!E || !B) throw new PeftError(`${where}: ${m[1]} has lora_A without lora_E / lora_B`);
    const [r, n] = A.shape;
    if (r === 0) continue;
    const a = A.to("f32").data as Float32Array;
    const e = E.to("f32").data as Float32Array;
    const qe = empty([r, n], "f32");
    const d = qe.data as Float32Array;
    for (let i = 0; i < r; i++) for (let j = 0; j < n; j++) d[i * n + j] = a[i * n + j] * e[i];
    out.set(`${m[1]}.lora_A.weight`, qe);
    out.set(`${m[1]}.lora_B.weight`, B.to("f32"));
    const path = m[1].slice(KEY_PREFIX.length);
    rankPattern[path] = r;
    alphaPattern[path] = r * scale;
  }
  const paths = Object.keys(rankPattern);
  if (paths.length === 0) throw new PeftError(`${where}: no AdaLoRA module with a kept triplet`);
  const { targetR, initR, tinit, tfinal, deltaT, beta1, beta2, orthRegWeight, totalStep, ...lora } = cfg;
  void [targetR, initR, tinit, tfinal, deltaT, beta1, beta2, orthRegWeight, totalStep];
  const config = loraConfig({
    ...lora,
    r: rankPattern[paths[0]],
    loraAlpha: alphaPattern[paths[0]],
    targetModules: paths,
    rankPattern,
    alphaPattern,
  });
  return { config, tensors: out };
}
