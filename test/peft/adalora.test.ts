// AdaLoRA against scripts/fixtures/make_adalora_gora_fixtures.py (a PyTorch restatement of
// PEFT's RankAllocator / SVDLinear / orth_reg): budget schedule, importance EMAs, triplet
// scores and masks step by step, the forward, the regulariser; then save → load and the
// conversion to plain LoRA, both of which must give the same outputs.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { inspectAdapter } from "../../src/cli/commands/inspect.js";
import { Rng, randNormal } from "../../src/core/rng.js";
import type { Tensor } from "../../src/core/tensor.js";
import { fromArray } from "../../src/core/tensor.js";
import { Linear } from "../../src/nn/layers.js";
import { Module } from "../../src/nn/module.js";
import { adaLoraConfig } from "../../src/peft/adalora/config.js";
import { AdaLoraLinear } from "../../src/peft/adalora/layer.js";
import { AdaLoraModel, adaLoraToLora } from "../../src/peft/adalora/model.js";
import { loadAdaLora, saveAdaLora } from "../../src/peft/adalora/node/io.js";
import { getPeftModel } from "../../src/peft/model.js";

const FIX = JSON.parse(
  readFileSync(new URL("../../../test/fixtures/adalora/adalora.json", import.meta.url), "utf8"),
);

class Node extends Module {
  add(name: string, m: Module): this {
    this.addModule(name, m);
    return this;
  }
}

/** A module tree with linear layers at the fixture's paths; forward runs each on x and sums outputs' first column. */
class Tree extends Module {
  readonly config = { modelType: "test" };
  constructor(shapes: Record<string, [number, number]>, seed = 3) {
    super();
    const rng = new Rng(seed);
    for (const [path, [i, o]] of Object.entries(shapes)) {
      const parts = path.split(".");
      let m: Module = this;
      for (const part of parts.slice(0, -1)) {
        let c: Module;
        try {
          c = m.getSubmodule(part);
        } catch {
          c = new Node();
          (m as Node).add.call(m, part, c);
        }
        m = c;
      }
      (m as Node).add.call(m, parts[parts.length - 1], new Linear(i, o, { rng }));
    }
  }
  add(name: string, m: Module): this {
    this.addModule(name, m);
    return this;
  }
  forward(x: Tensor): Tensor {
    return x;
  }
}

const SHAPES = FIX.shapes as Record<string, [number, number]>;
const CFG = FIX.config;

function makeModel(): AdaLoraModel<Tree> {
  const m = new AdaLoraModel(new Tree(SHAPES));
  m.addAdapter("default", {
    initR: CFG.init_r,
    targetR: CFG.target_r,
    tinit: CFG.tinit,
    tfinal: CFG.tfinal,
    deltaT: CFG.deltaT,
    totalStep: CFG.total_step,
    beta1: CFG.beta1,
    beta2: CFG.beta2,
    loraAlpha: CFG.lora_alpha,
    targetModules: ["q_proj", "v_proj"],
  });
  return m;
}

function paramOf(m: AdaLoraModel, name: string): Tensor {
  const match = /^(.*)\.(lora_[ABE])\.default$/.exec(name)!;
  const l = m.baseModel.getSubmodule(match[1]) as AdaLoraLinear;
  return l[match[2] as "lora_A" | "lora_B" | "lora_E"].get("default")!;
}

function close(
  actual: ArrayLike<number>,
  expected: readonly number[],
  what: string,
  rtol = 1e-5,
  atol = 1e-7,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++)
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= atol + rtol * Math.abs(expected[i]),
      `${what}[${i}]: ${actual[i]} vs ${expected[i]}`,
    );
}

