// A new adapter made from weighted existing ones: PEFT's LoraModel.add_weighted_adapter
// (peft/tuners/lora/model.py: _check_add_weighted_adapter, add_weighted_adapter,
// _generalized_task_arithmetic_weighted_adapter, _svd_generalized_task_arithmetic_weighted_adapter)
// for the "linear", "cat" and "svd" combination types.
import type { Tensor } from "../core/tensor.js";
import { fromArray } from "../core/tensor.js";
import type { Matrix } from "../linalg/matrix.js";
import { lowRankSvd } from "../linalg/svd.js";
import type { LoraConfig } from "./config.js";
import { loraConfig } from "./config.js";
import { PeftError } from "./errors.js";
import { LoraLinear } from "./lora/layer.js";
import type { PeftModel } from "./model.js";
import { findTargets, resolveTargets } from "./targets.js";

export type CombinationType = "linear" | "cat" | "svd";

export interface WeightedAdapterOptions {
  /** Rank of an "svd" combination (PEFT's svd_rank); default the largest rank among the inputs. */
  svdRank?: number | null;
  /**
   * Quantile in [0, 1] for clamping the SVD factors (PEFT's svd_clamp): both factors are
   * clamped to ±quantile(values of U·S and Vᵀ). Default null: no clamping.
   */
  svdClamp?: number | null;
  /**
   * PEFT's svd_full_matrices. The top singular triplets do not depend on it, so it changes
   * nothing here; accepted so that PEFT calls port unchanged.
   */
  svdFullMatrices?: boolean;
}

/**
 * Adds adapter `newName` to `pm`, combining `adapters` with `weights` as PEFT's
 * add_weighted_adapter. With s_i the scale of adapter i on a module (α_i/r_i):
 *
 * - "cat": A = [w_1·s_1·A_1; w_2·s_2·A_2; …], B = [B_1, B_2, …], so ΔW = Σ w_i·s_i·B_i·A_i
 *   exactly; rank Σ r_i.
 * - "linear": A = Σ sign(w_i)·√|w_i·s_i|·A_i, B = Σ √|w_i·s_i|·B_i (the product has cross
 *   terms B_i·A_j: it is PEFT's task arithmetic on the factors, not on ΔW); every input must
 *   have the same rank.
 * - "svd": ΔW = Σ (w_i·s_i)·(s_i·B_i·A_i) — PEFT weights get_delta_weight(), which already
 *   contains s_i, by w_i·s_i, so the scale enters twice (identical to Σ w_i·ΔW_i when
 *   α = r) — then the best rank-k approximation: B = U_k·diag(S_k), A = V_kᵀ, with
 *   k = svdRank or the largest input rank.
 *
 * The new adapter has r = lora_alpha = its rank (scale 1), rank/alpha patterns cleared,
 * target_modules the union of the inputs' (regexes joined as "(a)|(b)"), and every other
 * field from the first adapter's config, as in PEFT. One adapter always combines as
 * "linear". The new adapter is not made active; use `pm.setAdapter(newName)`.
 *
 * Where lorakit differs from PEFT: an existing `newName` is an error (PEFT returns
 * silently); use_rslora is set false (as PEFT since #3449 — a copied use_rslora would scale
 * the result by √r); init_lora_weights is set true (the weights come from the
 * combination, and a copied "pissa" would rewrite the base weights when the saved adapter
 * is loaded); the arithmetic runs in f64 (PEFT: the adapters' dtype) and the SVD is taken
 * of the factored update (exact; see linalg `lowRankSvd`), so singular-vector signs, and
 * with them clamping, can differ from LAPACK's.
 *
 * @example
 * addWeightedAdapter(pm, ["math", "code"], [0.7, 0.3], "mix", "cat");
 * pm.setAdapter("mix");
 */
