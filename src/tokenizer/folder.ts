// Reading a model folder's tokenizer, browser-safe: tokenizer.json (required),
// tokenizer_config.json (optional) and chat_template.jinja (optional). The node loader
// (tokenizer/node.ts) and the folder loader (loadTokenizerFromSource) share these checks.
import type { ModelFolderSource } from "../io/folder-source.js";
import { TokenizerError } from "./errors.js";
import { Tokenizer } from "./tokenizer.js";

/** The chat template file newer transformers versions write beside tokenizer_config.json. */
export const CHAT_TEMPLATE_FILE = "chat_template.jinja";

/** tokenizer.json is absent from `label`: say which convertible files are there instead. */
export function noTokenizerJsonError(label: string, has: (name: string) => boolean): TokenizerError {
  const hint = has("tokenizer.model")
    ? " It has tokenizer.model (SentencePiece); convert it once in Python with " +
      "AutoTokenizer.from_pretrained(dir).save_pretrained(dir), which writes tokenizer.json."
    : has("vocab.json")
      ? " It has vocab.json/merges.txt (slow-tokenizer files); convert them once in Python with " +
        "AutoTokenizer.from_pretrained(dir).save_pretrained(dir), which writes tokenizer.json."
      : "";
  return new TokenizerError(`loadTokenizer: no tokenizer.json in ${label}.${hint}`);
}

/**
 * A tokenizer from the texts of a folder's files (null: the file is absent). A
 * chat_template.jinja takes priority over tokenizer_config.json's chat_template, as in
 * transformers' from_pretrained ("If an independent chat template file exists, it takes
 * priority over template entries in the tokenizer config").
 */
export function tokenizerFromFolderTexts(
  label: string,
  tokenizerJson: string,
  tokenizerConfig: string | null,
  chatTemplateFile: string | null,
): Tokenizer {
  try {
    let config: unknown = tokenizerConfig ?? "{}";
    if (chatTemplateFile !== null) {
      const parsed = tryParseObject(tokenizerConfig ?? "{}");
      // A config that is not an object is left for fromJSON to refuse with its own message.
      if (parsed !== null) config = { ...parsed, chat_template: chatTemplateFile };
    }
    return Tokenizer.fromJSON(tokenizerJson, config);
  } catch (e) {
    throw new TokenizerError(`loadTokenizer(${label}): ${(e as Error).message}`, { cause: e });
  }
}

function tryParseObject(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * The tokenizer of a model folder anywhere (URL, dropped files, bytes), with the node
 * loader's checks and errors.
 *
 * @example
 * const tok = await loadTokenizerFromSource(urlFolderSource("/models/demo-base/"));
 */
export async function loadTokenizerFromSource(source: ModelFolderSource): Promise<Tokenizer> {
  if (!(await source.has("tokenizer.json"))) {
    const [model, vocab] = await Promise.all([source.has("tokenizer.model"), source.has("vocab.json")]);
    throw noTokenizerJsonError(source.label, (n) =>
      n === "tokenizer.model" ? model : n === "vocab.json" && vocab,
    );
  }
  const optional = async (name: string) => ((await source.has(name)) ? source.readText(name) : null);
  const [json, config, jinja] = await Promise.all([
    source.readText("tokenizer.json"),
    optional("tokenizer_config.json"),
    optional(CHAT_TEMPLATE_FILE),
  ]);
  return tokenizerFromFolderTexts(source.label, json, config, jinja);
}
