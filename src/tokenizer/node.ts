// Reading and writing tokenizer files in a model directory (node only).

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CHAT_TEMPLATE_FILE, noTokenizerJsonError, tokenizerFromFolderTexts } from "./folder.js";
import type { Tokenizer } from "./tokenizer.js";

/**
 * Load tokenizer.json (required), tokenizer_config.json and chat_template.jinja (optional) from
 * a model directory. The checks are shared with the browser loader (tokenizer/folder.ts).
 */
export function loadTokenizer(dir: string): Tokenizer {
  const has = (name: string) => existsSync(join(dir, name));
  if (!has("tokenizer.json")) throw noTokenizerJsonError(dir, has);
  const read = (name: string) => (has(name) ? readFileSync(join(dir, name), "utf8") : null);
  return tokenizerFromFolderTexts(
    dir,
    readFileSync(join(dir, "tokenizer.json"), "utf8"),
    read("tokenizer_config.json"),
    read(CHAT_TEMPLATE_FILE),
  );
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