export function addWeightedAdapter(
  pm: PeftModel,
  adapters: readonly string[],
  weights: readonly number[],
  newName: string,
  combinationType: CombinationType = "svd",
  opts: WeightedAdapterOptions = {},
): void {
  if (pm.peftConfig.has(newName))
    throw new PeftError(`adapter "${newName}" already exists; delete it first or pick another name`);
  if (adapters.length === 0) throw new PeftError("addWeightedAdapter: name at least one adapter to combine");
  if (weights.length !== adapters.length)
    throw new PeftError(
      `addWeightedAdapter: ${adapters.length} adapters but ${weights.length} weights; give one weight per adapter`,
    );
  for (const [i, w] of weights.entries())
    if (typeof w !== "number" || !Number.isFinite(w))
      throw new PeftError(
        `addWeightedAdapter: weight ${i} (for "${adapters[i]}") must be a finite number, got ${w}`,
      );
  const configs = adapters.map((a) => {
    const c = pm.peftConfig.get(a);
    if (!c) throw new PeftError(`Adapter ${a} does not exist`);
    return c;
  });
  if (!["linear", "cat", "svd"].includes(combinationType))
    throw new PeftError(
      `Invalid combination_type: ${JSON.stringify(combinationType)}; lorakit supports "linear", "cat" and "svd"`,
    );
  const combination: CombinationType = adapters.length === 1 ? "linear" : combinationType;

  // The largest rank each adapter can have on a module (PEFT sizes the new adapter by it).
  const ranks = configs.map((c) => Math.max(c.r, ...Object.values(c.rankPattern)));
  let newRank: number;
  if (combination === "linear") {
    if (new Set(ranks).size !== 1)
      throw new PeftError(
        `All adapters must have the same r value when using combination_type linear (got ${adapters.map((a, i) => `${a}: ${ranks[i]}`).join(", ")}); use "cat" or "svd"`,
      );
    newRank = ranks[0];
  } else if (combination === "cat") newRank = ranks.reduce((s, r) => s + r, 0);
  else {
    const sr = opts.svdRank ?? null;
    if (sr !== null && (!Number.isInteger(sr) || sr <= 0))
      throw new PeftError(`svd_rank must be a positive integer, got ${sr}`);
    newRank = sr ?? Math.max(...ranks);
  }
  const clamp = opts.svdClamp ?? null;
  if (clamp !== null && !(clamp >= 0 && clamp <= 1))
    throw new PeftError(`svd_clamp is a quantile and must be in [0, 1], got ${clamp}`);

  const cfg = loraConfig({
    ...configs[0],
    r: newRank,
    loraAlpha: newRank,
    targetModules: unionTargets(pm, adapters, configs),
    rankPattern: {},
    alphaPattern: {},
    useRslora: false,
    initLoraWeights: true,
  });

  // Everything is computed before the model changes, so a failure leaves it as it was.
  const paths = findTargets(cfg, pm.baseModel, pm.baseModel.config?.modelType);
  const init = new Map<string, { A: Tensor; B: Tensor }>();
  for (const path of paths) {
    const layer = pm.baseModel.getSubmodule(path);
    // By position, as PEFT's zip(adapters, weights): a name given twice counts twice.
    const present =
      layer instanceof LoraLinear ? [...adapters.keys()].filter((i) => layer.hasAdapter(adapters[i])) : [];
    if (!(layer instanceof LoraLinear) || present.length === 0)
      throw new PeftError(
        `addWeightedAdapter: the combined target_modules cover ${path}, but none of ${adapters.map((a) => `"${a}"`).join(", ")} adapts it (No matching LoRAs found); give the adapters matching targets`,
      );
    const parts = present.map((i) => {
      const a = adapters[i];
      return {
        name: a,
        weight: weights[i],
        scale: layer.scaling.get(a)!,
        r: layer.r.get(a)!,
        A: f32(layer.lora_A.get(a)!.weight),
        B: f32(layer.lora_B.get(a)!.weight),
      };
    });
    const dims = { out: layer.outFeatures, in: layer.inFeatures, rank: newRank };
    const ab =
      combination === "cat"
        ? combineCat(parts, dims)
        : combination === "linear"
          ? combineLinear(parts, dims, path)
          : combineSvd(parts, dims, clamp);
    init.set(path, {
      A: fromArray(Float32Array.from(ab.A), [newRank, layer.inFeatures], "f32"),
      B: fromArray(Float32Array.from(ab.B), [layer.outFeatures, newRank], "f32"),
    });
  }
  pm.addAdapter(newName, cfg, {
    initFor: (path) => {
      const t = init.get(path);
      if (!t) throw new PeftError(`addWeightedAdapter: internal error, no weights computed for ${path}`);
      return t;
    },
  });
}

interface Part {
  name: string;
  weight: number;
  scale: number;
  r: number;
  /** r×in, row-major. */
  A: Float32Array;
  /** out×r, row-major. */
  B: Float32Array;
}

interface Dims {
  out: number;
  in: number;
  rank: number;
}

/** A (rank×in) and B (out×rank), row-major f64. */
interface Factors {
  A: Float64Array;
  B: Float64Array;
}

/** PEFT's "cat": A rows and B columns stacked, the weight and scale on A; unused rank left zero. */
function combineCat(parts: Part[], d: Dims): Factors {
  const A = new Float64Array(d.rank * d.in);
  const B = new Float64Array(d.out * d.rank);
  let off = 0;
  for (const p of parts) {
    const f = p.weight * p.scale;
    for (let i = 0; i < p.r * d.in; i++) A[off * d.in + i] = f * p.A[i];
    for (let o = 0; o < d.out; o++) for (let j = 0; j < p.r; j++) B[o * d.rank + off + j] = p.B[o * p.r + j];
    off += p.r;
  }
  return { A, B };
}

/**
 * PEFT's "linear" (task_arithmetic on each factor): √|w·s| on both factors, the sign of
 * w·s on A only, so a negative weight subtracts (PEFT #2811).
 */
