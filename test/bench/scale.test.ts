// bench/scale: the published shapes (configs parse, parameter counts and shard counts match the
// originals), the normal sampler (exact: distribution tests; the fast fill equals the plain
// one bit for bit), and make-checkpoint (a 2-layer SmolLM2-shaped checkpoint loads).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { MARKER_FILE, makeScaleCheckpoint } from "../../bench/scale/make-checkpoint.js";
import { fillNormalBf16, normalZiggurat } from "../../bench/scale/normal-bf16.js";
import { SCALE_SHAPES, scaleShape, scaleTensorSpecs } from "../../bench/scale/shapes.js";
import { bf16ToF32, f32ToBf16 } from "../../src/core/dtype.js";
import { Rng } from "../../src/core/rng.js";
import { openCheckpoint, planShards } from "../../src/io/node/index.js";
import { parseLlamaConfig } from "../../src/models/llama/config.js";
import { loadModel } from "../../src/models/node/load.js";
import { repoRoot } from "../util/repo.js";

const root = mkdtempSync(join(tmpdir(), "lorakit-scale-"));
after(() => rmSync(root, { recursive: true, force: true }));

const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

describe("published shapes", () => {
  for (const shape of Object.values(SCALE_SHAPES)) {
    test(`${shape.id}: config parses; params and shard count are the original's`, () => {
      const cfg = parseLlamaConfig(shape.config);
      assert.equal(cfg.torchDtype, "bfloat16");
      const specs = scaleTensorSpecs(cfg);
      assert.equal(
        specs.reduce((a, s) => a + numel(s.shape), 0),
        shape.publishedParams,
      );
      const shards = planShards(
        specs.map((s) => 2 * numel(s.shape)),
        shape.maxShardSize,
      );
      assert.equal(shards.length, shape.publishedShards);
      assert.equal(
        specs.some((s) => s.name === "lm_head.weight"),
        !cfg.tieWordEmbeddings,
      );
      assert.ok(specs.every((s) => s.dtype === "BF16"));
    });
  }

  test("per-model details survive parsing", () => {
    const llama3 = parseLlamaConfig(scaleShape("llama-3.2-1b").config);
    assert.deepEqual(llama3.ropeScaling, {
      type: "llama3",
      factor: 32,
      lowFreqFactor: 1,
      highFreqFactor: 4,
      originalMaxPositionEmbeddings: 8192,
    });
    assert.equal(llama3.headDim, 64);
    const qwen = parseLlamaConfig(scaleShape("qwen2.5-0.5b").config);
    assert.equal(qwen.qkvBias, true);
    assert.equal(qwen.slidingWindow, null);
    const qwenSpecs = scaleTensorSpecs(qwen).map((s) => s.name);
    assert.deepEqual(qwenSpecs.slice(1, 8), [
      "model.layers.0.self_attn.q_proj.weight",
      "model.layers.0.self_attn.q_proj.bias",
      "model.layers.0.self_attn.k_proj.weight",
      "model.layers.0.self_attn.k_proj.bias",
      "model.layers.0.self_attn.v_proj.weight",
      "model.layers.0.self_attn.v_proj.bias",
      "model.layers.0.self_attn.o_proj.weight",
    ]);
    const smol = parseLlamaConfig(scaleShape("smollm2-135m").config);
    assert.deepEqual([smol.numKeyValueHeads, smol.headDim, smol.ropeTheta], [3, 64, 100000]);
    assert.throws(() => scaleShape("gpt2"), /known: smollm2-135m/);
  });
});

/** Φ(x) through erfc (Numerical Recipes' erfcc: fractional error < 1.2e-7). */
function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * z);
  const erfc =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - 0.5 * erfc : 0.5 * erfc;
}

describe("normal sampler", () => {
  test("normalZiggurat is N(0, 1): Kolmogorov–Smirnov, moments, tail beyond the base strip", () => {
    const n = 1_000_000;
    const rng = new Rng(12345);
    const xs = new Float64Array(n);
    for (let i = 0; i < n; i++) xs[i] = normalZiggurat(rng);
    let m1 = 0;
    let m2 = 0;
    let m4 = 0;
    let beyondR = 0;
    for (const x of xs) {
      m1 += x;
      m2 += x * x;
      m4 += x ** 4;
      if (Math.abs(x) > 3.442619855899) beyondR++;
    }
    assert.ok(Math.abs(m1 / n) < 5 / Math.sqrt(n), `mean ${m1 / n}`);
    assert.ok(Math.abs(m2 / n - 1) < 5 * Math.sqrt(2 / n), `variance ${m2 / n}`);
    assert.ok(Math.abs(m4 / n - 3) < 5 * Math.sqrt(96 / n), `fourth moment ${m4 / n}`);
    // P(|x| > R) = 2(1 - Φ(R)) = 5.7596e-4: the tail path must give that mass.
    const p = 2 * (1 - normalCdf(3.442619855899));
    assert.ok(Math.abs(beyondR - n * p) < 5 * Math.sqrt(n * p), `${beyondR} beyond R, expected ${n * p}`);
    xs.sort();
    let d = 0;
    for (let i = 0; i < n; i++) {
      const f = normalCdf(xs[i]);
      d = Math.max(d, Math.abs(f - i / n), Math.abs((i + 1) / n - f));
    }
    // Critical value at α = 0.001 is 1.95/√n.
    assert.ok(d < 1.95 / Math.sqrt(n), `KS statistic ${d}`);
  });

  // The fill scales as k·(x[i]·2^-24·std), the reference as std·(k·x[i]·2^-24): equal up to
  // the last bit of a double, which changes a bf16 about once in 2^29 values (never here).
  test("fillNormalBf16 gives normalZiggurat's values rounded to bf16, and leaves the Rng alike", () => {
    const n = 300_001; // not a multiple of the chunk; ~3600 draws take the slow paths
    const a = new Rng(99);
    const b = new Rng(99);
    const got = new Uint16Array(n);
    fillNormalBf16(a, got, 0.02, 0.5);
    for (let i = 0; i < n; i++) {
      const want = f32ToBf16(Math.fround(0.5 + 0.02 * normalZiggurat(b)));
      if (got[i] !== want) assert.fail(`element ${i}: ${got[i]} vs ${want}`);
    }
    assert.deepEqual(a.getState(), b.getState());
    assert.equal(a.nextU32(), b.nextU32());
  });
});

