// Writes the inputs of the Hugging Face cross-check fixture (test/fixtures/tokenizer/):
// the tokenizer.json lorakit trains for each split pattern, and the texts to encode.
// Then test/tokenizer/hf_fixture.py encodes the texts with HF's Rust `tokenizers` and
// writes the ids it gets. Run both from the repository root:
//   npx tsc -p tsconfig.json && node dist/test/tokenizer/write-hf-fixture.js
//   python test/tokenizer/hf_fixture.py        # needs `pip install tokenizers`

import { mkdirSync, writeFileSync } from "node:fs";
import { mobyDickText } from "../../src/data/corpora.js";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { FIXTURE_TEXTS, FIXTURE_TRAINING } from "./texts.js";

const dir = "test/fixtures/tokenizer";
mkdirSync(dir, { recursive: true });
for (const pattern of ["llama3", "gpt2"] as const) {
  const corpus = mobyDickText().slice(0, FIXTURE_TRAINING.chars);
  const r = trainBpeTokenizer(corpus, { vocabSize: FIXTURE_TRAINING.vocabSize, pattern });
  writeFileSync(`${dir}/${pattern}.tokenizer.json`, `${JSON.stringify(r.tokenizerJson)}\n`);
}
writeFileSync(`${dir}/texts.json`, `${JSON.stringify(FIXTURE_TEXTS())}\n`);
console.log(`wrote ${dir}`);
