// lorakit's Trainer against PyTorch training runs (scripts/fixtures/make_train_fixtures.py):
// the same base (llama-gqa), the same initial A and B, the same batches, 20 steps of AdamW with
// a cosine-with-warm-up schedule and gradient clipping → the same per-step losses, learning
// rates, gradient norms and final adapter weights. Scenarios: plain AdamW (B = 0 as PEFT),
// LoRA+ parameter groups (create_loraplus_optimizer), and gradient accumulation over 2
// micro-batches.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fromArray } from "../../src/core/index.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { loadModel } from "../../src/models/node/load.js";
import {
  AdamW,
  cosineScheduleWithWarmup,
  createLoraPlusOptimizer,
  LrScheduler,
} from "../../src/optim/index.js";
import { getPeftModel, type PeftModel } from "../../src/peft/model.js";
import type { Batch, Batcher, BatcherState } from "../../src/train/data.js";
import { Trainer } from "../../src/train/trainer.js";
import { repoRoot } from "../util/repo.js";

const ROOT = repoRoot();
const FIX = join(ROOT, "test/fixtures/train");

interface Arr {
  shape: number[];
  data: number[];
}
interface Fixture {
  scenario: string;
  base_model_dir: string;
  lora: { r: number; lora_alpha: number; target_modules: string[]; lora_dropout: number };
  steps: number;
  max_grad_norm: number;
  schedule: { num_warmup_steps: number; num_training_steps: number; num_cycles: number };
  hyper: {
    optimizer: "adamw" | "loraplus";
    lr: number;
    betas: [number, number];
    eps: number;
    weight_decay: number;
    loraplus_lr_ratio?: number;
    loraplus_lr_embedding?: number;
  };
  grad_accumulation: number;
  batches: { inputs: number[][]; targets: number[][] }[];
  init: Record<string, { A: Arr; B: Arr }>;
  losses: number[];
  lrs: number[];
  grad_norms: number[];
  final: Record<string, { A: Arr; B: Arr }>;
  f64: { loss_max_rel: number; weights_max_norm_rel: number; grad_norm_max_rel: number };
}

/** The bar: 1e-4 relative (norm-relative for weight matrices). */
const LOSS_REL = 1e-4;
const WEIGHT_NORM_REL = 1e-4;
const LR_REL = 1e-12;

function toBatch(b: { inputs: number[][]; targets: number[][] }): Batch {
  const B = b.inputs.length;
  const T = b.inputs[0].length;
  const targets = Int32Array.from(b.targets.flat());
  const lengths = new Int32Array(B);
  for (let r = 0; r < B; r++) {
    let L = T;
    while (L > 0 && b.targets[r][L - 1] === -100 && b.inputs[r][L - 1] === 0) L--;
    lengths[r] = L;
  }
  return {
    inputs: Int32Array.from(b.inputs.flat()),
    targets,
    batchSize: B,
    seqLen: T,
    lengths,
    tokens: targets.reduce((n, t) => n + (t === -100 ? 0 : 1), 0),
    epoch: 0,
  };
}

/** Yields the fixture's micro-batches in order; all the Trainer uses of a Batcher. */
class ListBatcher {
  private i = 0;
  constructor(private readonly batches: readonly Batch[]) {}
  next(): Batch {
    return this.batches[this.i++ % this.batches.length];
  }
  getState(): BatcherState {
    return { size: this.batches.length, epoch: 0, index: this.i, epochRng: { s: [], spare: null } };
  }
  setState(s: BatcherState): void {
    this.i = s.index;
  }
}

function normRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let d = 0;
  let w = 0;
  for (let i = 0; i < want.length; i++) {
    d += (got[i] - want[i]) ** 2;
    w += want[i] ** 2;
  }
  return Math.sqrt(d / w);
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

interface Result {
  losses: number[];
  lrs: number[];
  gradNorms: number[];
  peft: PeftModel<LlamaForCausalLM>;
}

