"""Encode the fixture texts with Hugging Face's Rust `tokenizers` (the library Python's
transformers uses) and write the ids, so the TypeScript tests can check that lorakit's
trained tokenizer.json means the same thing there. See write-hf-fixture.ts for the steps."""

import json
import tokenizers
from tokenizers import Tokenizer

DIR = "test/fixtures/tokenizer"
texts = json.load(open(f"{DIR}/texts.json", encoding="utf-8"))
out = {"tokenizers_version": tokenizers.__version__, "patterns": {}}
for pattern in ["llama3", "gpt2"]:
    tok = Tokenizer.from_file(f"{DIR}/{pattern}.tokenizer.json")
    cases = []
    for text in texts:
        plain = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(plain, skip_special_tokens=False) == text, repr(text)
        cases.append({"ids": plain, "ids_with_special": tok.encode(text, add_special_tokens=True).ids})
    out["patterns"][pattern] = {"vocab_size": tok.get_vocab_size(with_added_tokens=True), "cases": cases}
with open(f"{DIR}/hf-ids.json", "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False)
    f.write("\n")
print(f"wrote {DIR}/hf-ids.json with tokenizers {tokenizers.__version__}")
