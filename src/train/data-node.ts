// Reading training data files (node only): the file type comes from the extension.
//   .txt .md .text          plain text → seqLen+1 token windows (textDataset)
//   .jsonl .ndjson .json    JSON records, one per line or a JSON array (recordsDataset)

import { existsSync, readFileSync, statSync } from "node:fs";
import { extname } from "node:path";
import {
  type Dataset,
  type DatasetOptions,
  type Example,
  prepareSplits,
  recordsDataset,
  textDataset,
} from "./data.js";
import { DataError, type DataTokenizer } from "./data-types.js";

export type DataFileType = "text" | "jsonl";

const EXTENSIONS: Record<string, DataFileType> = {
  ".txt": "text",
  ".md": "text",
  ".text": "text",
  ".jsonl": "jsonl",
  ".ndjson": "jsonl",
  ".json": "jsonl",
};

export interface LoadDatasetOptions extends Omit<DatasetOptions, "source"> {
  /** Override the type the extension gives. */
  fileType?: DataFileType;
}

/** The file type for a path, from its extension; a DataError when it is not one we know. */
export function dataFileType(path: string): DataFileType {
  const type = EXTENSIONS[extname(path).toLowerCase()];
  if (type === undefined) {
    throw new DataError(
      `${path}: unknown data file type "${extname(path)}"; use ${Object.keys(EXTENSIONS).join(", ")} ` +
        "(plain text or JSON records), or say which with fileType",
      { source: path },
    );
  }
  return type;
}

/**
 * Read a data file and make its examples.
 *
 * @example
 * const ds = loadDataset("train.jsonl", tok, { seqLen: 512 });
 * console.error(`${ds.stats.examples} examples, ${ds.stats.truncated} truncated`);
 */
export function loadDataset(path: string, tokenizer: DataTokenizer, options: LoadDatasetOptions): Dataset {
  const type = options.fileType ?? dataFileType(path);
  if (!existsSync(path)) throw new DataError(`${path}: no such data file`, { source: path });
  if (statSync(path).isDirectory()) {
    throw new DataError(`${path}: is a directory; give a .txt or .jsonl file`, { source: path });
  }
  const text = readFileSync(path, "utf8");
  const opts = { ...options, source: path };
  return type === "text" ? textDataset(text, tokenizer, opts) : recordsDataset(text, tokenizer, opts);
}

export interface LoadSplitsOptions extends LoadDatasetOptions {
  /** A separate validation file (same formats); otherwise validFraction of the data is held out. */
  validPath?: string;
  /** Default 0. */
  validFraction?: number;
  /** Seed of the split. Default 0. */
  seed?: number;
  /** Pack short examples. Default false. */
  pack?: boolean;
}

/** loadDataset + prepareSplits: the train and valid examples for a run, with the datasets' stats. */
export function loadSplits(
  path: string,
  tokenizer: DataTokenizer,
  options: LoadSplitsOptions,
): { train: Example[]; valid: Example[]; data: Dataset; validData?: Dataset } {
  const data = loadDataset(path, tokenizer, options);
  const validData =
    options.validPath === undefined
      ? undefined
      : loadDataset(options.validPath, tokenizer, { ...options, fileType: undefined });
  const { train, valid } = prepareSplits(data, {
    seqLen: options.seqLen,
    valid: validData,
    validFraction: options.validFraction,
    seed: options.seed,
    pack: options.pack,
  });
  return { train, valid, data, validData };
}
