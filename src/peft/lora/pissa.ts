// PiSSA (Meng et al. 2024, "Principal Singular values and Singular vectors Adaptation"):
// an initialisation, done once. With W = U·S·Vᵀ (out×in) and the top r triplets,
//   A = diag(√(S_r/s))·V_rᵀ   (r×in),   B = U_r·diag(√(S_r/s))   (out×r),
// and the base weight replaced by the residual W − s·B·A, so the model is unchanged at
// the start and training moves the principal directions. As PEFT's LoraLayer.pissa_init
// (tuners/lora/layer.py): S is divided by the scale s so that s·B·A = U_r·S_r·V_rᵀ;
// "pissa" is the exact SVD, "pissa_niter_N" the randomised SVD with N power iterations
// (torch.svd_lowrank there, randomizedSvd here).
//
// Because PiSSA changes the base weights, a trained PiSSA adapter only works on the
// residual model. `convertPissaToLora` turns it into a plain LoRA adapter of rank 2r for
// the *original* base (PEFT's subtract_mutated_init / save_pretrained(...,
// path_initial_model_for_weight_conversion=...)):
//   W + ΔW = W_res + s·B·A  and  W = W_res + s·B₀·A₀   ⇒   ΔW = s·(B·A − B₀·A₀) = s·[B | −B₀]·[A ; A₀].
// It needs the adapter as it was right after initialisation: keep it in memory with
// `initialAdapterState(pm, name)`, or save it with savePretrained right after
// getPeftModel (node/io.ts reads such a folder back).
import { fmtShape } from "../../core/errors.js";
import type { Tensor } from "../../core/tensor.js";
import { fromArray } from "../../core/tensor.js";
import { matrix } from "../../linalg/matrix.js";
import type { Svd } from "../../linalg/svd.js";
import { randomizedSvd, truncatedSvd } from "../../linalg/svd.js";
import type { LoraConfig } from "../config.js";
import { PeftError } from "../errors.js";
import { adapterStateDict } from "../format.js";
import type { PeftModel } from "../model.js";
import type { LoraLinear } from "./layer.js";

/** "pissa" → exact SVD (niter null); "pissa_niter_N" → randomised SVD with N power iterations. */
export function parsePissaInit(init: unknown): { niter: number | null } | null {
  if (init === "pissa") return { niter: null };
  const m = typeof init === "string" ? /^pissa_niter_(\d+)$/.exec(init) : null;
  return m ? { niter: Number(m[1]) } : null;
}

export interface PissaFactors {
  /** r×in, row-major f32. */
  A: Float32Array;
  /** out×r, row-major f32. */
  B: Float32Array;
  /** W − s·B·A, out×in, row-major f32. */
  residual: Float32Array;
}

/**
 * PiSSA factors of W (out×in, row-major): A = √(S_r/s)·V_rᵀ, B = U_r·√(S_r/s) and the
 * residual W − s·B·A (computed from the f32-rounded A and B, so residual + s·B·A = W to
 * rounding). `niter` null uses the exact SVD; a number, the randomised one (seeded).
 */
export function pissaFactors(
  w: ArrayLike<number>,
  out: number,
  inF: number,
  r: number,
  scale: number,
  opts: { niter?: number | null; seed?: number } = {},
): PissaFactors {
  if (r > Math.min(out, inF))
    throw new PeftError(
      `PiSSA: r = ${r} exceeds min(out, in) = ${Math.min(out, inF)} of a ${out}×${inF} weight; pick r ≤ ${Math.min(out, inF)} (rank_pattern can lower it per module)`,
    );
  if (!(scale > 0) || !Number.isFinite(scale))
    throw new PeftError(`PiSSA: the LoRA scale must be a positive finite number, got ${scale}`);
  const W = matrix(out, inF, w);
  const niter = opts.niter ?? null;
  const d: Svd = niter === null ? truncatedSvd(W, r) : randomizedSvd(W, r, { niter, seed: opts.seed ?? 0 });
  const A = new Float32Array(r * inF);
  const B = new Float32Array(out * r);
  for (let k = 0; k < r; k++) {
    const root = Math.sqrt(d.S[k] / scale);
    for (let i = 0; i < inF; i++) A[k * inF + i] = root * d.Vt.data[k * d.Vt.cols + i];
    for (let o = 0; o < out; o++) B[o * r + k] = d.U.data[o * d.U.cols + k] * root;
  }
  const residual = new Float32Array(out * inF);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inF; i++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += B[o * r + k] * A[k * inF + i];
      residual[o * inF + i] = W.data[o * inF + i] - scale * acc;
    }
  return { A, B, residual };
}

/**
 * Runs PiSSA on one layer: returns A and B for the adapter and replaces the layer's base
 * weight by the residual (as f32; a bf16/f16 weight is converted first — PEFT casts the
 * residual back to the original dtype, lorakit keeps the f32 residual, which loses nothing).
 */
