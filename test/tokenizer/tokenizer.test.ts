import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { mobyDickText, sotuText } from "../../src/data/corpora.js";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { TokenizerError } from "../../src/tokenizer/errors.js";
import { loadTokenizer, saveTokenizer } from "../../src/tokenizer/node.js";
import { Tokenizer } from "../../src/tokenizer/tokenizer.js";

const trained = trainBpeTokenizer(mobyDickText().slice(0, 200_000), { vocabSize: 512 });
const tok = Tokenizer.fromJSON(trained.tokenizerJson, trained.tokenizerConfig);
const BOS = 506;
const EOS = 507;
const PAD = 508;
const START_HEADER = 509;
const END_HEADER = 510;
const EOT = 511;

describe("Tokenizer special tokens", () => {
  it("knows the special ids and the vocab size", () => {
    assert.equal(tok.vocabSize, 512);
    assert.equal(tok.bosTokenId, BOS);
    assert.equal(tok.eosTokenId, EOS);
    assert.equal(tok.padTokenId, PAD);
    assert.equal(tok.bosToken, "<|begin_of_text|>");
    assert.equal(tok.tokenToId("<|eot_id|>"), EOT);
    assert.equal(tok.idToToken(START_HEADER), "<|start_header_id|>");
    assert.deepEqual([...tok.specialTokenIds], [BOS, EOS, PAD, START_HEADER, END_HEADER, EOT]);
  });

  it("encode adds nothing by default; addSpecialTokens prepends BOS only", () => {
    assert.deepEqual(tok.encode(""), []);
    const plain = tok.encode("Call me Ishmael.");
    assert.ok(plain.length > 0 && !plain.some((id) => tok.specialTokenIds.has(id)));
    assert.deepEqual(tok.encode("Call me Ishmael.", { addSpecialTokens: true }), [BOS, ...plain]);
    assert.deepEqual(tok.encode("", { addSpecialTokens: true }), [BOS]);
  });

  it("special-token text in the input becomes its single id", () => {
    const ids = tok.encode("hi<|end_of_text|><|eot_id|>");
    assert.deepEqual(ids.slice(-2), [EOS, EOT]);
    assert.equal(tok.decode(ids), "hi<|end_of_text|><|eot_id|>");
  });

  it("decode keeps or skips special tokens", () => {
    const ids = [BOS, ...tok.encode(" the whale"), EOS, PAD];
    assert.equal(tok.decode(ids), "<|begin_of_text|> the whale<|end_of_text|><|pad|>");
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), " the whale");
  });

  it("decode is exact (no clean-up of spaces) and handles empty input", () => {
    const s = "Hello , world . It is n't ?";
    assert.equal(tok.decode(tok.encode(s)), s);
    assert.equal(tok.decode(tok.encode(s), { cleanUpTokenizationSpaces: true }), "Hello, world. It isn't?");
    assert.equal(tok.decode([]), "");
    assert.equal(tok.decode(Int32Array.from(tok.encode("whale"))), "whale");
  });

  it("decode skips ids past the vocabulary (a padded embedding matrix), as HF tokenizers do", () => {
    const ids = tok.encode("whale");
    assert.equal(tok.decode([...ids, 512, 100_000]), "whale");
    assert.equal(tok.decode([512]), "");
    assert.throws(
      () => tok.decode([1, -1]),
      (e: unknown) =>
        e instanceof TokenizerError && /token id -1 is not a non-negative integer/.test(e.message),
    );
  });

  it("encodes State of the Union text it was not trained on, exactly round-tripping", () => {
    const s = sotuText({ years: [1863, 1941] });
    assert.ok(s.length > 10_000);
    assert.equal(tok.decode(tok.encode(s)), s);
  });
});

