// lorakit's trained tokenizer.json against Hugging Face's Rust `tokenizers` (0.22), through a
// committed fixture: test/tokenizer/write-hf-fixture.ts + hf_fixture.py wrote it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { mobyDickText } from "../../src/data/corpora.js";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { Tokenizer } from "../../src/tokenizer/tokenizer.js";
import { FIXTURE_TEXTS, FIXTURE_TRAINING } from "./texts.js";

// dist/test/tokenizer/ → repository root
const DIR = new URL("../../../test/fixtures/tokenizer/", import.meta.url);
const read = (name: string): unknown => JSON.parse(readFileSync(new URL(name, DIR), "utf8"));

interface HfIds {
  tokenizers_version: string;
  patterns: Record<string, { vocab_size: number; cases: { ids: number[]; ids_with_special: number[] }[] }>;
}

describe("HF tokenizers cross-check (fixture)", () => {
  const texts = read("texts.json") as string[];
  const hf = read("hf-ids.json") as HfIds;

  it("the fixture texts are the ones the test suite defines", () => {
    assert.deepEqual(texts, FIXTURE_TEXTS());
  });

  for (const pattern of ["llama3", "gpt2"] as const) {
    it(`${pattern}: training today reproduces the committed tokenizer.json byte for byte`, () => {
      const r = trainBpeTokenizer(mobyDickText().slice(0, FIXTURE_TRAINING.chars), {
        vocabSize: FIXTURE_TRAINING.vocabSize,
        pattern,
      });
      assert.equal(
        `${JSON.stringify(r.tokenizerJson)}\n`,
        readFileSync(new URL(`${pattern}.tokenizer.json`, DIR), "utf8"),
      );
    });

    it(`${pattern}: our encode gives the ids HF's Rust tokenizers gave, with and without specials`, () => {
      const tok = Tokenizer.fromJSON(read(`${pattern}.tokenizer.json`));
      const expected = hf.patterns[pattern];
      assert.equal(tok.vocabSize, expected.vocab_size);
      texts.forEach((text, i) => {
        const what = `text ${i} ${JSON.stringify(text.slice(0, 60))}`;
        assert.deepEqual(tok.encode(text), expected.cases[i].ids, what);
        assert.deepEqual(
          tok.encode(text, { addSpecialTokens: true }),
          expected.cases[i].ids_with_special,
          what,
        );
        assert.equal(tok.decode(expected.cases[i].ids), text, what);
      });
    });
  }
});