export function initPissa(
  layer: LoraLinear,
  r: number,
  scale: number,
  init: string,
  seed = 0,
): { A: Tensor; B: Tensor } {
  const how = parsePissaInit(init);
  if (!how)
    throw new PeftError(
      `init_lora_weights should be 'pissa' or 'pissa_niter_[number of iters]', got ${JSON.stringify(init)} instead.`,
    );
  const wt = layer.baseWeight;
  const f = pissaFactors(layer.baseWeightValues(), layer.outFeatures, layer.inFeatures, r, scale, {
    niter: how.niter,
    seed,
  });
  const res = fromArray(f.residual, [layer.outFeatures, layer.inFeatures], "f32");
  res.name = wt.name;
  layer.base_layer.setParam("weight", res);
  return {
    A: fromArray(f.A, [r, layer.inFeatures], "f32"),
    B: fromArray(f.B, [layer.outFeatures, r], "f32"),
  };
}

/**
 * A copy of the adapter's PEFT tensors now (take it right after initialisation); the
 * `initial` argument of convertPissaToLora.
 */
export function initialAdapterState(pm: PeftModel, name: string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of adapterStateDict(pm, name)) out.set(k, t.to("f32"));
  return out;
}

/**
 * PEFT's subtract_mutated_init plus its config rules for save_pretrained(...,
 * path_initial_model_for_weight_conversion): the trained PiSSA adapter `name` as a plain
 * LoRA adapter of rank 2r (A' = [A; A₀], B' = [B, −B₀]) that applies to the original base
 * weights. Config: r and every rank_pattern value doubled; lora_alpha doubled (×√2 with
 * rsLoRA) and alpha_pattern values doubled, so each module keeps its scale;
 * init_lora_weights true. Other tensors (lora_B bias, trained base biases) are kept as
 * they are: they do not depend on the base weight. DoRA adapters cannot be converted
 * (the magnitude rescales the whole weight).
 */
export function convertPissaToLora(
  pm: PeftModel,
  name: string,
  initial: ReadonlyMap<string, Tensor>,
): { config: LoraConfig; tensors: Map<string, Tensor> } {
  const cfg = pm.peftConfig.get(name);
  if (!cfg) throw new PeftError(`convertPissaToLora: adapter "${name}" does not exist`);
  if (cfg.useRslora && (Object.keys(cfg.rankPattern).length || Object.keys(cfg.alphaPattern).length))
    throw new PeftError(
      "Passing `path_initial_model_for_weight_conversion` to `save_pretrained` is not supported when using `rank_pattern` or `alpha_pattern` at the same time as `use_rslora=True`.",
    );
  if (cfg.useDora)
    throw new PeftError(
      `convertPissaToLora: adapter "${name}" uses DoRA; its magnitude vector rescales the whole weight, so it has no rank-2r LoRA equivalent`,
    );
  const tensors = new Map<string, Tensor>();
  for (const [key, t] of adapterStateDict(pm, name)) {
    const isA = key.endsWith(".lora_A.weight");
    const isB = key.endsWith(".lora_B.weight");
    if (!isA && !isB) {
      tensors.set(key, t.to("f32"));
      continue;
    }
    const t0 = initial.get(key);
    if (!t0)
      throw new PeftError(
        `convertPissaToLora: the initial adapter has no "${key}"; pass the state saved right after initialisation (initialAdapterState or the folder savePretrained wrote then)`,
      );
    if (t0.shape.length !== 2 || t0.shape[0] !== t.shape[0] || t0.shape[1] !== t.shape[1])
      throw new PeftError(
        `convertPissaToLora: "${key}" is ${fmtShape(t.shape)} now but ${fmtShape(t0.shape)} in the initial adapter; they must be the same adapter`,
      );
    const cur = t.to("f32").data as Float32Array;
    const ini = t0.to("f32").data as Float32Array;
    const [rows, cols] = t.shape;
    if (isA) {
      // [A; A₀]: (2r)×in.
      const a = new Float32Array(2 * rows * cols);
      a.set(cur, 0);
      a.set(ini, rows * cols);
      tensors.set(key, fromArray(a, [2 * rows, cols], "f32"));
    } else {
      // [B, −B₀]: out×(2r).
      const b = new Float32Array(rows * 2 * cols);
      for (let o = 0; o < rows; o++)
        for (let k = 0; k < cols; k++) {
          b[o * 2 * cols + k] = cur[o * cols + k];
          b[o * 2 * cols + cols + k] = -ini[o * cols + k];
        }
      tensors.set(key, fromArray(b, [rows, 2 * cols], "f32"));
    }
  }
  const double = (p: Record<string, number>) =>
    Object.fromEntries(Object.entries(p).map(([k, v]) => [k, 2 * v]));
  const config: LoraConfig = {
    ...cfg,
    initLoraWeights: true,
    r: 2 * cfg.r,
    loraAlpha: cfg.useRslora ? cfg.loraAlpha * 2 ** 0.5 : 2 * cfg.loraAlpha,
    rankPattern: double(cfg.rankPattern),
    alphaPattern: double(cfg.alphaPattern),
  };
  return { config, tensors };
}
