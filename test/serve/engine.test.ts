// The engine in-process (no worker, no HTTP): greedy equals generate(), a mixed-adapter batch
// gives each request the tokens it gets alone, the LRU evicts idle adapters, cancellation
// frees the sequence, and the registry refuses adapters that do not fit or lie outside the root.
import assert from "node:assert/strict";
import { mkdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { selectBackend } from "../../src/kernels/select.js";
import { generate } from "../../src/models/generate.js";
import { KVCache, type KVDType } from "../../src/models/llama/kv-cache.js";
import { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { loadModel } from "../../src/models/node/load.js";
import { BASE_ROW } from "../../src/peft/lora/layer.js";
import { fromPretrained } from "../../src/peft/node/io.js";
import { batchStep } from "../../src/serve/batch-step.js";
import { Engine } from "../../src/serve/engine.js";
import { ServeError } from "../../src/serve/errors.js";
import type { EngineEvent, GenRequest, ServeLimits } from "../../src/serve/protocol.js";
import { DEFAULT_LIMITS } from "../../src/serve/protocol.js";
import { AdapterRegistry } from "../../src/serve/registry.js";
import { loadTokenizer } from "../../src/tokenizer/node.js";
import { buildFixture, type Fixture } from "./fixture.js";

let fx: Fixture;
before(async () => {
  await selectBackend();
  fx = buildFixture();
});
after(() => fx.cleanup());

function makeEngine(limits: Partial<ServeLimits> = {}, prefillTokensPerStep?: number, kvDtype?: KVDType) {
  const { model } = loadModel(fx.modelDir);
  const tokenizer = loadTokenizer(fx.modelDir);
  const l = { ...DEFAULT_LIMITS, ...limits };
  const registry = new AdapterRegistry(model, {
    baseId: "tiny-base",
    root: fx.adapterRoot,
    maxLoaded: l.maxLoadedAdapters,
    maxBytes: l.maxAdapterBytes,
    idleMs: 0,
  });
  const engine = new Engine({
    model,
    tokenizer,
    registry,
    baseId: "tiny-base",
    limits: l,
    prefillTokensPerStep,
    kvDtype,
  });
  return { engine, registry, tokenizer };
}

function req(model: string, text: string, over: Partial<GenRequest> = {}): GenRequest {
  return {
    model,
    prompt: { kind: "text", text },
    maxTokens: 10,
    temperature: 0,
    topP: 1,
    topK: 0,
    seed: 0,
    stop: [],
    ignoreEos: true,
    ...over,
  };
}

/** Submits all, steps until idle; returns each request's events. */
function run(engine: Engine, reqs: GenRequest[]): EngineEvent[][] {
  const evs: EngineEvent[][] = reqs.map(() => []);
  reqs.forEach((r, i) => {
    engine.submit(i, r, (ev) => evs[i].push(ev));
  });
  for (let n = 0; engine.busy && n < 10_000; n++) engine.step();
  return evs;
}

function tokensOf(evs: EngineEvent[]): number[] {
  const done = evs.at(-1);
  if (done?.kind !== "done") assert.fail(`no done event: ${JSON.stringify(done)}`);
  return done.tokens;
}

const PROMPTS = ["Call me", "It is a way I have", "the watery part"];

describe("serve engine", () => {
  test("greedy through the engine equals generate() for the base and each adapter", () => {
    const { engine, tokenizer } = makeEngine();
    for (const model of ["tiny-base", "alpha", "beta"]) {
      let m: LlamaForCausalLM = loadModel(fx.modelDir).model;
      if (model !== "tiny-base") fromPretrained(m, join(fx.adapterRoot, model));
      assert.ok(m instanceof LlamaForCausalLM);
      const ids = tokenizer.encode(PROMPTS[0]);
      const want = generate(m, ids, { maxNewTokens: 10 });
      const [got] = run(engine, [req(model, PROMPTS[0])]);
      assert.deepEqual(tokensOf(got), want, model);
      m = null as unknown as LlamaForCausalLM;
    }
  });

  test("a mixed batch gives each request the tokens it gets alone (greedy and seeded sampling)", () => {
    const { engine } = makeEngine();
    const reqs: GenRequest[] = [];
    for (const p of PROMPTS)
      for (const model of ["tiny-base", "alpha", "beta"])
        reqs.push(req(model, p, { maxTokens: 8 + reqs.length }));
    reqs.push(req("beta", PROMPTS[1], { temperature: 0.9, topP: 0.95, topK: 40, seed: 7 }));
    const alone = reqs.map((r) => tokensOf(run(engine, [r])[0]));
    const together = run(engine, reqs).map(tokensOf);
    assert.deepEqual(together, alone);
    // Some decode steps held all ten sequences at once.
    const le8 = Number(
      /lorakit_batch_size_bucket\{le="8"\} (\d+)/.exec(engine.metrics.registry.render())?.[1],
    );
    assert.ok(le8 < engine.metrics.batchSize.count, "no decode step held more than 8 sequences");
    // Adapters really differ from the base.
    assert.notDeepEqual(alone[0], alone[1]);
    assert.notDeepEqual(alone[1], alone[2]);
  });

  test("without token events a request gets one done event with the streamed request's text and tokens", () => {
    const { engine } = makeEngine();
    for (const stop of [[], ["e"]]) {
      const streamed = req("alpha", PROMPTS[1], { maxTokens: 12, stop });
      const whole = { ...streamed, tokenEvents: false };
      const [a, b] = run(engine, [streamed, whole]);
      const done = a.at(-1);
      assert.equal(done?.kind, "done");
      assert.ok(a.length > 1, "the streamed request got token events");
      assert.deepEqual(b, [done], `stop ${JSON.stringify(stop)}`);
      const deltas = a.flatMap((ev) => (ev.kind === "token" ? [ev.text] : [])).join("");
      if (done?.kind === "done") assert.equal(deltas, done.text);
    }
  });

  test("batchStep writes a step's logits into the buffer it is given, the same numbers as a fresh copy", () => {
    const { model } = loadModel(fx.modelDir);
    const cfg = model.config;
    const rows = (tokens: number[][]) =>
      tokens.map((t) => ({
        tokens: t,
        cache: new KVCache(cfg.numHiddenLayers, 1, 16, cfg.numKeyValueHeads, cfg.headDim),
        adapter: BASE_ROW,
      }));
    const prompts = [
      [5, 6, 7],
      [8, 9],
    ];
    const fresh = batchStep(model, [], rows(prompts));
    const buffer = new Float32Array(fresh.length + 10).fill(Number.NaN);
    const into = batchStep(model, [], rows(prompts), buffer);
    assert.equal(into.buffer, buffer.buffer);
    assert.deepEqual(into, fresh);
    // Too small a buffer: a fresh array, the buffer untouched.
    const small = new Float32Array(3);
    const other = batchStep(model, [], rows(prompts), small);
    assert.notEqual(other.buffer, small.buffer);
    assert.deepEqual(other, fresh);
    assert.deepEqual(small, new Float32Array(3));
  });

  test("chunked prefill: prompts cut into 3-token chunks beside decoding sequences give the tokens alone", () => {
    const { engine } = makeEngine({}, 3);
    const reqs = PROMPTS.flatMap((p, i) => [
      req(["tiny-base", "alpha", "beta"][i], p),
      req("beta", `${p} ${p}`),
    ]);
    const alone = reqs.map((r) => tokensOf(run(makeEngine().engine, [r])[0]));
    const together = run(engine, reqs).map(tokensOf);
    assert.deepEqual(together, alone);
    // Prompts arrived 3 tokens a step, beside the sequences already decoding.
    const steps = engine.metrics.stepSeconds.count;
    const tokens = Number(/lorakit_prompt_tokens_total (\d+)/.exec(engine.metrics.registry.render())?.[1]);
    assert.ok(steps >= Math.ceil(tokens / 3), `${steps} steps for ${tokens} prompt tokens`);
  });

  test("a bf16 KV cache: generate()'s tokens alone, the same in a mixed batch, half the cache bytes", () => {
    const { engine, tokenizer } = makeEngine({}, undefined, "bf16");
    const { model } = loadModel(fx.modelDir);
    const ids = tokenizer.encode(PROMPTS[1]);
    const [got] = run(engine, [req("tiny-base", PROMPTS[1])]);
    assert.deepEqual(tokensOf(got), generate(model, ids, { maxNewTokens: 10, kvDtype: "bf16" }));
    const reqs = PROMPTS.flatMap((p, i) => [
      req(["tiny-base", "alpha", "beta"][i], p, { maxTokens: 6 + i }),
      req("alpha", p, { temperature: 0.8, seed: 3 + i }),
    ]);
    const alone = reqs.map((r) => tokensOf(run(engine, [r])[0]));
    // KV bytes held while all six run, f32 against bf16.
    const held = (kv: KVDType) => {
      const e = makeEngine({}, undefined, kv).engine;
      reqs.forEach((r, i) => {
        e.submit(i, r, () => {});
      });
      e.step();
      return Number(/lorakit_kv_cache_bytes (\d+)/.exec(e.metrics.registry.render())?.[1]);
    };
    const together = run(engine, reqs).map(tokensOf);
    assert.deepEqual(together, alone);
    const [b32, b16] = [held("f32"), held("bf16")];
    assert.ok(b16 > 0);
    assert.equal(b16 * 2, b32);
  });

  test("the LRU keeps at most maxLoaded adapters, evicting idle ones; busy ones make others wait", () => {
    const { engine, registry } = makeEngine({ maxLoadedAdapters: 1 });
    const a = tokensOf(run(engine, [req("alpha", PROMPTS[0])])[0]);
    const b = tokensOf(run(engine, [req("beta", PROMPTS[0])])[0]);
    assert.equal(registry.loadedCount, 1);
    const both = run(engine, [req("alpha", PROMPTS[0]), req("beta", PROMPTS[0])]).map(tokensOf);
    assert.deepEqual(both, [a, b]);
    assert.equal(registry.loadedCount, 1);
  });

  test("cancel drops a running sequence and releases its adapter", () => {
    const { engine, registry } = makeEngine({ maxLoadedAdapters: 1 });
    const evs: EngineEvent[] = [];
    engine.submit(1, req("alpha", PROMPTS[0], { maxTokens: 50 }), (ev) => evs.push(ev));
    engine.step();
    engine.step();
    assert.equal(engine.counts.running, 1);
    engine.cancel(1);
    assert.equal(engine.busy, false);
    const n = evs.length;
    assert.ok(evs.every((e) => e.kind === "token"));
    // alpha is idle again, so beta can take its slot.
    const [b] = run(engine, [req("beta", PROMPTS[0])]);
    assert.equal(b.at(-1)?.kind, "done");
    assert.equal(evs.length, n);
    assert.equal(registry.loadedCount, 1);
  });

  test("requests beyond the limits are refused with the reason", () => {
    const { engine } = makeEngine({ maxTokens: 20, maxPromptTokens: 8 });
    const [a, b, c] = run(engine, [
      req("tiny-base", "Call me", { maxTokens: 21 }),
      req("tiny-base", CORPUS_LONG),
      req("nope", "Call me"),
    ]);
    for (const [evs, status, code] of [
      [a, 400, "max_tokens_too_large"],
      [b, 400, "prompt_too_long"],
      [c, 404, "model_not_found"],
    ] as const) {
      const e = evs[0];
      assert.equal(e.kind, "error");
      if (e.kind === "error") {
        assert.equal(e.error.status, status);
        assert.equal(e.error.code, code);
      }
    }
  });
});

const CORPUS_LONG = "Some years ago, never mind how long precisely, having little or no money in my purse";

describe("adapter registry safety", () => {
  test("paths outside the root are refused: .., absolute, symlink out", () => {
    const { registry } = makeEngine();
    const outside = join(fx.dir, "outside");
    fx.writeAdapter(join(outside, "evil"), 9);
    symlinkSync(join(outside, "evil"), join(fx.adapterRoot, "evil-link"));
    for (const p of ["../outside/evil", join(outside, "evil"), "evil-link", "alpha/../../outside/evil"]) {
      assert.throws(
        () => registry.register("x", p),
        (e: unknown) => e instanceof ServeError && e.status === 400 && e.code === "path_outside_root",
        p,
      );
    }
    assert.ok(!registry.list().some((m) => m.id === "evil-link"), "a symlink out of the root is not served");
    assert.throws(() => registry.register("../x", "alpha"), /not a valid adapter name/);
  });

  test("an adapter that does not fit the base is refused at load with the reason", () => {
    const { registry } = makeEngine();
    mkdirSync(join(fx.adapterRoot, "bad"), { recursive: true });
    const other = new LlamaForCausalLM({ ...fx.freshModel().config, hiddenSize: 64, headDim: 16 });
    fx.writeAdapter(join(fx.adapterRoot, "bad", "wide"), 3, {}, other);
    assert.throws(
      () => registry.register("wide", "bad/wide"),
      (e: unknown) => e instanceof ServeError && e.status === 400 && /shape/.test(e.message),
    );
    assert.equal(registry.has("wide"), false);
    assert.equal(registry.loadedCount, 0);
  });
});
