// What a resumed AdaLoRA run needs besides parameter values: the allocator's importance
// EMAs (ipt, exp_avg_ipt, exp_avg_unc) and the rank pattern, whose mask is applied again on
// load. With it a run killed at a checkpoint and resumed prunes the same triplets as an
// uninterrupted run (PEFT keeps these on the model and loses them with the process).
import type { AdaLoraModel } from "./model.js";

/** JSON-able state with a save/load pair, the shape of the Trainer's `extraState` option. */
export interface ResumeState {
  save(): unknown;
  load(state: unknown): void;
}

const ALLOCATOR_MAPS = ["ipt", "expAvgIpt", "expAvgUnc"] as const;

/**
 * AdaLoRA's allocator state and mask as JSON, so a resumed run masks as an uninterrupted one.
 *
 * @example
 * const trainer = new Trainer(ada, batcher, opt, sched, { steps, extraState: adaLoraResumeState(ada) });
 */
export function adaLoraResumeState(ada: AdaLoraModel): ResumeState {
  return {
    save() {
      const alloc = ada.rankAllocator;
      const out: Record<string, unknown> = {
        rankPattern: ada.peftConfig.get("default")?.rankPattern ?? null,
      };
      if (alloc)
        for (const k of ALLOCATOR_MAPS)
          out[k] = Object.fromEntries([...alloc[k]].map(([n, a]) => [n, Array.from(a)]));
      return out;
    },
    load(s) {
      const st = s as Record<string, unknown>;
      const cfg = ada.peftConfig.get("default");
      if (cfg) cfg.rankPattern = (st.rankPattern ?? null) as typeof cfg.rankPattern;
      const alloc = ada.rankAllocator;
      if (!alloc) return;
      for (const k of ALLOCATOR_MAPS) {
        alloc[k].clear();
        for (const [n, a] of Object.entries((st[k] ?? {}) as Record<string, number[]>))
          alloc[k].set(n, Float32Array.from(a));
      }
      if (cfg?.rankPattern) alloc.maskUsingRankPattern(cfg.rankPattern);
    },
  };
}
