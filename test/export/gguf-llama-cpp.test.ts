// GGUF export checked by llama.cpp itself (node-llama-cpp 3.21.1, its CPU prebuilt): on the
// demo model (real BPE merges, Llama 3 split with ignore_merges false → "smaug-bpe"), a
// LLaMA with GQA, tied embeddings, Llama 3 RoPE scaling and a Llama-3-style tokenizer
// (ignore_merges true → "llama-bpe"), and an untied Qwen2 with q/k/v biases and Qwen2's split,
// llama.cpp must tokenise as lorakit does, give the same NLL within 1e-5 and the same greedy
// tokens, for the base model, the base model + the GGUF LoRA adapter, and the merged export.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { noGrad, setBackend, tensor, tidy } from "../../src/core/index.js";
import { PRE_TOKENIZER_REGEX } from "../../src/export/gguf/tokenizer.js";
import { exportAdapterGguf, exportMergedGguf, exportModelGguf } from "../../src/export/node/export-gguf.js";
import { refBackend } from "../../src/kernels/ref/index.js";
import { evaluateNll } from "../../src/models/evaluate.js";
import type { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { loadModel, saveModel } from "../../src/models/node/load.js";
import type { LoraConfig } from "../../src/peft/config.js";
import { getPeftModel } from "../../src/peft/model.js";
import { fromPretrained, savePretrained } from "../../src/peft/node/io.js";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { loadTokenizer, saveTokenizer } from "../../src/tokenizer/node.js";
import { repoRoot } from "../util/repo.js";
import { tinyModel } from "../util/tiny-model.js";

// Loaded lazily: the package is a devDependency with a native prebuilt.
type NodeLlamaCpp = typeof import("node-llama-cpp");
type Llama = Awaited<ReturnType<NodeLlamaCpp["getLlama"]>>;
type Token = import("node-llama-cpp").Token;
type EvalItem = import("node-llama-cpp").ControlledEvaluateInputItem;
/** lorakit token ids as node-llama-cpp's branded Token. */
const tok1 = (id: number) => id as unknown as Token;
const withProbs = (id: number): EvalItem => [tok1(id), { generateNext: { probabilities: true } }];

const CORPUS =
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, " +
  "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery " +
  "part of the world. It is a way I have of driving off the spleen and regulating the circulation. ";
/** Contractions, digits, runs of spaces and newlines, and non-ASCII text: where the splits differ. */
const TEXT =
  "I've sailed 1234 leagues; 'RE you sure? We'Ve a'lL\n\n  seen it:   the whale 33333 times!\n" +
  "Émigré café — naïve 🦙🦙 我想在apple工作 ??!! --==";
const PROMPT = "Call me Ishmael. Some years";
const GEN = 8;

interface Case {
  name: string;
  dir: string;
  adapter: string;
  pre: string;
}

function nllLlamaCpp(probs: (Map<number, number> | undefined)[], ids: readonly number[]): number {
  let s = 0;
  for (let i = 0; i + 1 < ids.length; i++) {
    const p = probs[i]?.get(ids[i + 1]);
    assert.ok(p !== undefined && p > 0, `llama.cpp gave no probability for token ${ids[i + 1]} at ${i}`);
    s -= Math.log(p);
  }
  return s / (ids.length - 1);
}

/** lorakit's greedy continuation and, per step, the gap between its two best logits. */
function greedyLorakit(model: LlamaForCausalLM, prompt: readonly number[], n: number) {
  const ids = [...prompt];
  const gaps: number[] = [];
  model.withEval(() =>
    noGrad(() => {
      for (let k = 0; k < n; k++)
        tidy(() => {
          const logits = model.forward(tensor([ids], [1, ids.length], "i32"));
          const V = logits.shape[2];
          const row = (logits.data as Float32Array).subarray((ids.length - 1) * V, ids.length * V);
          let best = 0;
          for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
          let second = -Infinity;
          for (let v = 0; v < V; v++) if (v !== best) second = Math.max(second, row[v]);
          gaps.push(row[best] - second);
          ids.push(best);
        });
    }),
  );
  return { tokens: ids.slice(prompt.length), gaps };
}

describe("GGUF export, checked by llama.cpp (node-llama-cpp)", () => {
  let root: string;
  let llama: Llama;
  let lib: NodeLlamaCpp;
  const cases: Case[] = [];

  before(async () => {
    setBackend(refBackend);
    lib = await import("node-llama-cpp");
    llama = await lib.getLlama({
      gpu: false,
      build: "never",
      logLevel: lib.LlamaLogLevel.error,
      vramPadding: 0,
    });
    root = mkdtempSync(join(tmpdir(), "lorakit-gguf-"));
    const randomAdapter = (model: LlamaForCausalLM, dir: string, cfg: Partial<LoraConfig>, seed: number) => {
      const pm = getPeftModel(model, { initLoraWeights: false, ...cfg }, "default", { seed });
      // Random B at init scale would swamp the base model; keep the update a perturbation.
      for (const [, l] of pm.loraLayers()) {
        const b = l.lora_B.get("default")!.weight.data as Float32Array;
        for (let i = 0; i < b.length; i++) b[i] *= 0.5;
      }
      savePretrained(pm, dir);
    };

    // 1. The demo model: real merges, rsLoRA with rank and alpha patterns on every linear layer.
    const demo = join(repoRoot(), "models", "demo-base");
    randomAdapter(
      loadModel(demo).model,
      join(root, "demo-adapter"),
      {
        r: 4,
        loraAlpha: 16,
        useRslora: true,
        targetModules: "all-linear",
        rankPattern: { q_proj: 8 },
        alphaPattern: { down_proj: 4 },
      },
      1,
    );
    cases.push({
      name: "demo-base (smaug-bpe)",
      dir: demo,
      adapter: join(root, "demo-adapter"),
      pre: "smaug-bpe",
    });

    // 2. LLaMA, GQA 4/2, tied embeddings, llama3 RoPE scaling; Llama 3 tokenizer (ignore_merges).
    const llamaTok = trainBpeTokenizer(CORPUS.repeat(3), { vocabSize: 300 });
    llamaTok.tokenizerJson.model.ignore_merges = true;
    const vocabOf = (tj: typeof llamaTok.tokenizerJson) =>
      Object.keys(tj.model.vocab).length +
      tj.added_tokens.filter((t) => !(t.content in tj.model.vocab)).length;
    const llamaDir = join(root, "llama-gqa-tied");
    const lm = tinyModel(11, {
      vocab_size: vocabOf(llamaTok.tokenizerJson),
      tie_word_embeddings: true,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      rope_scaling: {
        rope_type: "llama3",
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 16,
      },
      rope_theta: 500,
    });
    saveModel(lm, llamaDir);
    saveTokenizer(llamaDir, llamaTok);
    randomAdapter(
      loadModel(llamaDir).model,
      join(root, "llama-adapter"),
      { r: 4, loraAlpha: 8, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"] },
      2,
    );
    cases.push({
      name: "llama GQA tied llama3-rope (llama-bpe)",
      dir: llamaDir,
      adapter: join(root, "llama-adapter"),
      pre: "llama-bpe",
    });

    // 3. Qwen2 with q/k/v biases, untied output, Qwen2's split (single digits) and NFC normaliser.
    const qwenTok = trainBpeTokenizer(CORPUS.repeat(3), { vocabSize: 320 });
    const split = (qwenTok.tokenizerJson.pre_tokenizer as { pretokenizers: { pattern: { Regex: string } }[] })
      .pretokenizers[0];
    split.pattern.Regex = PRE_TOKENIZER_REGEX.qwen2;
    (qwenTok.tokenizerJson as { normalizer: unknown }).normalizer = { type: "NFC" };
    const qwenDir = join(root, "qwen2-bias");
    const qm = tinyModel(12, {
      model_type: "qwen2",
      vocab_size: vocabOf(qwenTok.tokenizerJson),
      tie_word_embeddings: false,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      rope_theta: 1000000,
    });
    saveModel(qm, qwenDir);
    saveTokenizer(qwenDir, qwenTok);
    randomAdapter(
      loadModel(qwenDir).model,
      join(root, "qwen-adapter"),
      { r: 4, loraAlpha: 8, targetModules: "all-linear" },
      3,
    );
    cases.push({
      name: "qwen2 biases untied (qwen2)",
      dir: qwenDir,
      adapter: join(root, "qwen-adapter"),
      pre: "qwen2",
    });
  });

  after(async () => {
    await llama?.dispose();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** Tokenisation, NLL and greedy tokens of `gguf` (+ `lora`) against lorakit's `model`. */
  async function compare(c: Case, model: LlamaForCausalLM, gguf: string, lora?: string) {
    const tok = loadTokenizer(c.dir);
    const m = await llama.loadModel({ modelPath: gguf });
    try {
      const ctx = await m.createContext({
        contextSize: 256,
        batchSize: 256,
        // One thread: on a loaded 2-core machine llama.cpp's spinning thread pool is 10-50× slower.
        threads: 1,
        // f32 KV cache: llama.cpp's default f16 cache alone moves the NLL by ~1e-4.
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
        flashAttention: false,
        ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
      });
      try {
        const ids = tok.encode(TEXT);
        assert.deepEqual(
          Array.from(m.tokenize(TEXT, false)),
          ids,
          `${c.name}: llama.cpp tokenises as lorakit`,
        );
        const seq = ctx.getSequence();
        const res = await seq.controlledEvaluate(ids.slice(0, -1).map(withProbs));
        const got = nllLlamaCpp(
          res.map((r) => r?.next.probabilities as Map<number, number> | undefined),
          ids,
        );
        const want = evaluateNll(model, ids, { seqLen: ids.length }).loss;
        assert.ok(
          Math.abs(got - want) < 1e-5,
          `${c.name}${lora ? " + adapter" : ""}: NLL llama.cpp ${got} vs lorakit ${want}`,
        );

        // Greedy: identical tokens, compared up to a step where lorakit's top two logits tie
        // to within 1e-4 (where float rounding may legitimately pick either).
        const prompt = tok.encode(PROMPT);
        const lk = greedyLorakit(model, prompt, GEN);
        await seq.clearHistory();
        const cpp: number[] = [];
        let out = await seq.controlledEvaluate(
          prompt.map((t, i) => (i === prompt.length - 1 ? withProbs(t) : tok1(t))),
        );
        for (let k = 0; k < GEN; k++) {
          const probs = out[out.length - 1]!.next.probabilities!;
          const next = probs.keys().next().value as unknown as number;
          cpp.push(next);
          out = await seq.controlledEvaluate([withProbs(next)]);
        }
        const upTo = lk.gaps.findIndex((g) => g < 1e-4);
        const n = upTo < 0 ? GEN : upTo + 1;
        assert.deepEqual(
          cpp.slice(0, n),
          lk.tokens.slice(0, n),
          `${c.name}${lora ? " + adapter" : ""}: greedy tokens`,
        );
      } finally {
        await ctx.dispose();
      }
    } finally {
      await m.dispose();
    }
  }

  test("base model, f32: same tokens, NLL within 1e-5, same greedy tokens", async () => {
    for (const c of cases) {
      const out = join(root, `${c.name.split(" ")[0]}.gguf`);
      const r = exportModelGguf(c.dir, out, { dtype: "f32" });
      assert.equal(r.pre, c.pre);
      await compare(c, loadModel(c.dir, { dtype: "f32" }).model, out);
    }
  });

  test("base model + GGUF LoRA adapter (rsLoRA and rank/alpha patterns folded into B; q/k rows permuted)", async () => {
    for (const c of cases) {
      const base = join(root, `${c.name.split(" ")[0]}-base.gguf`);
      const lora = join(root, `${c.name.split(" ")[0]}-lora.gguf`);
      exportModelGguf(c.dir, base, { dtype: "f32" });
      const r = exportAdapterGguf(c.dir, c.adapter, lora);
      if (c.name.startsWith("demo")) assert.ok(r.rescaled > 0, "rsLoRA and the patterns need B rescaled");
      const model = loadModel(c.dir, { dtype: "f32" }).model;
      fromPretrained(model, c.adapter);
      await compare(c, model, base, lora);
    }
  });

  test("merged export equals lorakit's merged model", async () => {
    for (const c of cases) {
      const out = join(root, `${c.name.split(" ")[0]}-merged.gguf`);
      exportMergedGguf(c.dir, c.adapter, out, { dtype: "f32" });
      const model = fromPretrained(loadModel(c.dir, { dtype: "f32" }).model, c.adapter).mergeAndUnload();
      await compare(c, model, out);
    }
  });

  test("f16, bf16 and q8_0 exports load and stay close to the f32 NLL", async () => {
    const c = cases[0];
    const tok = loadTokenizer(c.dir);
    const ids = tok.encode(TEXT);
    const want = evaluateNll(loadModel(c.dir, { dtype: "f32" }).model, ids, { seqLen: ids.length }).loss;
    for (const [dtype, tol] of [
      ["f16", 2e-3],
      ["bf16", 2e-2],
      ["q8_0", 2e-2],
    ] as const) {
      const out = join(root, `demo-${dtype}.gguf`);
      exportModelGguf(c.dir, out, { dtype });
      const m = await llama.loadModel({ modelPath: out });
      const ctx = await m.createContext({
        contextSize: 256,
        threads: 1,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
        flashAttention: false,
      });
      const res = await ctx.getSequence().controlledEvaluate(ids.slice(0, -1).map(withProbs));
      const got = nllLlamaCpp(
        res.map((r) => r?.next.probabilities as Map<number, number> | undefined),
        ids,
      );
      await ctx.dispose();
      await m.dispose();
      assert.ok(Math.abs(got - want) < tol, `${dtype}: NLL ${got} vs f32 ${want}`);
    }
  });

  test("GGUF metadata as llama.cpp's reader sees it", async () => {
    const c = cases[1];
    const out = join(root, "meta.gguf");
    exportModelGguf(c.dir, out, { dtype: "f16" });
    const info = await lib.readGgufFileInfo(out, { readTensorInfo: true });
    assert.equal(info.version, 3);
    const md = info.metadata as unknown as Record<string, Record<string, Record<string, unknown>>>;
    assert.equal(md.general.architecture, "llama");
    assert.equal(md.tokenizer.ggml.model, "gpt2");
    assert.equal(md.tokenizer.ggml.pre, "llama-bpe");
    assert.equal(md.llama.context_length, 128);
    const names = info.tensorInfo!.map((t) => t.name);
    assert.ok(names.includes("rope_freqs.weight"), "llama3 rope scaling as rope_freqs.weight");
    assert.ok(!names.includes("output.weight"), "tied embeddings: no output.weight");
    const q = info.tensorInfo!.find((t) => t.name === "blk.0.attn_q.weight")!;
    assert.deepEqual(q.dimensions.map(Number), [32, 32]);
    assert.equal(q.ggmlType, 1); // F16
    assert.equal(info.tensorInfo!.find((t) => t.name === "blk.0.attn_norm.weight")!.ggmlType, 0); // norms stay F32
    // Nothing but the file itself was left in the folder.
    assert.deepEqual(
      readdirSync(root).filter((f) => f.startsWith(".")),
      [],
    );
    assert.ok(existsSync(out));
  });
});
