// Reading and writing tokenizer files in a model directory (node only).

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TokenizerError } from "./errors.js";
import { Tokenizer } from "./tokenizer.js";

/** Load tokenizer.json (required) and tokenizer_config.json (optional) from a model directory. */
export function loadTokenizer(dir: string): Tokenizer {
  const jsonPath = join(dir, "tokenizer.json");
  const configPath = join(dir, "tokenizer_config.json");
  if (!existsSync(jsonPath)) {
    const hint = existsSync(join(dir, "tokenizer.model"))
      ? " It has tokenizer.model (SentencePiece); convert it once in Python with " +
        "AutoTokenizer.from_pretrained(dir).save_pretrained(dir), which writes tokenizer.json."
      : existsSync(join(dir, "vocab.json"))
        ? " It has vocab.json/merges.txt (slow-tokenizer files); convert them once in Python with " +
          "AutoTokenizer.from_pretrained(dir).save_pretrained(dir), which writes tokenizer.json."
        : "";
    throw new TokenizerError(`loadTokenizer: no tokenizer.json in ${dir}.${hint}`);
  }
  const json = readFileSync(jsonPath, "utf8");
  const config = existsSync(configPath) ? readFileSync(configPath, "utf8") : "{}";
  try {
    return Tokenizer.fromJSON(json, config);
  } catch (e) {
    throw new TokenizerError(`loadTokenizer(${dir}): ${(e as Error).message}`, { cause: e });
  }
}

/** Write tokenizer.json and tokenizer_config.json into dir (created if missing). */
export function saveTokenizer(
  dir: string,
  files: { tokenizerJson: unknown; tokenizerConfig: unknown } | Tokenizer,
): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tokenizer.json"), `${JSON.stringify(files.tokenizerJson, null, 2)}\n`);
  writeFileSync(join(dir, "tokenizer_config.json"), `${JSON.stringify(files.tokenizerConfig, null, 2)}\n`);
}
