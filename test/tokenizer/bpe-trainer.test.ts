import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { mobyDickText } from "../../src/data/corpora.js";
import {
  byteLevelEncode,
  bytesToUnicode,
  DEFAULT_SPECIAL_TOKENS,
  referenceBpeEncode,
  type SplitPattern,
  splitPieces,
  trainBpeTokenizer,
} from "../../src/tokenizer/bpe-trainer.js";
import { TokenizerError } from "../../src/tokenizer/errors.js";
import { Tokenizer } from "../../src/tokenizer/tokenizer.js";
import { HARD_TEXTS, randomUnicode } from "./texts.js";

const MOBY = mobyDickText();
const SLICE = MOBY.slice(0, 300_000);

describe("byte-level mapping", () => {
  it("bytesToUnicode is GPT-2's table: 256 distinct chars, printable bytes map to themselves", () => {
    const t = bytesToUnicode();
    assert.equal(new Set(t).size, 256);
    assert.equal(t[0x41], "A");
    assert.equal(t[0x20], "Ġ");
    assert.equal(t[0x0a], "Ċ");
    assert.equal(t[0x00], "Ā");
    assert.equal(byteLevelEncode(" the"), "Ġthe");
    assert.equal(byteLevelEncode("é"), "Ã©");
  });

  it("splitPieces keeps every character (pieces concatenate back to the text)", () => {
    for (const pattern of ["llama3", "gpt2"] as const) {
      for (const s of [...HARD_TEXTS, ...randomUnicode(1, 50, 40)]) {
        assert.equal(splitPieces(s, pattern).join(""), s);
      }
    }
  });

  it("llama3 split groups digits in threes and keeps the space with the word", () => {
    assert.deepEqual(splitPieces("I have 1234567 whales", "llama3"), [
      "I",
      " have",
      " ",
      "123",
      "456",
      "7",
      " whales",
    ]);
    assert.deepEqual(splitPieces("DON'T", "llama3"), ["DON", "'T"]);
  });
});

for (const pattern of ["llama3", "gpt2"] as SplitPattern[]) {
  describe(`trainBpeTokenizer (${pattern})`, () => {
    const vocabSize = 1024;
    const trained = trainBpeTokenizer(SLICE, { vocabSize, pattern });
    const { tokenizerJson: json, tokenizerConfig: config } = trained;

    it("has exactly the requested vocab size, contiguous ids, specials last", () => {
      const nSpecial = DEFAULT_SPECIAL_TOKENS.length;
      const ids = Object.values(json.model.vocab).sort((a, b) => a - b);
      assert.equal(ids.length, vocabSize - nSpecial);
      assert.deepEqual(
        ids,
        ids.map((_, i) => i),
      );
      assert.deepEqual(
        json.added_tokens.map((t) => [t.id, t.content, t.special]),
        DEFAULT_SPECIAL_TOKENS.map((c, i) => [vocabSize - nSpecial + i, c, true]),
      );
      const tok = Tokenizer.fromJSON(json, config);
      assert.equal(tok.vocabSize, vocabSize);
      const hf = new HfTokenizer(json, config);
      assert.equal(hf.get_vocab(true).size, vocabSize);
    });

    it("every merge joins two vocab tokens into a vocab token (what HF's BPE builder checks)", () => {
      assert.equal(json.model.merges.length, trained.stats.merges);
      for (const m of json.model.merges) {
        const parts = m.split(" ");
        assert.equal(parts.length, 2, m);
        const [a, b] = parts;
        assert.ok(a in json.model.vocab && b in json.model.vocab && a + b in json.model.vocab, m);
      }
      // byte ids are the bytes themselves
      const table = bytesToUnicode();
      for (let b = 0; b < 256; b++) assert.equal(json.model.vocab[table[b]], b);
    });

    it("is deterministic: same input gives byte-identical tokenizer.json and config", () => {
      const again = trainBpeTokenizer(SLICE, { vocabSize, pattern });
      assert.equal(JSON.stringify(again.tokenizerJson), JSON.stringify(json));
      assert.equal(JSON.stringify(again.tokenizerConfig), JSON.stringify(config));
      // many documents: also deterministic
      const docs = SLICE.split("\n\n");
      const d1 = trainBpeTokenizer(docs, { vocabSize, pattern });
      const d2 = trainBpeTokenizer(docs, { vocabSize, pattern });
      assert.equal(JSON.stringify(d1.tokenizerJson), JSON.stringify(d2.tokenizerJson));
    });

    it("@huggingface/tokenizers encodes exactly as the reference BPE encoder", () => {
      const hf = new HfTokenizer(json, config);
      const texts = [...HARD_TEXTS, ...randomUnicode(7, 200, 60), MOBY.slice(500_000, 520_000)];
      for (const s of texts) {
        const lib = hf.encode(s, { add_special_tokens: false }).ids;
        const ref = referenceBpeEncode(json, s, pattern);
        assert.deepEqual(lib, ref, `text ${JSON.stringify(s.slice(0, 80))}`);
      }
    });

    it("round-trips decode(encode(x)) === x for arbitrary Unicode", () => {
      const tok = Tokenizer.fromJSON(json, config);
      for (const s of [...HARD_TEXTS, ...randomUnicode(11, 300, 80), MOBY.slice(700_000, 760_000)]) {
        assert.equal(tok.decode(tok.encode(s)), s, `text ${JSON.stringify(s.slice(0, 80))}`);
      }
    });

    it("compresses English: more than 2.5 characters per token on unseen Moby Dick text", () => {
      const tok = Tokenizer.fromJSON(json, config);
      const sample = MOBY.slice(900_000, 1_000_000);
      const ratio = sample.length / tok.encode(sample).length;
      assert.ok(ratio > 2.5, `chars/token ${ratio}`);
    });
  });
}

describe("trainBpeTokenizer errors and speed", () => {
  it("rejects a vocab size too small for bytes + specials, naming the bounds", () => {
    assert.throws(
      () => trainBpeTokenizer("hello", { vocabSize: 100 }),
      (e: unknown) => e instanceof TokenizerError && /vocabSize must be an integer in \[262,/.test(e.message),
    );
  });

  it("says so when the corpus has too few pairs for the vocab size", () => {
    assert.throws(
      () => trainBpeTokenizer("tiny corpus", { vocabSize: 4096 }),
      (e: unknown) => e instanceof TokenizerError && /ran out of pairs/.test(e.message),
    );
  });

  it("cuts special tokens out of the corpus before counting", () => {
    const r = trainBpeTokenizer("<|end_of_text|>abcabc<|end_of_text|>abcabc".repeat(50), { vocabSize: 265 });
    for (const m of r.tokenizerJson.model.merges) assert.ok(!m.includes("|"), m);
  });

  it("trains all of Moby Dick (1.2 MB) to 4096 tokens in seconds", () => {
    const t0 = performance.now();
    const r = trainBpeTokenizer(MOBY, { vocabSize: 4096 });
    const s = (performance.now() - t0) / 1000;
    assert.equal(r.stats.merges, 4096 - 256 - DEFAULT_SPECIAL_TOKENS.length);
    assert.ok(s < 15, `took ${s.toFixed(2)} s`);
  });
});
