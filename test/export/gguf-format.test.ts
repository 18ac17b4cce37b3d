// GGUF export without llama.cpp: the container bytes, Q8_0 blocks, the pre-tokenizer choice,
// the Modelfile template, and every refusal (a clear error, no file written).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { f16ToF32 } from "../../src/core/dtype.js";
import { ExportError } from "../../src/export/errors.js";
import { quantizeQ8_0 } from "../../src/export/gguf/encode.js";
import { encodeGgufHeader, kv } from "../../src/export/gguf/format.js";
import { permuteRopeRows } from "../../src/export/gguf/llama-arch.js";
import { chatTemplateToGo } from "../../src/export/gguf/modelfile.js";
import { PRE_TOKENIZER_REGEX, tokenizerGguf } from "../../src/export/gguf/tokenizer.js";
import { exportAdapterGguf, exportModelGguf } from "../../src/export/node/export-gguf.js";
import { saveModel } from "../../src/models/node/load.js";
import { getPeftModel } from "../../src/peft/model.js";
import { savePretrained } from "../../src/peft/node/io.js";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { loadTokenizer, saveTokenizer } from "../../src/tokenizer/node.js";
import { repoRoot } from "../util/repo.js";
import { tinyModel } from "../util/tiny-model.js";

const CORPUS =
  "Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about. ";