function train(fx: Fixture): Result {
  const { model } = loadModel(join(ROOT, fx.base_model_dir));
  const peft = getPeftModel(
    model,
    {
      r: fx.lora.r,
      loraAlpha: fx.lora.lora_alpha,
      targetModules: fx.lora.target_modules,
      loraDropout: fx.lora.lora_dropout,
    },
    "default",
    {
      initFor: (path, _layer, r) => {
        const e = fx.init[path];
        assert.ok(e, `the fixture has no initial adapter for ${path}`);
        assert.equal(e.A.shape[0], r);
        return {
          A: fromArray(Float32Array.from(e.A.data), e.A.shape),
          B: fromArray(Float32Array.from(e.B.data), e.B.shape),
        };
      },
    },
  );
  assert.deepEqual(
    [...peft.loraLayers()].map(([p]) => p).sort(),
    Object.keys(fx.init).sort(),
    "lorakit adapts the same modules as the fixture",
  );
  const h = fx.hyper;
  const named = [...peft.namedParameters()].filter(([, p]) => p.requiresGrad);
  const opt =
    h.optimizer === "loraplus"
      ? createLoraPlusOptimizer(named, {
          lr: h.lr,
          loraPlusLrRatio: h.loraplus_lr_ratio,
          loraPlusLrEmbedding: h.loraplus_lr_embedding,
          weightDecay: h.weight_decay,
          betas: h.betas,
          eps: h.eps,
        })
      : new AdamW(
          named.map(([, p]) => p),
          { lr: h.lr, betas: h.betas, eps: h.eps, weightDecay: h.weight_decay },
        );
  const sched = new LrScheduler(
    opt,
    cosineScheduleWithWarmup({
      numWarmupSteps: fx.schedule.num_warmup_steps,
      numTrainingSteps: fx.schedule.num_training_steps,
      numCycles: fx.schedule.num_cycles,
    }),
  );
  const batcher = new ListBatcher(fx.batches.map(toBatch));
  const trainer = new Trainer(peft, batcher as unknown as Batcher, opt, sched, {
    steps: fx.steps,
    gradAccumulation: fx.grad_accumulation,
    maxGradNorm: fx.max_grad_norm,
  });
  const out: Result = { losses: [], lrs: [], gradNorms: [], peft };
  for (const ev of trainer.run()) {
    if (ev.type !== "step") continue;
    out.losses.push(ev.loss);
    out.lrs.push(ev.lr);
    out.gradNorms.push(ev.gradNorm);
  }
  return out;
}

/** Compares one scenario; returns a line with the worst errors seen. */
function check(name: string): string {
  const fx = JSON.parse(readFileSync(join(FIX, `${name}.json`), "utf8")) as Fixture;
  assert.ok(fx.f64.loss_max_rel < LOSS_REL / 10, "float32 rounding alone stays well inside the tolerance");
  const r = train(fx);
  assert.equal(r.losses.length, fx.steps);
  let worstLoss = 0;
  let worstNorm = 0;
  let worstWeight = 0;

  for (let s = 0; s < fx.steps; s++) {
    assert.ok(
      rel(r.lrs[s], fx.lrs[s]) <= LR_REL || (fx.lrs[s] === 0 && r.lrs[s] === 0),
      `${name} step ${s + 1}: lr ${r.lrs[s]} vs torch ${fx.lrs[s]}`,
    );
    worstLoss = Math.max(worstLoss, rel(r.losses[s], fx.losses[s]));
    worstNorm = Math.max(worstNorm, rel(r.gradNorms[s], fx.grad_norms[s]));
    assert.ok(
      rel(r.gradNorms[s], fx.grad_norms[s]) <= LOSS_REL,
      `${name} step ${s + 1}: grad norm ${r.gradNorms[s]} vs torch ${fx.grad_norms[s]}`,
    );
    assert.ok(
      rel(r.losses[s], fx.losses[s]) <= LOSS_REL,
      `${name} step ${s + 1}: loss ${r.losses[s]} vs torch ${fx.losses[s]} (rel ${rel(r.losses[s], fx.losses[s]).toExponential(2)})`,
    );
  }
  for (const [path, layer] of r.peft.loraLayers()) {
    const want = fx.final[path];
    for (const [which, got] of [
      ["A", layer.lora_A.get("default")!.weight],
      ["B", layer.lora_B.get("default")!.weight],
    ] as const) {
      const w = want[which];
      assert.deepEqual([...got.shape], w.shape, `${path}.lora_${which} shape`);
      const e = normRel(got.data as Float32Array, w.data);
      worstWeight = Math.max(worstWeight, e);
      assert.ok(
        e <= WEIGHT_NORM_REL,
        `${name}: final ${path}.lora_${which} differs from torch by ${e.toExponential(2)} (norm-relative)`,
      );
      // and the adapter did move away from its initial value (the comparison means something)
      assert.ok(
        normRel(got.data as Float32Array, fx.init[path][which].data) > 100 * WEIGHT_NORM_REL || which === "B",
      );
    }
  }
  const f = (x: number) => x.toExponential(1);
  return `${name}: max rel loss ${f(worstLoss)}, grad norm ${f(worstNorm)}; max norm-rel weight ${f(worstWeight)} (torch f32 vs f64: ${f(fx.f64.loss_max_rel)}, ${f(fx.f64.weights_max_norm_rel)})`;
}

describe("Trainer vs PyTorch (make_train_fixtures.py)", () => {
  test("plain AdamW, B = 0 init, cosine warm-up, clipping", (t) => t.diagnostic(check("adamw")));
  test("LoRA+ parameter groups (lora_B lr × 16)", (t) => t.diagnostic(check("loraplus")));
  test("gradient accumulation over 2 micro-batches", (t) => t.diagnostic(check("accum")));
});
