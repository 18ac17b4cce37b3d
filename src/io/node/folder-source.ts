// A model folder on disk as a ModelFolderSource (io/folder-source.ts), so the browser-safe
// loaders run over it in Node exactly as over a URL or a page's files (the tests hold the two
// loaders' errors equal this way).
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { SafetensorsError } from "../errors.js";
import type { ModelFolderSource } from "../folder-source.js";

/**
 * @example
 * const { model, tokenizer } = await loadModelFromSource(nodeFolderSource("./my-model"));
 */
export function nodeFolderSource(dir: string): ModelFolderSource {
  const read = async (name: string) => {
    const p = join(dir, name);
    try {
      return await readFile(p);
    } catch (e) {
      throw new SafetensorsError("io", `${p}: cannot read (${(e as Error).message})`, { cause: e });
    }
  };
  return {
    label: dir,
    pathOf: (name) => join(dir, name),
    has: async (name) => existsSync(join(dir, name)),
    readText: async (name) => (await read(name)).toString("utf8"),
    readBytes: async (name) => {
      const b = await read(name);
      return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    },
  };
}