/** Runs the fixture's 12 steps through AdaLoraModel.updateAndAllocate, checking each. */
function runSteps(m: AdaLoraModel): void {
  for (const rec of FIX.steps) {
    for (const [n, v] of Object.entries(rec.params as Record<string, number[]>)) {
      const p = paramOf(m, n);
      (p.data as Float32Array).set(v);
      p.grad = fromArray(Float32Array.from(rec.grads[n] as number[]), p.shape);
    }
    const a = m.updateAndAllocate(rec.step)!;
    const alloc = m.rankAllocator!;
    if (rec.budget !== null) assert.equal(a.budget, rec.budget, `budget at step ${rec.step}`);
    if (rec.rank_pattern) {
      assert.deepEqual(a.rankPattern, rec.rank_pattern, `rank pattern at step ${rec.step}`);
      close([alloc.lastThreshold!], [rec.threshold], `threshold at step ${rec.step}`);
      for (const [k, v] of Object.entries(rec.triplet_ipt as Record<string, number[]>))
        close(alloc.lastTripletIpt!.get(k)!, v, `triplet score ${k} at step ${rec.step}`, 1e-4, 1e-9);
    } else if (rec.budget !== null) assert.equal(a.rankPattern, null, `no mask at step ${rec.step}`);
    for (const [n, v] of Object.entries(rec.exp_avg_ipt as Record<string, number[]>))
      close(alloc.expAvgIpt.get(n)!, v, `exp_avg_ipt ${n} at step ${rec.step}`);
    for (const [n, v] of Object.entries(rec.exp_avg_unc as Record<string, number[]>))
      close(alloc.expAvgUnc.get(n)!, v, `exp_avg_unc ${n} at step ${rec.step}`);
    if (Object.keys(rec.exp_avg_ipt).length === 0)
      assert.equal(alloc.expAvgIpt.size, 0, "reset_ipt after the final mask");
    for (const [n, v] of Object.entries(rec.E_after as Record<string, number[]>))
      close(paramOf(m, n).data as Float32Array, v, `${n} after step ${rec.step}`);
  }
}

test("AdaLoRA config: PEFT's defaults and checks", () => {
  const c = adaLoraConfig({ totalStep: 100 });
  assert.equal(c.initR, 12);
  assert.equal(c.targetR, 8);
  assert.equal(c.beta1, 0.85);
  assert.equal(c.orthRegWeight, 0.5);
  assert.throws(() => adaLoraConfig({}), /total_step/);
  assert.throws(() => adaLoraConfig({ totalStep: 10, tinit: 8, tfinal: 2 }), /budgeting phase/);
});

test("AdaLoRA budget schedule equals PEFT's budget_schedule", () => {
  const m = makeModel();
  const alloc = m.rankAllocator!;
  assert.equal(alloc.initBgt, FIX.init_bgt);
  assert.equal(alloc.targetBgt, FIX.target_bgt);
  FIX.schedule.forEach(([budget, maskInd]: [number, boolean], step: number) => {
    assert.deepEqual(alloc.budgetSchedule(step), { budget, maskInd }, `step ${step}`);
  });
});

test("AdaLoRA importance, scores and masks step by step equal PEFT's", () => {
  const m = makeModel();
  runSteps(m);
  assert.deepEqual(m.peftConfig.get("default")!.rankPattern, FIX.final_rank_pattern);
});

test("AdaLoraLinear forward equals SVDLinear: W·x + (x·(A⊙E)ᵀ·Bᵀ)·α/(ranknum + 1e-5)", () => {
  const f = FIX.forward;
  const lin = new Linear(f.in, f.out, { weight: fromArray(Float32Array.from(f.W), [f.out, f.in]) });
  const t = (v: number[], s: number[]) => fromArray(Float32Array.from(v), s);
  const l = AdaLoraLinear.fromBase(
    lin,
    "default",
    {
      r: f.r,
      alpha: CFG.lora_alpha,
      dropout: 0,
      A: t(f.A, [f.r, f.in]),
      E: t(f.E, [f.r, 1]),
      B: t(f.B, [f.out, f.r]),
    },
    new Rng(0),
  );
  const y = l.forward(t(f.x, [3, f.in]));
  close(y.data as Float32Array, f.y, "y", 1e-5, 1e-6);
  // merge = unmerged forward; unmerge restores W
  l.merge();
  close(l.forward(t(f.x, [3, f.in])).data as Float32Array, f.y, "merged y", 1e-5, 1e-5);
  l.unmerge();
  close(lin.weight.data as Float32Array, f.W, "W after unmerge", 1e-6, 1e-6);
});

