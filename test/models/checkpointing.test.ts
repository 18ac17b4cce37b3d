// Gradient checkpointing per decoder layer: the same losses, gradients and random stream
// as without it (LoRA with dropout through the Trainer, full fine-tuning with tied
// embeddings and biases, DoRA, AdaLoRA), and less memory held between forward and backward.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Tensor } from "../../src/core/index.js";
import {
  backend,
  backward,
  fromArray,
  noGrad,
  Rng,
  resetPeakTensorBytes,
  setBackend,
  tensorBytes,
  tidy,
} from "../../src/core/index.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { AdamW } from "../../src/optim/adamw.js";
import { constantScheduleWithWarmup, LrScheduler } from "../../src/optim/schedule.js";
import { getAdaLoraModel } from "../../src/peft/adalora/model.js";
import { getPeftModel } from "../../src/peft/model.js";
import type { Batch, Batcher } from "../../src/train/data.js";
import type { TrainableModel } from "../../src/train/trainer.js";
import { batchLoss, Trainer } from "../../src/train/trainer.js";
import { normErrors } from "../util/repo.js";
import { tinyModel } from "../util/tiny-model.js";

const VOCAB = 48;

function makeBatch(seed: number, B = 2, T = 8): Batch {
  const rng = new Rng(seed);
  const inputs = Int32Array.from({ length: B * T }, () => rng.int(VOCAB));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 5 === 4 ? -100 : rng.int(VOCAB)));
  return {
    inputs,
    targets,
    batchSize: B,
    seqLen: T,
    lengths: Int32Array.from({ length: B }, () => T),
    tokens: targets.filter((t) => t !== -100).length,
    epoch: 0,
  };
}

function stubBatcher(list: readonly Batch[]): Batcher {
  let i = 0;
  return {
    next: () => list[i++ % list.length],
    getState: () => ({}),
    setState: () => {},
  } as unknown as Batcher;
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  const { rel, maxAbs } = normErrors(got, want);
  assert.ok(rel <= 1e-6 || maxAbs === 0, `${what}: relative error ${rel} (max |diff| ${maxAbs})`);
}

/** Loss and every trainable parameter's gradient after one backward in training mode. */
function oneStep(model: TrainableModel, batch: Batch): { loss: number; grads: Map<string, number[]> } {
  model.train(true);
  const loss = tidy(() => {
    const l = batchLoss(model, batch);
    backward(l);
    return l.item();
  });
  const grads = new Map<string, number[]>();
  for (const [name, p] of model.namedParameters())
    if (p.requiresGrad) {
      assert.ok(p.grad, `${name} got no gradient`);
      grads.set(name, p.grad.toArray());
    }
  return { loss, grads };
}

function assertSameStep(a: ReturnType<typeof oneStep>, b: ReturnType<typeof oneStep>): void {
  assert.ok(a.grads.size > 0);
  assert.deepEqual([...a.grads.keys()], [...b.grads.keys()]);
  assertClose([a.loss], [b.loss], "loss");
  for (const [name, g] of a.grads) assertClose(g, b.grads.get(name)!, name);
}

function withCheckpointing(m: LlamaForCausalLM, on: boolean): LlamaForCausalLM {
  if (on) m.gradientCheckpointingEnable();
  return m;
}

describe("gradient checkpointing: same losses and gradients", () => {
  test("LoRA r=4 on all linear layers, dropout 0.1: 3 Trainer steps", () => {
    const batches = [makeBatch(1), makeBatch(2), makeBatch(3)];
    const run = (on: boolean) => {
      const base = withCheckpointing(tinyModel(3, { num_hidden_layers: 3 }), on);
      const pm = getPeftModel(base, {
        r: 4,
        loraAlpha: 8,
        targetModules: "all-linear",
        loraDropout: 0.1,
        initLoraWeights: false,
      });
      const params = pm.trainableParameters();
      const opt = new AdamW(params, { lr: 1e-2 });
      const grads: number[][][] = [];
      const trainer = new Trainer(
        pm,
        stubBatcher(batches),
        opt,
        new LrScheduler(opt, constantScheduleWithWarmup()),
        {
          steps: 3,
          rng: pm.rng,
          // After the update, before zeroGrad: the step's (clipped) gradients.
          afterOptimizerStep: () => grads.push(params.map((p) => p.grad!.toArray())),
        },
      );
      const losses: number[] = [];
      for (const ev of trainer.run()) if (ev.type === "step") losses.push(ev.loss);
      return { losses, grads, params: params.map((p) => p.toArray()), rng: pm.rng.getState() };
    };
    const plain = run(false);
    const ck = run(true);
    assert.equal(ck.losses.length, 3);
    ck.losses.forEach((l, i) => {
      assertClose([l], [plain.losses[i]], `loss at step ${i + 1}`);
    });
    ck.grads.forEach((step, s) => {
      step.forEach((g, i) => {
        assertClose(g, plain.grads[s][i], `step ${s + 1} gradient ${i}`);
      });
    });
    ck.params.forEach((p, i) => {
      assertClose(p, plain.params[i], `parameter ${i} after 3 steps`);
    });
    // Dropout drew the same numbers, and the recomputes left the stream where it was.
    assert.deepEqual(ck.rng, plain.rng);
  });

  test("full fine-tuning with tied embeddings and qkv biases (qwen2)", () => {
    const run = (on: boolean) => {
      const m = withCheckpointing(tinyModel(4, { model_type: "qwen2", tie_word_embeddings: true }), on);
      m.requiresGrad(true);
      assert.equal(m.lm_head.weight, m.model.embed_tokens.weight);
      return oneStep(m, makeBatch(7));
    };
    const plain = run(false);
    assert.ok([...plain.grads.keys()].some((n) => n.endsWith("q_proj.bias")));
    assertSameStep(run(true), plain);
  });

  test("DoRA with dropout", () => {
    const run = (on: boolean) => {
      const base = withCheckpointing(tinyModel(5), on);
      const pm = getPeftModel(base, {
        r: 4,
        useDora: true,
        targetModules: "all-linear",
        loraDropout: 0.1,
        initLoraWeights: false,
      });
      return oneStep(pm, makeBatch(8));
    };
    const plain = run(false);
    assert.ok([...plain.grads.keys()].some((n) => n.includes("lora_magnitude_vector")));
    assertSameStep(run(true), plain);
  });

  test("AdaLoRA with dropout", () => {
    const run = (on: boolean) => {
      const base = withCheckpointing(tinyModel(6), on);
      const m = getAdaLoraModel(base, {
        initR: 6,
        targetR: 4,
        totalStep: 10,
        loraDropout: 0.1,
        targetModules: ["q_proj", "v_proj", "down_proj"],
      });
      return oneStep(m, makeBatch(9));
    };
    assertSameStep(run(true), run(false));
  });
});

