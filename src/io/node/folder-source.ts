// A model folder on disk as a ModelFolderSource (io/folder-source.ts), so the browser-safe
// loaders run over it in Node exactly as over a URL or a page's files (the tests hold the two
// loaders' errors equal this way).
import { existsSync } from "node:fs";
import { open, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { SafetensorsError } from "../errors.js";
import type { RangedFolderSource } from "../folder-source.js";

/**
 * @example
 * const { model, tokenizer } = await loadModelFromSource(nodeFolderSource("./my-model"));
 */
export function nodeFolderSource(dir: string): RangedFolderSource {
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
    size: async (name) => (await stat(join(dir, name))).size,
    async readRange(name, start, end) {
      const p = join(dir, name);
      const out = new Uint8Array(Math.max(0, end - start));
      let fh: Awaited<ReturnType<typeof open>> | null = null;
      try {
        fh = await open(p, "r");
        let done = 0;
        while (done < out.length) {
          const { bytesRead } = await fh.read(out, done, out.length - done, start + done);
          if (bytesRead === 0) break; // the file is shorter: the caller sees fewer bytes
          done += bytesRead;
        }
        return done === out.length ? out : out.subarray(0, done);
      } catch (e) {
        throw new SafetensorsError("io", `${p}: cannot read (${(e as Error).message})`, { cause: e });
      } finally {
        await fh?.close();
      }
    },
  };
}