test("AdaLoRA init: Λ = 0, so the start is the base model", () => {
  const m = makeModel();
  for (const [, l] of m.adaLoraLayers()) {
    assert.ok((l.lora_E.get("default")!.data as Float32Array).every((v) => v === 0));
    const x = randNormal(new Rng(1), [2, l.inFeatures]);
    assert.deepEqual(l.forward(x).toArray(), l.base_layer.forward(x).toArray());
  }
});

test("AdaLoRA orthogonal regulariser equals PEFT's orth_reg (mean ‖QQᵀ−I‖_F, ‖PᵀP−I‖_F × weight)", () => {
  const m = makeModel();
  for (const [n, v] of Object.entries(FIX.orth_reg.params_after_last_step as Record<string, number[]>))
    (paramOf(m, n).data as Float32Array).set(v);
  close([m.orthRegularization().item()], [FIX.orth_reg.value], "orth_reg", 1e-5);
});

function forwardAll(m: { baseModel: Module }, seed = 5): number[][] {
  const out: number[][] = [];
  const rng = new Rng(seed);
  for (const path of Object.keys(SHAPES)) {
    const l = m.baseModel.getSubmodule(path) as unknown as { inFeatures: number; forward(x: Tensor): Tensor };
    out.push(l.forward(randNormal(rng, [2, l.inFeatures])).toArray());
  }
  return out;
}

test("AdaLoRA saves in PEFT's ADALORA format, loads back, and converts to plain LoRA", () => {
  const m = makeModel();
  runSteps(m);
  const want = forwardAll(m);
  const dir = mkdtempSync(join(tmpdir(), "lorakit-adalora-"));
  try {
    saveAdaLora(m, dir);
    const cfg = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"));
    assert.equal(cfg.peft_type, "ADALORA");
    assert.equal(cfg.init_r, CFG.init_r);
    assert.equal(cfg.total_step, CFG.total_step);
    const expectPattern: Record<string, boolean[]> = {};
    for (const [k, v] of Object.entries(FIX.final_rank_pattern as Record<string, boolean[]>))
      expectPattern[k.replace(".default", "")] = v;
    assert.deepEqual(cfg.rank_pattern, expectPattern);
    const loaded = loadAdaLora(new Tree(SHAPES), dir);
    for (const [path, l] of loaded.adaLoraLayers()) {
      const kept = expectPattern[`${path}.lora_E`].filter(Boolean).length;
      assert.equal(l.r.get("default"), kept, `${path} resized to its kept triplets`);
      assert.equal(l.ranknum.get("default"), CFG.init_r, "ranknum stays init_r (PEFT)");
    }
    const got = forwardAll(loaded);
    got.forEach((g, i) => {
      close(g, want[i], `loaded output ${i}`, 1e-5, 1e-6);
    });
    // `lorakit inspect` reads the ADALORA folder as LoRA of the final ranks.
    const rep = inspectAdapter(dir);
    for (const mod of rep.modules)
      assert.equal(mod.rank, expectPattern[`${mod.module}.lora_E`].filter(Boolean).length, mod.module);
    const { config, init } = adaLoraToLora(m);
    const ranks = m.ranks();
    const base = m.unload();
    const peft = getPeftModel(base, config, "default", init);
    for (const [path, l] of peft.loraLayers()) assert.equal(l.r.get("default"), ranks.get(path));
    const asLora = forwardAll(peft);
    asLora.forEach((g, i) => {
      close(g, want[i], `LoRA output ${i}`, 1e-5, 1e-6);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