/** Whether the graph behind t contains a checkpoint node. */
function hasCheckpointNode(t: Tensor): boolean {
  const stack = [t];
  const seen = new Set<Tensor>();
  while (stack.length) {
    const x = stack.pop()!;
    if (seen.has(x) || !x.node) continue;
    seen.add(x);
    if (x.node.op === "checkpoint") return true;
    stack.push(...x.node.inputs);
  }
  return false;
}

test("gradient checkpointing applies only to training forwards that record a graph", () => {
  const m = tinyModel(2);
  assert.equal(m.gradientCheckpointing, false);
  m.gradientCheckpointingEnable();
  m.requiresGrad(true);
  const b = makeBatch(1);
  tidy(() => {
    const ids = fromArray(b.inputs, [b.batchSize, b.seqLen]);
    m.train(true);
    assert.ok(hasCheckpointNode(m.hidden(ids)));
    assert.ok(!noGrad(() => m.hidden(ids)).requiresGrad);
    m.train(false);
    const evalOut = m.hidden(ids);
    assert.ok(evalOut.requiresGrad && !hasCheckpointNode(evalOut));
  });
  m.gradientCheckpointingDisable();
  m.train(true);
  assert.ok(!tidy(() => hasCheckpointNode(m.hidden(fromArray(b.inputs, [b.batchSize, b.seqLen])))));
});

test("gradient checkpointing holds less between forward and backward", () => {
  const measure = (on: boolean) => {
    const base = withCheckpointing(
      tinyModel(1, { num_hidden_layers: 6, hidden_size: 64, intermediate_size: 128 }),
      on,
    );
    const pm = getPeftModel(base, { r: 4, targetModules: "all-linear", initLoraWeights: false });
    pm.train(true);
    const batch = makeBatch(4, 2, 32);
    return tidy(() => {
      const before = tensorBytes().live;
      resetPeakTensorBytes();
      const loss = batchLoss(pm, batch);
      const held = tensorBytes().live - before;
      backward(loss);
      return { held, peak: tensorBytes().peak - before };
    });
  };
  const plain = measure(false);
  const ck = measure(true);
  // Six layers: the plain forward keeps every layer's activations, the checkpointed one
  // each layer's input; backward adds back one layer's activations at a time.
  assert.ok(ck.held < plain.held / 3, `held after forward: ${ck.held} vs ${plain.held} bytes`);
  assert.ok(ck.peak < plain.peak, `peak: ${ck.peak} vs ${plain.peak} bytes`);
});

test("the recompute skips the product whose value nobody reads (down_proj), with equal gradients", () => {
  const run = (ck: boolean) => {
    const model = tinyModel(21, { num_hidden_layers: 3 });
    const pm = getPeftModel(model, { r: 4, loraAlpha: 8, targetModules: "all-linear" }, "default", {
      seed: 3,
    });
    for (const [n, p] of pm.namedParameters()) if (n.includes("lora_B")) p.data.fill(0.01);
    if (ck) model.gradientCheckpointingEnable();
    pm.train(true);
    const be = backend();
    let gemms = 0;
    setBackend({
      ...be,
      gemm: (p) => {
        gemms++;
        be.gemm(p);
      },
    });
    try {
      const b = makeBatch(5);
      tidy(() => backward(batchLoss(pm, b)));
    } finally {
      setBackend(be);
    }
    const grads = [...pm.namedParameters()]
      .filter(([, p]) => p.requiresGrad)
      .map(([n, p]) => [n, p.grad!.toArray()] as const);
    return { gemms, grads };
  };
  const plain = run(false);
  const ck = run(true);
  assert.deepEqual(ck.grads, plain.grads);
  // Per layer, a full recompute would add every forward GEMM again (7 base + 14 LoRA); the
  // down_proj's base product and its B product are skipped: 2 fewer per layer.
  const forwardPerLayer = 7 + 14;
  assert.equal(ck.gemms, plain.gemms + 3 * (forwardPerLayer - 2));
});