describe("make-checkpoint", () => {
  const script = join(repoRoot(), "dist", "bench", "scale", "make-checkpoint.js");
  const run = (...args: string[]) => {
    const r = spawnSync(process.execPath, [script, ...args], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };

  test("a 2-layer SmolLM2-135M-shaped checkpoint: bf16, config, tokenizer; loadModel loads it", () => {
    const dir = join(root, "smol2");
    const out = JSON.parse(
      run("--shape", "smollm2-135m", "--layers", "2", "--seed", "3", "--out", dir, "--json"),
    );
    assert.equal(out.skipped, false);
    assert.deepEqual(readdirSync(dir).sort(), [
      MARKER_FILE,
      "config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    assert.deepEqual(json, { ...scaleShape("smollm2-135m").config, num_hidden_layers: 2 });
    const cfg = parseLlamaConfig(json);
    const specs = scaleTensorSpecs(cfg);
    assert.equal(
      out.params,
      specs.reduce((a, s) => a + numel(s.shape), 0),
    );

    using ck = openCheckpoint(dir);
    assert.deepEqual(ck.names().sort(), specs.map((s) => s.name).sort());
    for (const s of specs) {
      assert.equal(ck.info(s.name).dtype, "BF16", s.name);
      assert.deepEqual(ck.info(s.name).shape, s.shape, s.name);
    }
    assert.deepEqual({ ...ck.fileMetadata("model.norm.weight") }, { format: "pt" });
    assert.ok(
      ck
        .tensor("model.norm.weight", { dtype: "f32" })
        .toArray()
        .every((v) => v === 1),
    );
    // Weights are N(0, initializer_range²): SmolLM2's 1/24.
    const w = ck.raw("model.layers.1.mlp.up_proj.weight");
    const u16 = new Uint16Array(w.buffer, w.byteOffset, w.length / 2);
    let m2 = 0;
    for (const h of u16) m2 += bf16ToF32(h) ** 2;
    assert.ok(Math.abs(Math.sqrt(m2 / u16.length) - 1 / 24) < 1e-3, `std ${Math.sqrt(m2 / u16.length)}`);

    const { model, report } = loadModel(dir);
    assert.deepEqual(report.missing, []);
    assert.deepEqual(report.unexpected, []);
    const params = new Map([...model.namedParameters()].map(([n, t]) => [n, [...t.shape]]));
    assert.deepEqual(params, new Map(specs.map((s) => [s.name, [...s.shape]])));
  });

  test("a second run with the same shape and seed does nothing; another seed rewrites", () => {
    const dir = join(root, "smol1");
    const first = makeScaleCheckpoint({ shape: "smollm2-135m", layers: 1, seed: 3, out: dir });
    assert.equal(first.skipped, false);
    const mtime = statSync(join(dir, "model.safetensors")).mtimeMs;
    assert.match(
      run("--shape", "smollm2-135m", "--layers", "1", "--seed", "3", "--out", dir),
      /complete already/,
    );
    assert.equal(statSync(join(dir, "model.safetensors")).mtimeMs, mtime);
    // Values depend on (seed, name) only: layer 0 of the 1- and 2-layer checkpoints agree.
    using a = openCheckpoint(dir);
    using b = openCheckpoint(join(root, "smol2"));
    const q = "model.layers.0.self_attn.q_proj.weight";
    assert.deepEqual(a.raw(q), b.raw(q));
    const again = makeScaleCheckpoint({ shape: "smollm2-135m", layers: 1, seed: 4, out: dir });
    assert.equal(again.skipped, false);
    using c = openCheckpoint(dir);
    assert.notDeepEqual(c.raw(q), a.raw(q));
    // A damaged file is not taken for a complete checkpoint.
    rmSync(join(dir, "tokenizer.json"));
    assert.equal(makeScaleCheckpoint({ shape: "smollm2-135m", layers: 1, seed: 4, out: dir }).skipped, false);
  });
});
