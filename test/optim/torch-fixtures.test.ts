// lorakit's AdamW, SGD, LambdaLR-style scheduler, transformers schedules and
// clip_grad_norm_ against PyTorch 1.13 (scripts/fixtures/make_optim_fixtures.py →
// test/fixtures/optim/optim.json): 20 steps of fixed synthetic gradients over two parameter
// groups, with a schedule and (in some runs) clipping at 1.0, parameters compared after
// every step. The optimizer runs on the reference backend and, when the addon is built,
// on the native one (its own AdamW kernel).
//
// Tolerance, parameters: max|ours − torch| ≤ 1e-6 · max|torch| per tensor and step. PyTorch
// does every operation in float32 (each rounds by up to 2⁻²⁴ ≈ 6e-8 relative); the reference
// kernel does the update arithmetic in f64 and rounds only when storing m, v and the
// parameter. The fixture's `f64_dev` (same torch code in float64 vs float32) shows float32
// rounding alone moves the parameters by ≤ 3.1e-7 of their scale over 20 steps; measured,
// ours vs torch is ≤ 3.3e-7 (ref) and ≤ 4.4e-7 (native, f32 arithmetic). 1e-6 leaves room
// for that and still catches a formula slip (a missing bias correction or coupled weight
// decay moves the parameters by orders of magnitude more).
// Clip norms: 1e-6 relative (torch sums squares in f32, we in f64). Schedules: the same
// f64 formulas as Python, so 1e-12 (only cos may differ in the last bit between libms).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Backend } from "../../src/core/index.js";
import { setBackend } from "../../src/core/index.js";
import { availableBackends } from "../../src/kernels/select.js";
import { clipGradNorm, LrScheduler, SGD } from "../../src/optim/index.js";
import { build, doStep, fixture, lambdaOf, scaledError, toTensor } from "./fixture.js";

const RTOL = 1e-6;

// Every backend that loads here (the reference, plus native when the addon is built).
const available = await availableBackends();
const native = available.find((b) => b.name !== "ref");
const BACKENDS: { name: string; backend: Backend | null; skip: string | false }[] = [
  { name: "ref", backend: null, skip: false },
  { name: "native", backend: native ?? null, skip: native ? false : "native addon not available" },
];

describe("optimizer trajectories match PyTorch", () => {
  for (const run of fixture.runs) {
    test(`${run.name}: float32 rounding alone stays under the tolerance`, () => {
      assert.ok(run.f64_dev < RTOL / 2, `f64_dev ${run.f64_dev} leaves no margin under ${RTOL}`);
    });
    for (const be of BACKENDS) {
      test(`${run.name} (${be.name})`, { skip: be.skip }, () => {
        const prev = be.backend ? setBackend(be.backend) : null;
        try {
          const { params, opt, sched } = build(run);
          for (const [k, ref] of run.steps.entries()) {
            const { lrs, norm } = doStep(run, k, params, opt, sched);
            for (const [gi, lr] of lrs.entries())
              assert.ok(
                Math.abs(lr - ref.lrs[gi]) <= 1e-12 * Math.abs(ref.lrs[gi]),
                `step ${k} group ${gi}: lr ${lr} vs torch ${ref.lrs[gi]}`,
              );
            if (ref.total_norm !== null) {
              assert.ok(norm !== null);
              const e = Math.abs(norm - ref.total_norm) / ref.total_norm;
              assert.ok(e <= RTOL, `step ${k}: clip norm ${norm} vs torch ${ref.total_norm} (rel ${e})`);
            }
            for (const [i, p] of params.entries()) {
              const e = scaledError(p.data, ref.params[i].data);
              assert.ok(
                e <= RTOL,
                `step ${k} param ${i}: error ${e.toExponential(2)} of its scale > ${RTOL}`,
              );
            }
          }
          // The per-parameter step counts follow the grads each one actually got.
          if (run.optimizer === "adamw")
            for (const [i, p] of params.entries()) {
              const got = run.steps.filter((s) => s.grads[i] !== null).length;
              assert.equal((opt.state.get(p) as { step: number }).step, got, `param ${i} step count`);
            }
        } finally {
          if (prev) setBackend(prev);
        }
      });
    }
  }
});

describe("schedules match transformers via torch LambdaLR", () => {
  for (const c of fixture.schedules) {
    const label = `${c.kind} warmup ${c.num_warmup_steps}${c.num_training_steps === undefined ? "" : ` total ${c.num_training_steps}`}`;
    test(label, () => {
      const lam = lambdaOf(c);
      for (const [k, v] of c.lambdas.entries())
        assert.ok(Math.abs(lam(k) - v) <= 1e-12, `λ(${k}) = ${lam(k)} vs transformers ${v}`);
      const params = c.base_lrs.map(() => toTensor({ shape: [1], data: [0] }).setRequiresGrad());
      const opt = new SGD(
        c.base_lrs.map((lr, i) => ({ params: [params[i]], lr })),
        { lr: 0.1 },
      );
      const sched = new LrScheduler(opt, lam);
      for (const [k, lrs] of c.lrs.entries()) {
        assert.equal(sched.lastStep, k);
        for (const [gi, lr] of lrs.entries())
          assert.ok(Math.abs(opt.getLr(gi) - lr) <= 1e-12 * Math.max(lr, 1e-300), `step ${k} group ${gi}`);
        sched.step();
      }
    });
  }
});

describe("clipGradNorm matches torch.nn.utils.clip_grad_norm_", () => {
  for (const c of fixture.clip) {
    test(`max_norm ${c.max_norm}, norm_type ${c.norm_type}`, () => {
      const params = c.grads.map((g) => {
        const p = toTensor({ shape: g.shape, data: g.data.map(() => 0) }).setRequiresGrad();
        p.grad = toTensor(g);
        return p;
      });
      // A parameter without a gradient is ignored, as torch's list comprehension does.
      params.push(toTensor({ shape: [2], data: [0, 0] }).setRequiresGrad());
      const normType = c.norm_type === "inf" ? Number.POSITIVE_INFINITY : c.norm_type;
      const total = clipGradNorm(params, c.max_norm, normType);
      const e = Math.abs(total - c.total_norm) / c.total_norm;
      assert.ok(e <= RTOL, `total norm ${total} vs torch ${c.total_norm}`);
      for (const [i, ref] of c.clipped.entries()) {
        const g = params[i].grad;
        assert.ok(g);
        const err = scaledError(g.data, ref.data);
        assert.ok(err <= RTOL, `grad ${i}: error ${err} of its scale`);
      }
      assert.equal(params[params.length - 1].grad, null);
    });
  }
});
