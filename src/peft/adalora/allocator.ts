// PEFT's RankAllocator (peft/tuners/adalora/layer.py), step for step: sensitivity
// |p·∂L/∂p| smoothed by an EMA (β1), its uncertainty by another (β2), a triplet's score =
// score(Λᵢ) + mean over Qᵢ's row + mean over Pᵢ's column, the cubic budget schedule, and
// masking Λ to the budget. Arithmetic is f32 per operation (Math.fround), as torch does on
// f32 tensors, so masks match PEFT's at the threshold.
import type { AdaLoraConfig, AdaLoraRankPattern } from "./config.js";
import type { AdaLoraLinear } from "./layer.js";

const fr = Math.fround;

type Kind = "lora_A" | "lora_B" | "lora_E";
const KINDS: readonly Kind[] = ["lora_A", "lora_B", "lora_E"];

export interface BudgetStep {
  budget: number;
  /** Whether this step masks (PEFT's mask_ind). */
  maskInd: boolean;
}

export interface Allocation {
  budget: number;
  /** The new mask, keyed "<path>.lora_E.<adapter>" (null when this step did not mask). */
  rankPattern: AdaLoraRankPattern | null;
}

export class RankAllocator {
  /** PEFT's ipt / exp_avg_ipt / exp_avg_unc, keyed by parameter name "<path>.lora_A.<adapter>". */
  ipt = new Map<string, Float32Array>();
  expAvgIpt = new Map<string, Float32Array>();
  expAvgUnc = new Map<string, Float32Array>();
  /** Σ r over the modules at the start (init_bgt) and target_r × modules (target_bgt). */
  readonly initBgt: number;
  readonly targetBgt: number;
  /** Modules as "<path>.%s.<adapter>", sorted (PEFT's name_set). */
  readonly nameSet: string[];
  /** The scores of the last masking step, keyed "<path>.lora_E.<adapter>" (for inspection and tests). */
  lastTripletIpt: Map<string, Float32Array> | null = null;
  lastThreshold: number | null = null;

  constructor(
    private readonly layers: () => Iterable<[string, AdaLoraLinear]>,
    readonly config: AdaLoraConfig,
    readonly adapterName: string,
  ) {
    const { beta1, beta2 } = config;
    if (!(beta1 > 0 && beta1 < 1 && beta2 > 0 && beta2 < 1))
      throw new Error(`RankAllocator: beta1 and beta2 must be in (0, 1), got ${beta1} and ${beta2}`);
    let init = 0;
    const names: string[] = [];
    for (const [path, l] of this.layers()) {
      if (!l.hasAdapter(adapterName)) continue;
      init += l.r.get(adapterName)!;
      names.push(`${path}.%s.${adapterName}`);
    }
    this.initBgt = init;
    this.nameSet = names.sort();
    this.targetBgt = config.targetR * names.length;
  }

  resetIpt(): void {
    this.ipt = new Map();
    this.expAvgIpt = new Map();
    this.expAvgUnc = new Map();
  }

  /** (name, parameter) for every A, B, E of the adapter, in module order. */
  private *params(): IterableIterator<[string, string, Kind, AdaLoraLinear]> {
    for (const [path, l] of this.layers()) {
      if (!l.hasAdapter(this.adapterName)) continue;
      for (const k of KINDS) yield [`${path}.${k}.${this.adapterName}`, path, k, l];
    }
  }

  /**
   * PEFT's budget_schedule: init_bgt up to tinit; target_bgt after total_step − tfinal;
   * in between budget = ⌊(init − target)·(1 − (t − tinit)/(T − tfinal − tinit))³ + target⌋,
   * masking every deltaT steps.
   */
  budgetSchedule(step: number): BudgetStep {
    const { tinit, tfinal } = this.config;
    const total = this.config.totalStep!;
    if (step <= tinit) return { budget: this.initBgt, maskInd: false };
    if (step > total - tfinal) return { budget: this.targetBgt, maskInd: true };
    const mulCoeff = 1 - (step - tinit) / (total - tfinal - tinit);
    const budget = Math.trunc((this.initBgt - this.targetBgt) * mulCoeff ** 3 + this.targetBgt);
    return { budget, maskInd: step % this.config.deltaT === 0 };
  }

  /** PEFT's update_ipt: needs every A, B, E to hold its gradient. */
  updateIpt(): void {
    const b1 = fr(this.config.beta1);
    const c1 = fr(1 - this.config.beta1);
    const b2 = fr(this.config.beta2);
    const c2 = fr(1 - this.config.beta2);
    for (const [n, , kind, l] of this.params()) {
      const t = l[kind].get(this.adapterName)!;
      const p = t.data as Float32Array;
      const gT = t.grad;
      const g = gT ? (gT.data as Float32Array) : null;
      let ipt = this.ipt.get(n);
      if (!ipt || ipt.length !== p.length) {
        ipt = new Float32Array(p.length);
        this.ipt.set(n, ipt);
        this.expAvgIpt.set(n, new Float32Array(p.length));
        this.expAvgUnc.set(n, new Float32Array(p.length));
      }
      const ea = this.expAvgIpt.get(n)!;
      const eu = this.expAvgUnc.get(n)!;
      for (let i = 0; i < p.length; i++) {
        ipt[i] = g ? Math.abs(fr(p[i] * g[i])) : 0;
        ea[i] = fr(fr(b1 * ea[i]) + fr(c1 * ipt[i]));
        eu[i] = fr(fr(b2 * eu[i]) + fr(c2 * Math.abs(fr(ipt[i] - ea[i]))));
      }
    }
  }