function combineLinear(parts: Part[], d: Dims, path: string): Factors {
  const A = new Float64Array(d.rank * d.in);
  const B = new Float64Array(d.out * d.rank);
  for (const p of parts) {
    if (p.r !== d.rank)
      throw new PeftError(
        `addWeightedAdapter "linear": adapter "${p.name}" has rank ${p.r} on ${path} but the combination has rank ${d.rank} (a rank_pattern entry); use "cat" or "svd"`,
      );
    const ws = p.weight * p.scale;
    const root = Math.sqrt(Math.abs(ws));
    const fa = ws >= 0 ? root : -root;
    for (let i = 0; i < A.length; i++) A[i] += fa * p.A[i];
    for (let i = 0; i < B.length; i++) B[i] += root * p.B[i];
  }
  return { A, B };
}

/**
 * PEFT's "svd": ΔW = Σ (w_i·s_i)·get_delta_weight_i, get_delta_weight_i = s_i·B_i·A_i, then
 * U·S·Vᵀ truncated to the new rank: B = U·diag(S), A = Vᵀ. The SVD is taken of the factored
 * form [c_1·B_1 … c_n·B_n]·[A_1; …; A_n], exactly, without forming the out×in matrix. A rank
 * beyond what ΔW can have gets zero rows/columns.
 */
function combineSvd(parts: Part[], d: Dims, clamp: number | null): Factors {
  const R = parts.reduce((s, p) => s + p.r, 0);
  const left: Matrix = { rows: d.out, cols: R, data: new Float64Array(d.out * R) };
  const right: Matrix = { rows: R, cols: d.in, data: new Float64Array(R * d.in) };
  let off = 0;
  for (const p of parts) {
    const c = p.weight * p.scale * p.scale;
    for (let o = 0; o < d.out; o++)
      for (let j = 0; j < p.r; j++) left.data[o * R + off + j] = c * p.B[o * p.r + j];
    for (let i = 0; i < p.r * d.in; i++) right.data[off * d.in + i] = p.A[i];
    off += p.r;
  }
  const { U, S, Vt } = lowRankSvd(left, right);
  const k = Math.min(d.rank, S.length);
  const A = new Float64Array(d.rank * d.in);
  const B = new Float64Array(d.out * d.rank);
  for (let o = 0; o < d.out; o++)
    for (let j = 0; j < k; j++) B[o * d.rank + j] = U.data[o * U.cols + j] * S[j];
  A.set(Vt.data.subarray(0, k * d.in));
  if (clamp !== null) {
    // PEFT: dist = cat(U.flatten(), Vh.flatten()) of the rank-k factors; hi = quantile(dist, clamp).
    const dist = new Float64Array(d.out * k + k * d.in);
    let n = 0;
    for (let o = 0; o < d.out; o++) for (let j = 0; j < k; j++) dist[n++] = B[o * d.rank + j];
    for (let i = 0; i < k * d.in; i++) dist[n++] = A[i];
    const hi = quantile(dist, clamp);
    const lo = -hi;
    for (let i = 0; i < A.length; i++) A[i] = Math.min(hi, Math.max(lo, A[i]));
    for (let i = 0; i < B.length; i++) B[i] = Math.min(hi, Math.max(lo, B[i]));
  }
  return { A, B };
}

/** torch.quantile's default ("linear"): the value at position q·(n−1) of the sorted data, interpolated. */
export function quantile(values: Float64Array, q: number): number {
  if (values.length === 0) throw new PeftError("quantile of an empty set");
  const s = Float64Array.from(values).sort();
  const pos = q * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/**
 * The new adapter's target_modules: lists (and null / "all-linear", which PEFT resolves to
 * name sets before it stores them) are united; regex strings are joined "(a)|(b)"; a mix of
 * the two is refused as in PEFT.
 */
function unionTargets(pm: PeftModel, adapters: readonly string[], configs: LoraConfig[]): string[] | string {
  const modelType = pm.baseModel.config?.modelType;
  const resolved = configs.map((c) => resolveTargets(c, pm.baseModel, modelType));
  const kinds = new Set(resolved.map((t) => (typeof t === "string" ? "str" : "list")));
  if (kinds.size > 1)
    throw new PeftError(
      `all adapter configs should follow the same target modules type. Combining adapters with \`target_modules\` type being a mix of list/set and string is not supported (${adapters.map((a, i) => `${a}: ${JSON.stringify(configs[i].targetModules)}`).join(", ")}).`,
    );
  if (typeof resolved[0] === "string") return resolved.map((t) => `(${t})`).join("|");
  return [...new Set(resolved.flat() as string[])].sort();
}

function f32(t: Tensor): Float32Array {
  return (t.dtype === "f32" ? t.data : t.to("f32").data) as Float32Array;
}