describe("Tokenizer.applyChatTemplate", () => {
  const messages = [
    { role: "system", content: "You are a sailor." },
    { role: "user", content: "Where is the whale?" },
    { role: "assistant", content: " Off the\nstarboard bow." },
  ];

  it("renders the Llama-3-style template", () => {
    assert.equal(
      tok.applyChatTemplate(messages),
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a sailor.<|eot_id|>" +
        "<|start_header_id|>user<|end_header_id|>\n\nWhere is the whale?<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n Off the\nstarboard bow.<|eot_id|>",
    );
    assert.equal(
      tok.applyChatTemplate(messages.slice(0, 2), { addGenerationPrompt: true }),
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a sailor.<|eot_id|>" +
        "<|start_header_id|>user<|end_header_id|>\n\nWhere is the whale?<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    );
  });

  it("tokenizes the rendered chat with single special ids and decodes it back", () => {
    const text = tok.applyChatTemplate(messages, { addGenerationPrompt: false });
    const ids = tok.encode(text);
    assert.equal(ids[0], BOS);
    assert.equal(ids.filter((id) => id === EOT).length, 3);
    assert.equal(ids.filter((id) => id === START_HEADER).length, 3);
    assert.equal(tok.decode(ids), text);
  });

  it("raise_exception in the template becomes a TokenizerError", () => {
    assert.throws(
      () => tok.applyChatTemplate([{ role: "pirate", content: "arr" }]),
      (e: unknown) => e instanceof TokenizerError && /Unknown chat role: pirate/.test(e.message),
    );
  });

  it("without a chat_template it says so", () => {
    const bare = Tokenizer.fromJSON(trained.tokenizerJson);
    assert.equal(bare.bosTokenId, null);
    assert.throws(
      () => bare.applyChatTemplate(messages),
      (e: unknown) => e instanceof TokenizerError && /no chat_template/.test(e.message),
    );
  });

  it("picks a named template from a list, as HF allows", () => {
    const config = {
      ...trained.tokenizerConfig,
      chat_template: [
        { name: "default", template: "{% for m in messages %}[{{ m.content }}]{% endfor %}" },
        { name: "terse", template: "{{ messages | length }}{{ eos_token }}" },
      ],
    };
    const t = Tokenizer.fromJSON(trained.tokenizerJson, config);
    assert.equal(t.applyChatTemplate(messages.slice(0, 2)), "[You are a sailor.][Where is the whale?]");
    assert.equal(t.applyChatTemplate(messages, { templateName: "terse" }), "3<|end_of_text|>");
  });
});

describe("Tokenizer.fromJSON errors", () => {
  it("names an unsupported model type", () => {
    const json = { ...trained.tokenizerJson, model: { type: "WordLevel", vocab: {}, unk_token: "[UNK]" } };
    assert.throws(
      () => Tokenizer.fromJSON(json),
      (e: unknown) =>
        e instanceof TokenizerError && /"WordLevel" is not supported; supported: BPE/.test(e.message),
    );
  });

  it("rejects a file without a model and bad JSON text", () => {
    assert.throws(
      () => Tokenizer.fromJSON({ version: "1.0" }),
      (e: unknown) => e instanceof TokenizerError && /no "model" object/.test(e.message),
    );
    assert.throws(
      () => Tokenizer.fromJSON("{not json"),
      (e: unknown) => e instanceof TokenizerError && /tokenizer.json is not valid JSON/.test(e.message),
    );
  });

  it("wraps the library's error for an unknown pre-tokenizer", () => {
    const json = { ...trained.tokenizerJson, pre_tokenizer: { type: "Nonsense" } };
    assert.throws(
      () => Tokenizer.fromJSON(json),
      (e: unknown) => e instanceof TokenizerError && /Nonsense/.test(e.message) && e.cause instanceof Error,
    );
  });

  it("accepts JSON text", () => {
    const t = Tokenizer.fromJSON(
      JSON.stringify(trained.tokenizerJson),
      JSON.stringify(trained.tokenizerConfig),
    );
    assert.deepEqual(t.encode("Ahab"), tok.encode("Ahab"));
  });
});

describe("loadTokenizer / saveTokenizer", () => {
  it("round-trips through a model directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "lorakit-tok-"));
    try {
      saveTokenizer(dir, trained);
      assert.ok(existsSync(join(dir, "tokenizer.json")) && existsSync(join(dir, "tokenizer_config.json")));
      const loaded = loadTokenizer(dir);
      const s = "Queequeg's harpoon, 1851 🐋";
      assert.deepEqual(loaded.encode(s), tok.encode(s));
      assert.equal(
        loaded.applyChatTemplate([{ role: "user", content: "x" }]),
        tok.applyChatTemplate([{ role: "user", content: "x" }]),
      );
      assert.deepEqual(JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")), trained.tokenizerJson);
      // saving a loaded Tokenizer writes the same files
      const dir2 = join(dir, "again");
      saveTokenizer(dir2, loaded);
      assert.equal(
        readFileSync(join(dir2, "tokenizer_config.json"), "utf8"),
        readFileSync(join(dir, "tokenizer_config.json"), "utf8"),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("works without tokenizer_config.json, and explains a missing tokenizer.json", () => {
    const dir = mkdtempSync(join(tmpdir(), "lorakit-tok-"));
    try {
      assert.throws(
        () => loadTokenizer(dir),
        (e: unknown) => e instanceof TokenizerError && /no tokenizer.json in/.test(e.message),
      );
      writeFileSync(join(dir, "tokenizer.model"), "");
      assert.throws(
        () => loadTokenizer(dir),
        (e: unknown) => e instanceof TokenizerError && /SentencePiece.*save_pretrained/.test(e.message),
      );
      writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(trained.tokenizerJson));
      const t = loadTokenizer(dir);
      assert.equal(t.vocabSize, 512);
      assert.equal(t.eosTokenId, null);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