  /** PEFT's _element_score: exp_avg_ipt ⊙ exp_avg_unc. */
  private elementScore(n: string): Float32Array {
    const ea = this.expAvgIpt.get(n);
    const eu = this.expAvgUnc.get(n);
    if (!ea || !eu) throw new Error(`RankAllocator: no importance for ${n} yet (update_ipt first)`);
    const out = new Float32Array(ea.length);
    for (let i = 0; i < ea.length; i++) out[i] = fr(ea[i] * eu[i]);
    return out;
  }

  /** Each triplet's score: score(Λᵢ) + mean_j score(Qᵢⱼ) + mean_k score(Pₖᵢ), keyed by the lora_E name. */
  tripletScores(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    const ab = new Map<string, Float32Array>();
    for (const [n, path, kind, l] of this.params()) {
      const r = l.r.get(this.adapterName)!;
      const s = this.elementScore(n);
      const key = `${path}.lora_E.${this.adapterName}`;
      if (kind === "lora_E") {
        out.set(key, s);
        continue;
      }
      const mean = new Float32Array(r);
      if (kind === "lora_A") {
        const cols = l.inFeatures;
        for (let i = 0; i < r; i++) {
          let acc = 0;
          for (let j = 0; j < cols; j++) acc += s[i * cols + j];
          mean[i] = fr(fr(acc) / cols);
        }
      } else {
        const rows = l.outFeatures;
        for (let i = 0; i < r; i++) {
          let acc = 0;
          for (let k = 0; k < rows; k++) acc += s[k * r + i];
          mean[i] = fr(fr(acc) / rows);
        }
      }
      const prev = ab.get(key);
      if (prev) for (let i = 0; i < r; i++) prev[i] = fr(prev[i] + mean[i]);
      else ab.set(key, mean);
    }
    for (const [key, e] of out) {
      const v = ab.get(key)!;
      for (let i = 0; i < e.length; i++) e[i] = fr(e[i] + v[i]);
    }
    return out;
  }

  /**
   * PEFT's mask_to_budget: the threshold is the (init_bgt − budget)-th smallest triplet
   * score (torch.kthvalue); every Λᵢ whose score is ≤ it is set to 0.
   */
  maskToBudget(budget: number): AdaLoraRankPattern {
    const trip = this.tripletScores();
    const all: number[] = [];
    for (const v of trip.values()) for (const x of v) all.push(x);
    all.sort((a, b) => a - b);
    const k = this.initBgt - budget;
    // torch.kthvalue refuses k = 0; a budget that keeps everything masks nothing.
    const threshold = k >= 1 ? all[Math.min(k, all.length) - 1] : Number.NEGATIVE_INFINITY;
    this.lastTripletIpt = trip;
    this.lastThreshold = threshold;
    const rankPattern: AdaLoraRankPattern = {};
    for (const [path, l] of this.layers()) {
      if (!l.hasAdapter(this.adapterName)) continue;
      const key = `${path}.lora_E.${this.adapterName}`;
      const s = trip.get(key)!;
      const e = l.lora_E.get(this.adapterName)!.data as Float32Array;
      const keep: boolean[] = [];
      for (let i = 0; i < s.length; i++) {
        const drop = s[i] <= threshold;
        if (drop) e[i] = 0;
        keep.push(!drop);
      }
      rankPattern[key] = keep;
    }
    return rankPattern;
  }

  /** PEFT's update_and_allocate(model, global_step, force_mask). */
  updateAndAllocate(globalStep: number, forceMask = false): Allocation {
    if (globalStep < this.config.totalStep! - this.config.tfinal) this.updateIpt();
    const { budget, maskInd } = this.budgetSchedule(globalStep);
    const rankPattern = maskInd || forceMask ? this.maskToBudget(budget) : null;
    return { budget, rankPattern };
  }

  /**
   * PEFT's mask_using_rank_pattern: zero Λᵢ where the pattern says false. Keys may carry the
   * adapter name ("….lora_E.default") or not (as saved).
   */
  maskUsingRankPattern(rankPattern: AdaLoraRankPattern): void {
    for (const [path, l] of this.layers()) {
      if (!l.hasAdapter(this.adapterName)) continue;
      const mask = rankPattern[`${path}.lora_E.${this.adapterName}`] ?? rankPattern[`${path}.lora_E`];
      if (!mask) continue;
      const e = l.lora_E.get(this.adapterName)!.data as Float32Array;
      for (let i = 0; i < e.length && i < mask.length; i++) if (!mask[i]) e[i] = 0;
    }
  }
}