test("GGUF header: magic, version, counts, typed metadata, dims innermost first, aligned offsets", () => {
  const l = encodeGgufHeader(
    [kv.str("general.architecture", "llama"), kv.u32("llama.block_count", 2), kv.strs("t", ["a", "bc"])],
    [
      { name: "a", shape: [3, 5], type: "F32" },
      { name: "b", shape: [64], type: "F16" },
    ],
  );
  const v = new DataView(l.head.buffer);
  assert.equal(new TextDecoder().decode(l.head.subarray(0, 4)), "GGUF");
  assert.equal(v.getUint32(4, true), 3);
  assert.equal(v.getBigUint64(8, true), 2n);
  assert.equal(v.getBigUint64(16, true), 3n);
  // first key: u64 length, bytes, then type 8 (string)
  assert.equal(v.getBigUint64(24, true), 20n);
  assert.equal(new TextDecoder().decode(l.head.subarray(32, 52)), "general.architecture");
  assert.equal(v.getUint32(52, true), 8);
  assert.equal(l.head.length % 32, 0);
  assert.equal(l.tensors[0].offset, l.head.length);
  assert.equal(l.tensors[1].offset, l.head.length + 64); // 60 bytes padded to 64
  assert.equal(l.fileBytes, l.head.length + 64 + 128);
  // tensor a's dims are written innermost first: 5 then 3
  const text = new TextDecoder("latin1").decode(l.head);
  const at = text.lastIndexOf("\u0001\u0000\u0000\u0000\u0000\u0000\u0000\u0000a") + 9;
  assert.equal(v.getUint32(at, true), 2);
  assert.equal(v.getBigUint64(at + 4, true), 5n);
  assert.equal(v.getBigUint64(at + 12, true), 3n);
  assert.throws(() => encodeGgufHeader([kv.u32("x", 1), kv.u32("x", 2)], []), /given twice/);
  assert.throws(() => encodeGgufHeader([kv.u32("x", -1)], []), /not an integer in \[0/);
  assert.throws(
    () => encodeGgufHeader([], [{ name: "q", shape: [4, 33], type: "Q8_0" }]),
    /not a multiple of 32/,
  );
  assert.throws(
    () => encodeGgufHeader([], [{ name: "x".repeat(64), shape: [1], type: "F32" }]),
    /longer than/,
  );
});

test("Q8_0 blocks: f16 scale max|x|/127, quants rounded half away from zero", () => {
  const x = new Float32Array(64);
  for (let i = 0; i < 32; i++) x[i] = (i - 16) / 4; // max |x| = 4
  x[40] = -127; // second block: d = 1, so the quants are the values rounded
  x[41] = 0.5; // halves round away from zero: 1, -1, 3 (not to even)
  x[42] = -0.5;
  x[43] = 2.5;
  const q = quantizeQ8_0(x);
  assert.equal(q.length, 68);
  const v = new DataView(q.buffer);
  assert.ok(Math.abs(f16ToF32(v.getUint16(0, true)) - 4 / 127) < 1e-5);
  assert.equal(v.getInt8(2), -127); // -4
  assert.equal(v.getInt8(2 + 18), 16); // 0.5 · 127/4 = 15.875
  assert.equal(f16ToF32(v.getUint16(34, true)), 1);
  assert.deepEqual(
    [8, 9, 10, 11, 0].map((j) => v.getInt8(34 + 2 + j)),
    [-127, 1, -1, 3, 0],
  );
});

test("q/k permutation: row h·D + 2i + j comes from row h·D + j·D/2 + i", () => {
  // 2 heads × head_dim 4, one column: rows 0..7
  const x = Float32Array.from({ length: 8 }, (_, i) => i);
  assert.deepEqual(Array.from(permuteRopeRows(x, 1, { heads: 2, headDim: 4 })), [0, 2, 1, 3, 4, 6, 5, 7]);
  assert.throws(() => permuteRopeRows(x, 1, { heads: 3, headDim: 4 }), /cannot permute 8 rows/);
});

describe("tokenizer metadata", () => {
  const trained = trainBpeTokenizer(CORPUS.repeat(4), { vocabSize: 280 });
  const V = Object.keys(trained.tokenizerJson.model.vocab).length + trained.tokenizerJson.added_tokens.length;
  const clone = () => JSON.parse(JSON.stringify(trained.tokenizerJson));
  const meta = (r: ReturnType<typeof tokenizerGguf>, key: string) =>
    r.metadata.find((e) => e.key === key)?.value;

  test("pre-tokenizer from the split regex and ignore_merges; tokens padded to vocab_size; BOS/add_bos", () => {
    const r = tokenizerGguf({
      tokenizerJson: trained.tokenizerJson,
      tokenizerConfig: trained.tokenizerConfig,
      vocabSize: V + 2,
    });
    assert.equal(r.pre, "smaug-bpe");
    const tokens = meta(r, "tokenizer.ggml.tokens") as string[];
    assert.equal(tokens.length, V + 2);
    assert.equal(tokens[V + 1], `[PAD${V + 1}]`);
    const types = meta(r, "tokenizer.ggml.token_type") as number[];
    assert.equal(types[V + 1], 5);
    assert.equal(types[trained.tokenizerJson.added_tokens[0].id], 3);
    assert.equal(r.bosTokenId, trained.tokenizerJson.added_tokens[0].id);
    assert.equal(r.addBos, true);
    const ig = clone();
    ig.model.ignore_merges = true;
    assert.equal(tokenizerGguf({ tokenizerJson: ig, vocabSize: V }).pre, "llama-bpe");
    for (const [regex, pre] of [
      [PRE_TOKENIZER_REGEX.qwen2, "qwen2"],
      [PRE_TOKENIZER_REGEX.gpt2, "gpt-2"],
    ]) {
      const t = clone();
      t.pre_tokenizer.pretokenizers[0].pattern.Regex = regex;
      assert.equal(tokenizerGguf({ tokenizerJson: t, vocabSize: V }).pre, pre);
    }
  });

  test("refuses what llama.cpp cannot express, naming the reason", () => {
    // biome-ignore lint/suspicious/noExplicitAny: edits reach into tokenizer.json's loose JSON
    type Tj = Record<string, any>;
    const cases: [string, (t: Tj) => void, RegExp][] = [
      ["unknown regex", (t) => (t.pre_tokenizer.pretokenizers[0].pattern.Regex = "\\w+"), /split regex/],
      ["wordpiece", (t) => (t.model.type = "WordPiece"), /byte-level BPE/],
      ["lowercase", (t) => (t.normalizer = { type: "Lowercase" }), /normalizer/],
      ["metaspace", (t) => (t.pre_tokenizer = { type: "Metaspace", replacement: "▁" }), /SentencePiece/],
      [
        "qwen2 + ignore_merges",
        (t) => {
          t.pre_tokenizer.pretokenizers[0].pattern.Regex = PRE_TOKENIZER_REGEX.qwen2;
          t.model.ignore_merges = true;
        },
        /no pre-tokenizer/,
      ],
    ];
    for (const [name, edit, re] of cases) {
      const t = clone();
      edit(t);
      assert.throws(
        () => tokenizerGguf({ tokenizerJson: t, vocabSize: V }),
        (e: Error) => e instanceof ExportError && re.test(e.message),
        name,
      );
    }
    assert.throws(
      () => tokenizerGguf({ tokenizerJson: trained.tokenizerJson, vocabSize: V - 1 }),
      /vocab_size is/,
    );
  });
});

describe("chat templates, as gguf-py's SpecialVocab picks them", () => {
  const trained = trainBpeTokenizer(CORPUS.repeat(4), { vocabSize: 280 });
  const V = Object.keys(trained.tokenizerJson.model.vocab).length + trained.tokenizerJson.added_tokens.length;
  const { chat_template: _, ...configNoTemplate } = trained.tokenizerConfig;
  const meta = (r: ReturnType<typeof tokenizerGguf>, key: string) =>
    r.metadata.find((e) => e.key === key)?.value;
  const pick = (
    tokenizerConfig: unknown,
    chatTemplateFile: Parameters<typeof tokenizerGguf>[0]["chatTemplateFile"],
  ) =>
    tokenizerGguf({ tokenizerJson: trained.tokenizerJson, tokenizerConfig, vocabSize: V, chatTemplateFile });

  test("tokenizer_config.json's key first (even null), the files only without it, nothing without a config", () => {
    assert.equal(pick(trained.tokenizerConfig, "FILE").chatTemplate, trained.tokenizerConfig.chat_template);
    assert.equal(pick({ ...configNoTemplate, chat_template: null }, "FILE").chatTemplate, null);
    assert.equal(pick(configNoTemplate, "FILE").chatTemplate, "FILE");
    assert.equal(pick(undefined, "FILE").chatTemplate, null);
    assert.equal(pick({}, "FILE").chatTemplate, null);
    const named = pick(configNoTemplate, [
      { name: "default", template: "D" },
      { name: "tool use", template: "T" },
    ]);
    assert.equal(named.chatTemplate, "D");
    assert.equal(meta(named, "tokenizer.chat_template.tool_use"), "T");
    assert.deepEqual(meta(named, "tokenizer.chat_templates"), ["tool_use"]);
  });

  test("a folder's chat_template.jinja with additional_chat_templates/, else chat_template.json", () => {
    const root = mkdtempSync(join(tmpdir(), "lorakit-gguf-templates-"));
    try {
      const dir = join(root, "model");
      saveModel(tinyModel(0, { vocab_size: V }), dir);
      saveTokenizer(dir, trained);
      writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(configNoTemplate));
      writeFileSync(join(dir, "chat_template.json"), JSON.stringify({ chat_template: "FROM JSON" }));
      assert.equal(exportModelGguf(dir, join(root, "a.gguf")).chatTemplate, "FROM JSON");
      writeFileSync(join(dir, "chat_template.jinja"), "MAIN");
      mkdirSync(join(dir, "additional_chat_templates"));
      writeFileSync(join(dir, "additional_chat_templates", "rag.jinja"), "RAG TEMPLATE");
      const r = exportModelGguf(dir, join(root, "b.gguf"));
      assert.equal(r.chatTemplate, "MAIN");
      const bytes = readFileSync(join(root, "b.gguf")).toString("latin1");
      assert.ok(bytes.includes("tokenizer.chat_template.rag") && bytes.includes("RAG TEMPLATE"));
      assert.ok(bytes.includes("tokenizer.chat_templates"));
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

test("Modelfile TEMPLATE: the demo model's Jinja template as the Go template that renders the same text", () => {
  const tok = loadTokenizer(join(repoRoot(), "models", "demo-base"));
  const go = chatTemplateToGo((m, g) => tok.applyChatTemplate(m, { addGenerationPrompt: g }), {
    bosToken: tok.bosToken,
    addBos: true,
  });
  const h = (r: string) => `<|start_header_id|>${r}<|end_header_id|>\n\n`;
  assert.equal(
    go.template,
    `{{ range .Messages }}{{ if eq .Role "system" }}${h("system")}{{ .Content }}<|eot_id|>{{ else if eq .Role "user" }}${h("user")}{{ .Content }}<|eot_id|>{{ else if eq .Role "assistant" }}${h("assistant")}{{ .Content }}<|eot_id|>{{ end }}{{ end }}${h("assistant")}`,
  );
  // A template with per-position logic is refused with its reason.
  const odd = chatTemplateToGo((m) =>
    m.map((x, i) => (i === 0 ? `[first]${x.content}` : x.content)).join("|"),
  );
  assert.equal(odd.template, null);
  assert.match(odd.reason!, /not translated/);
});

describe("export refusals leave no file", () => {
  let root: string;
  let modelDir: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), "lorakit-gguf-refuse-"));
    modelDir = join(root, "model");
    const t = trainBpeTokenizer(CORPUS.repeat(3), { vocabSize: 280 });
    const V = Object.keys(t.tokenizerJson.model.vocab).length + t.tokenizerJson.added_tokens.length;
    saveModel(tinyModel(0, { vocab_size: V }), modelDir);
    saveTokenizer(modelDir, t);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const noGgufLeft = () =>
    assert.deepEqual(
      readdirSync(root).filter((f) => f.includes(".gguf")),
      [],
    );

  test("DoRA, LoRA biases and modules_to_save: refused with the reason and --merge", () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ["dora", { useDora: true }, /DoRA.*--merge/s],
      ["lora-bias", { loraBias: true }, /lora_bias.*--merge/s],
      ["mts", { modulesToSave: ["lm_head"] }, /modules_to_save.*--merge/s],
      ["bias-all", { bias: "all" }, /trained biases.*--merge/s],
    ];
    for (const [name, cfg, re] of cases) {
      const dir = join(root, name);
      // bias "all" saves the model's biases: a Qwen2 base has q/k/v biases to save.
      const base = tinyModel(0, { vocab_size: 300, ...(name === "bias-all" ? { model_type: "qwen2" } : {}) });
      savePretrained(getPeftModel(base, { r: 2, targetModules: ["q_proj"], ...cfg }), dir);
      assert.throws(() => exportAdapterGguf(modelDir, dir, join(root, `${name}.gguf`)), re, name);
    }
    noGgufLeft();
  });

  test("a model llama.cpp's qwen2 cannot run, and a tokenizer without a vocabulary row", () => {
    const q = join(root, "qwen-bad");
    saveModel(tinyModel(0, { model_type: "qwen2", vocab_size: 300, head_dim: 16 }), q);
    saveTokenizer(q, loadTokenizer(modelDir));
    assert.throws(() => exportModelGguf(q, join(root, "q.gguf")), /num_attention_heads × head_dim/);
    const small = join(root, "small-vocab");
    saveModel(tinyModel(0, { vocab_size: 100 }), small);
    saveTokenizer(small, loadTokenizer(modelDir));
    assert.throws(() => exportModelGguf(small, join(root, "s.gguf")), /vocab_size is 100/);
    noGgufLeft();
  });

  test("CLI: --json prints one object, --help works, bad --dtype fails before writing", () => {
    const cli = join(repoRoot(), "dist", "src", "cli", "main.js");
    const out = join(root, "m.gguf");
    const r = spawnSync(
      process.execPath,
      [cli, "export-gguf", "--model", modelDir, "--out", out, "--ollama", "--json"],
      {
        encoding: "utf8",
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout.trim());
    assert.equal(j.kind, "model");
    assert.equal(j.arch, "llama");
    assert.ok(existsSync(out));
    assert.match(readFileSync(join(root, "Modelfile"), "utf8"), /^FROM \.\/m\.gguf$/m);
    const h = spawnSync(process.execPath, [cli, "export-gguf", "--help"], { encoding: "utf8" });
    assert.equal(h.status, 0);
    assert.match(h.stdout, /--adapter/);
    const bad = spawnSync(
      process.execPath,
      [cli, "export-gguf", "--model", modelDir, "--out", join(root, "x.gguf"), "--dtype", "q4"],
      {
        encoding: "utf8",
      },
    );
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /--dtype q4/);
    assert.ok(!existsSync(join(root, "x.gguf")));
  });
});
