// End to end: the `lorakit` command line run as a child process on a tiny model folder
// built here, checked against the same computations done in-process (the fixed contracts
// of MISSION.md "Command line contracts"), plus merge / inspect / params and the errors.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { setBackend } from "../../src/core/engine.js";
import { refBackend } from "../../src/kernels/ref/index.js";
import { evaluateNll } from "../../src/models/evaluate.js";
import { generate } from "../../src/models/generate.js";
import { loadModel, saveModel } from "../../src/models/node/load.js";
import { getPeftModel } from "../../src/peft/model.js";
import { fromPretrained, savePretrained } from "../../src/peft/node/io.js";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { loadTokenizer, saveTokenizer } from "../../src/tokenizer/node.js";
import { repoRoot } from "../util/repo.js";
import { tinyModel } from "../util/tiny-model.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI = join(HERE, "..", "..", "src", "cli", "main.js");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/src/cli/main.js ...args` on the reference kernels. */
function cli(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, LORAKIT_BACKEND: "ref", NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    p.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    p.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    p.on("error", reject);
    p.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** stdout holds exactly one JSON object (one line) and nothing else. */
function oneJson(r: Run): Record<string, unknown> {
  assert.equal(r.code, 0, `exit ${r.code}; stderr:\n${r.stderr}`);
  const lines = r.stdout.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `stdout should be one JSON line, got:\n${r.stdout}`);
  const obj = JSON.parse(lines[0]);
  assert.equal(typeof obj, "object");
  assert.ok(obj !== null && !Array.isArray(obj));
  return obj;
}

/** Failed with a one-line `lorakit: ...` message and no JS stack. */
function failsClearly(r: Run, re: RegExp): void {
  assert.notEqual(r.code, 0, `should fail; stdout:\n${r.stdout}`);
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  const msg = lines.find((l) => l.startsWith("lorakit: ") && !/^lorakit: (loaded|adapter) /.test(l));
  assert.ok(msg, `no "lorakit: ..." line on stderr:\n${r.stderr}`);
  assert.match(msg, re);
  assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+\)?/, `a stack trace on stderr:\n${r.stderr}`);
  // stdout holds nothing, or with --json the error as one object.
  const o = r.stdout.trim();
  if (o !== "") assert.equal(typeof JSON.parse(o).error?.message, "string", `stdout on error:\n${r.stdout}`);
}

const CORPUS =
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, " +
  "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery " +
  "part of the world. It is a way I have of driving off the spleen and regulating the circulation.\n";

describe("lorakit command line", { timeout: 120_000 }, () => {
  let root: string;
  let modelDir: string;
  let adapterDir: string;
  let otherAdapterDir: string;
  let nanAdapterDir: string;
  let textFile: string;
  let dataFile: string;
  let vocab: number;

  before(() => {
    setBackend(refBackend);
    root = mkdtempSync(join(tmpdir(), "lorakit-cli-"));
    modelDir = join(root, "model");
    adapterDir = join(root, "adapter");
    otherAdapterDir = join(root, "other-adapter");
    nanAdapterDir = join(root, "nan-adapter");
    textFile = join(root, "text.txt");
    dataFile = join(root, "data.txt");
    const trained = trainBpeTokenizer(CORPUS.repeat(3), { vocabSize: 300 });
    const tj = trained.tokenizerJson;
    vocab =
      Object.keys(tj.model.vocab).length +
      tj.added_tokens.filter((t) => !(t.content in tj.model.vocab)).length;
    // The model's vocabulary is the tokenizer's (tinyModel's own is 48, below 256 bytes).
    const model = tinyModel(0, { vocab_size: vocab });
    saveModel(model, modelDir);
    saveTokenizer(modelDir, trained);
    writeFileSync(join(modelDir, "generation_config.json"), '{"do_sample": false}\n');
    writeFileSync(textFile, `${CORPUS}Call me Ishmael, said the sailor.`);
    writeFileSync(dataFile, CORPUS.repeat(2));
    // An adapter with random A and B, so that it changes the model's outputs.
    const pm = getPeftModel(
      tinyModel(0, { vocab_size: vocab }),
      { r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"], initLoraWeights: false },
      "default",
      { seed: 3 },
    );
    savePretrained(pm, adapterDir, { baseModelNameOrPath: modelDir });
    // One for a wider model: its shapes cannot fit.
    const other = getPeftModel(tinyModel(0, { vocab_size: vocab, hidden_size: 48 }), {
      r: 4,
      targetModules: ["q_proj", "v_proj"],
    });
    savePretrained(other, otherAdapterDir);
    // One with a NaN in B: safe merge must refuse it.
    const broken = getPeftModel(tinyModel(0, { vocab_size: vocab }), { r: 2, targetModules: ["q_proj"] });
    const [, l0] = broken.loraLayers().next().value!;
    l0.lora_B.get("default")!.weight.data[0] = Number.NaN;
    savePretrained(broken, nanAdapterDir);
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  /** The model (and adapter) loaded in this process, as the CLI loads them. */
  function loadHere(adapter?: string) {
    const { model } = loadModel(modelDir);
    if (adapter) fromPretrained(model, adapter);
    return model;
  }

  function nllHere(dir: string, adapter?: string) {
    const ids = loadTokenizer(dir).encode(readFileSync(textFile, "utf8"), { addSpecialTokens: false });
    const { model } = loadModel(dir);
    if (adapter) fromPretrained(model, adapter);
    return {
      ids,
      r: evaluateNll(model, ids, { seqLen: Math.min(model.config.maxPositionEmbeddings, 1024) }),
    };
  }

  test("eval --json: one object whose loss and tokens match evaluateNll", async () => {
    const [base, withAdapter] = await Promise.all([
      cli("eval", "--model", modelDir, "--text", textFile, "--json"),
      cli("eval", "--model", modelDir, "--adapter", adapterDir, "--text", textFile, "--json"),
    ]);
    const b = oneJson(base);
    const here = nllHere(modelDir);
    assert.equal(b.tokens, here.ids.length - 1);
    assert.ok(Math.abs((b.loss as number) - here.r.loss) < 1e-6, `${b.loss} vs ${here.r.loss}`);
    const a = oneJson(withAdapter);
    const hereA = nllHere(modelDir, adapterDir);
    assert.equal(a.tokens, here.ids.length - 1);
    assert.ok(Math.abs((a.loss as number) - hereA.r.loss) < 1e-6, `${a.loss} vs ${hereA.r.loss}`);
    assert.ok(Math.abs((a.loss as number) - (b.loss as number)) > 1e-4, "the adapter changes the loss");
    assert.match(withAdapter.stderr, /adapter/);
  });

  test("generate --temperature 0 --json: greedy tokens as in-process generate, not stopping at EOS", async () => {
    const prompt = "Call me";
    const n = 12;
    const [base, withAdapter] = await Promise.all([
      cli(
        "generate",
        "--model",
        modelDir,
        "--prompt",
        prompt,
        "--max-new-tokens",
        `${n}`,
        "--temperature",
        "0",
        "--json",
      ),
      cli(
        "generate",
        "--model",
        modelDir,
        "--adapter",
        adapterDir,
        "--prompt",
        prompt,
        "--max-new-tokens",
        `${n}`,
        "--temperature",
        "0",
        "--json",
      ),
    ]);
    const tok = loadTokenizer(modelDir);
    const promptIds = tok.encode(prompt, { addSpecialTokens: false });
    let first = -1;
    for (const [r, adapter] of [
      [base, undefined],
      [withAdapter, adapterDir],
    ] as const) {
      const o = oneJson(r);
      const want = generate(loadHere(adapter), promptIds, { maxNewTokens: n, temperature: 0 });
      assert.equal((o.tokens as number[]).length, n);
      assert.deepEqual(o.tokens, want);
      assert.equal(o.text, tok.decode(want));
      // Speeds measured inside the command: the prompt's prefill, then n − 1 decode steps.
      assert.ok((o.prefill_tokens_per_second as number) > 0, `prefill ${o.prefill_tokens_per_second}`);
      assert.ok((o.decode_tokens_per_second as number) > 0, `decode ${o.decode_tokens_per_second}`);
      if (adapter === undefined) first = want[0];
    }
    // A copy of the model whose EOS is the first greedy token: generation still runs to
    // --max-new-tokens, and stops right after it with --stop-at-eos.
    const eosDir = join(root, "model-eos");
    cpSync(modelDir, eosDir, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(eosDir, "config.json"), "utf8"));
    writeFileSync(join(eosDir, "config.json"), JSON.stringify({ ...cfg, eos_token_id: first }));
    const args = ["generate", "--model", eosDir, "--prompt", prompt, "--max-new-tokens", `${n}`, "--json"];
    const [full, stopped] = await Promise.all([cli(...args), cli(...args, "--stop-at-eos")]);
    assert.deepEqual(oneJson(full).tokens, oneJson(base).tokens);
    assert.deepEqual(oneJson(stopped).tokens, [first]);
  });

  test("generate --kv-dtype bf16 --json: the tokens of in-process generate with a bf16 cache; a bad value fails clearly", async () => {
    const prompt = "Call me";
    const n = 10;
    const base = ["generate", "--model", modelDir, "--prompt", prompt, "--max-new-tokens", `${n}`, "--json"];
    const [bf16, bad, badServe] = await Promise.all([
      cli(...base, "--kv-dtype", "bf16"),
      cli(...base, "--kv-dtype", "f16"),
      cli("serve", "--model", modelDir, "--port", "0", "--kv-dtype", "bf8"),
    ]);
    const promptIds = loadTokenizer(modelDir).encode(prompt, { addSpecialTokens: false });
    const o = oneJson(bf16);
    assert.equal(o.kv_dtype, "bf16");
    assert.deepEqual(o.tokens, generate(loadHere(), promptIds, { maxNewTokens: n, kvDtype: "bf16" }));
    failsClearly(bad, /--kv-dtype must be f32 or bf16, got "f16"/);
    failsClearly(badServe, /--kv-dtype must be f32 or bf16, got "bf8"/);
  });

  test("train --json: a few steps write the adapter, loss.csv and loss.svg", async () => {
    const out = join(root, "trained");
    const r = await cli(
      "train",
      "--model",
      modelDir,
      "--data",
      dataFile,
      "--out",
      out,
      "--steps",
      "3",
      "--batch-size",
      "2",
      "--seq-len",
      "16",
      "--r",
      "2",
      "--target-modules",
      "q_proj,v_proj",
      "--seed",
      "1",
      "--threads",
      "1",
      "--json",
    );
    const o = oneJson(r);
    assert.equal(o.steps, 3);
    assert.ok(Number.isFinite(o.final_loss), `final_loss ${o.final_loss}`);
    assert.ok((o.tokens_per_second as number) > 0);
    for (const f of ["adapter_config.json", "adapter_model.safetensors", "loss.csv", "loss.svg"])
      assert.ok(existsSync(join(out, f)), `${f} written`);
    // A header, the held-out loss before training (step 0), and one row per step.
    const csv = readFileSync(join(out, "loss.csv"), "utf8").trim().split("\n");
    assert.equal(csv.length, 1 + 1 + 3);
    assert.match(csv[1], /^0,,,\d/);
    assert.equal(JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8")).r, 2);
  });

  test("merge: the merged folder loads and evaluates as base + adapter", async () => {
    const out = join(root, "merged");
    const o = oneJson(
      await cli("merge", "--model", modelDir, "--adapter", adapterDir, "--out", out, "--safe", "--json"),
    );
    assert.equal(o.out, out);
    assert.equal(o.merged_modules, 3 * 2);
    let params = 0;
    for (const [, t] of loadModel(modelDir).model.namedParameters()) params += t.size;
    assert.equal(o.parameters, params);
    for (const f of [
      "config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
      "generation_config.json",
    ])
      assert.ok(existsSync(join(out, f)), `${f} in the merged folder`);
    const merged = nllHere(out);
    const ref = nllHere(modelDir, adapterDir);
    assert.ok(Math.abs(merged.r.loss - ref.r.loss) < 1e-5, `${merged.r.loss} vs ${ref.r.loss}`);
    // bf16 output: half the bytes, still close.
    const out16 = join(root, "merged-bf16");
    const h = await cli(
      "merge",
      "--model",
      modelDir,
      "--adapter",
      adapterDir,
      "--out",
      out16,
      "--dtype",
      "bf16",
    );
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, /merged 6 module/);
    assert.ok(Math.abs(nllHere(out16).r.loss - ref.r.loss) < 0.05);
    // Sharded output (tiny shards) loads the same.
    const outSharded = join(root, "merged-sharded");
    const sh = await cli(
      "merge",
      "--model",
      modelDir,
      "--adapter",
      adapterDir,
      "--out",
      outSharded,
      "--max-shard-mb",
      "0.05",
    );
    assert.equal(sh.code, 0, sh.stderr);
    assert.ok(existsSync(join(outSharded, "model.safetensors.index.json")));
    assert.ok(Math.abs(nllHere(outSharded).r.loss - merged.r.loss) < 1e-9);
    failsClearly(
      await cli("merge", "--model", modelDir, "--adapter", adapterDir, "--out", modelDir),
      /base model folder/,
    );
  });

  test("inspect: config, counts, per-module ‖ΔW‖ and effective rank from the adapter files alone", async () => {
    const svg = join(root, "inspect.svg");
    const [j, human] = await Promise.all([
      cli("inspect", adapterDir, "--json", "--plot", svg),
      cli("inspect", adapterDir),
    ]);
    const o = oneJson(j) as {
      config: { r: number; lora_alpha: number };
      parameters: { total: number };
      modules: {
        module: string;
        rank: number;
        norm: number;
        effective_rank: number;
        rank_1pct: number;
        singular_values: number[];
      }[];
    };
    assert.equal(o.config.r, 4);
    assert.equal(o.config.lora_alpha, 8);
    assert.equal(o.modules.length, 6);
    // r·(in + out) per module: q (32+32), v (32+16), down (40+32), two layers.
    assert.equal(o.parameters.total, 2 * 4 * (64 + 48 + 72));
    // ‖ΔW‖_F against ΔW formed densely in-process.
    const model = loadHere(adapterDir);
    const layer = model.getSubmodule("model.layers.1.self_attn.v_proj") as unknown as {
      deltaWeight(n: string): Float32Array;
    };
    let sq = 0;
    for (const x of layer.deltaWeight("default")) sq += x * x;
    const m = o.modules.find((x) => x.module === "model.layers.1.self_attn.v_proj")!;
    assert.ok(Math.abs(m.norm - Math.sqrt(sq)) < 1e-4 * Math.sqrt(sq), `${m.norm} vs ${Math.sqrt(sq)}`);
    for (const x of o.modules) {
      assert.equal(x.rank, 4);
      assert.equal(x.singular_values.length, 4);
      assert.ok(x.effective_rank > 1 && x.effective_rank <= 4 + 1e-9);
      assert.ok(x.rank_1pct >= 1 && x.rank_1pct <= 4);
    }
    const svgText = readFileSync(svg, "utf8");
    assert.match(svgText, /^<svg [\s\S]*<\/svg>\n$/);
    assert.ok((svgText.match(/<rect [^>]*fill="#1f77b4"/g) ?? []).length >= 2 * 3, "bars for every panel");
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /model\.layers\.0\.mlp\.down_proj/);
    assert.match(human.stdout, /layer 1 │█/);
  });

  test("params: the seed's LLaMA-7B numbers", async () => {
    const cfg = join(repoRoot(), "test", "fixtures", "configs", "llama-7b.json");
    const args = ["params", "--config", cfg, "--r", "8", "--target-modules", "q_proj,k_proj,v_proj"];
    const [j, human, r64] = await Promise.all([
      cli(...args, "--json"),
      cli(...args),
      cli("params", "--config", cfg, "--r", "64", "--target-modules", "q_proj,k_proj,v_proj", "--json"),
    ]);
    const o = oneJson(j) as {
      per_layer: { trainable: number; full_finetune_targets: number }[];
      trainable: number;
      base: number;
      full_finetune_targets: number;
      trainable_line: string;
    };
    assert.equal(o.per_layer.length, 32);
    assert.equal(o.per_layer[0].trainable, 196_608); // 3 × 2 × 4096 × 8
    assert.equal(o.per_layer[0].full_finetune_targets, 50_331_648); // 3 × 4096²
    assert.equal(o.trainable, 32 * 196_608);
    assert.equal(o.base, 6_738_415_616);
    assert.equal(
      o.trainable_line,
      "trainable params: 6,291,456 || all params: 6,744,707,072 || trainable%: 0.0933",
    );
    assert.equal((oneJson(r64).per_layer as { trainable: number }[])[0].trainable, 1_572_864);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /196,608/);
    assert.match(human.stdout, /50,331,648/);
    assert.match(
      human.stdout,
      /trainable params: 6,291,456 \|\| all params: 6,744,707,072 \|\| trainable%: 0\.0933/,
    );
  });

  test("errors: one `lorakit: ...` line on stderr, no stack, non-zero exit", async () => {
    const runs = await Promise.all([
      cli("eval", "--text", textFile, "--json"),
      cli("eval", "--model", join(root, "nope"), "--text", textFile, "--json"),
      cli("eval", "--model", modelDir, "--adapter", otherAdapterDir, "--text", textFile, "--json"),
      cli(
        "train",
        "--model",
        modelDir,
        "--data",
        dataFile,
        "--out",
        join(root, "bad"),
        "--steps",
        "many",
        "--json",
      ),
      cli("generate", "--model", modelDir, "--prompt", "hi", "--max-new-tokens", "-1", "--json"),
      cli("inspect", join(root, "nope")),
      cli("params", "--config", join(root, "nope.json")),
      cli("merge", "--model", modelDir, "--adapter", otherAdapterDir, "--out", join(root, "m2")),
      cli("eval", "--model", modelDir, "--text", join(root, "nope.txt")),
      cli("generate", "--model", modelDir, "--prompt", "hi", "--max-new-token", "3", "--json"),
      cli("frobnicate"),
      cli(
        "merge",
        "--model",
        modelDir,
        "--adapter",
        nanAdapterDir,
        "--out",
        join(root, "m3"),
        "--safe",
        "--json",
      ),
    ]);
    const expect = [
      /--model/,
      /nope: no config\.json/,
      /shape/,
      /--steps/,
      /--max-new-tokens/,
      /no adapter_config\.json/,
      /--config/,
      /shape/,
      /nope\.txt: no such file/,
      /unknown option --max-new-token .*did you mean --max-new-tokens\?/,
      /Unknown command frobnicate/,
      /NaNs detected in the merged weights\. The adapter default seems to be broken/,
    ];
    assert.equal(runs.length, expect.length);
    assert.ok(!existsSync(join(root, "m3", "model.safetensors")), "safe merge writes nothing");
    for (const [i, r] of runs.entries()) failsClearly(r, expect[i]);
  });
});
