// A model or adapter folder as the loaders see it, wherever it lives: a few asynchronous reads
// by file name. The browser-safe kinds are here (a URL over fetch, a page's File objects, bytes
// in memory); the file-system kind is in io/node/folder-source.ts. The loaders
// (models/load-folder.ts, peft/adapter-folder.ts, tokenizer/folder.ts) run the same checks over
// any of them as the node loaders run over a folder on disk, and name files with `pathOf` so the
// messages read the same.
import { SafetensorsError } from "./errors.js";

/** A source that can also read part of a file (File.slice, a positioned read, an HTTP range). */
export interface RangedFolderSource extends ModelFolderSource {
  /** The file's size in bytes, or null when this file cannot be read in ranges (then readBytes is used). */
  size(name: string): Promise<number | null>;
  /** Bytes [start, end) of the file (fewer when the file is shorter). */
  readRange(name: string, start: number, end: number): Promise<Uint8Array>;
}

/** One file's transfer so far: `total` is null when the server does not say. */
export interface LoadProgress {
  file: string;
  loaded: number;
  total: number | null;
}

/**
 * A folder of files read by name (config.json, model.safetensors, ...). Names are base names:
 * loaders never ask for a path with a slash.
 */
export interface ModelFolderSource {
  /** How errors name the folder: a path, a URL, or the name of a dropped folder. */
  readonly label: string;
  /** How errors name one file of the folder. */
  pathOf(name: string): string;
  has(name: string): Promise<boolean>;
  readText(name: string): Promise<string>;
  readBytes(name: string): Promise<Uint8Array>;
}

export interface SourceOptions {
  /** Called as file bytes arrive (large files report several times). */
  onProgress?: (p: LoadProgress) => void;
}

export interface UrlSourceOptions extends SourceOptions {
  /** The fetch to use (default globalThis.fetch): add headers, credentials, a cache. */
  fetch?: typeof fetch;
}

function ioError(path: string, what: string, cause?: unknown): SafetensorsError {
  return new SafetensorsError("io", `${path}: ${what}`, cause === undefined ? undefined : { cause });
}

/**
 * A folder served over HTTP(S): `baseUrl` + name. `has` asks with HEAD (falling back to GET where
 * a server refuses HEAD); a Hugging Face repository works as
 * `https://huggingface.co/ORG/NAME/resolve/main/`.
 *
 * @example
 * const src = urlFolderSource("/models/demo-base/");
 * const config = JSON.parse(await src.readText("config.json"));
 */
export function urlFolderSource(baseUrl: string | URL, opts: UrlSourceOptions = {}): RangedFolderSource {
  const doFetch = opts.fetch ?? globalThis.fetch?.bind(globalThis);
  if (typeof doFetch !== "function")
    throw new SafetensorsError("io", "urlFolderSource: no fetch in this environment; pass opts.fetch");
  const baseText = String(baseUrl);
  const base = baseText.endsWith("/") ? baseText : `${baseText}/`;
  // Relative bases ("/models/x/") resolve against the page (or worker) they run in.
  const where = (globalThis as { location?: { href?: string } }).location?.href;
  const urlOf = (name: string) => new URL(name, where ? new URL(base, where) : base).toString();
  /** What HEAD said: present, and the size when the server serves byte ranges of it. */
  const heads = new Map<string, { ok: boolean; rangedSize: number | null }>();
  const status = (res: Response) => `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
  const call = async (url: string, init?: RequestInit): Promise<Response> => {
    try {
      return await doFetch(url, init);
    } catch (e) {
      throw ioError(url, `fetch failed (${(e as Error).message})`, e);
    }
  };
  const get = async (name: string): Promise<Response> => {
    const url = urlOf(name);
    const res = await call(url);
    if (!res.ok) throw ioError(url, status(res));
    return res;
  };
  const head = async (name: string) => {
    const known = heads.get(name);
    if (known) return known;
    const url = urlOf(name);
    let res = await call(url, { method: "HEAD" });
    if (res.status === 405 || res.status === 501) {
      res = await call(url);
      await res.body?.cancel();
    }
    // 404 (and 410) is "no such file"; anything else that is not ok is an error to show.
    if (!res.ok && res.status !== 404 && res.status !== 410) throw ioError(url, status(res));
    const length = Number(res.headers.get("content-length") ?? Number.NaN);
    const ranged =
      res.ok &&
      /\bbytes\b/.test(res.headers.get("accept-ranges") ?? "") &&
      !res.headers.get("content-encoding") &&
      Number.isSafeInteger(length);
    const info = { ok: res.ok, rangedSize: ranged ? length : null };
    heads.set(name, info);
    return info;
  };
  const loaded = new Map<string, number>();
  return {
    label: base,
    pathOf: urlOf,
    has: async (name) => (await head(name)).ok,
    async readText(name) {
      const res = await get(name);
      return res.text();
    },
    async readBytes(name) {
      return readBody(await get(name), name, opts.onProgress);
    },
    size: async (name) => (await head(name)).rangedSize,
    async readRange(name, start, end) {
      const url = urlOf(name);
      if (end <= start) return new Uint8Array(0);
      const res = await call(url, { headers: { Range: `bytes=${start}-${end - 1}` } });
      let bytes: Uint8Array;
      if (res.status === 206) bytes = new Uint8Array(await res.arrayBuffer());
      else if (res.ok)
        bytes = new Uint8Array(await res.arrayBuffer()).slice(start, end); // the range was ignored
      else throw ioError(url, status(res));
      const done = (loaded.get(name) ?? 0) + bytes.length;
      loaded.set(name, done);
      opts.onProgress?.({ file: name, loaded: done, total: heads.get(name)?.rangedSize ?? null });
      return bytes;
    },
  };
}

/**
 * The body of a response, reporting progress, into one array sized by content-length when the
 * server gives it (so a shard is never held twice while it downloads).
 */
async function readBody(
  res: Response,
  name: string,
  onProgress?: (p: LoadProgress) => void,
): Promise<Uint8Array> {
  const lengthHeader = res.headers.get("content-length");
  // A compressed transfer reports the compressed length; only trust it when not encoded.
  const total = lengthHeader !== null && !res.headers.get("content-encoding") ? Number(lengthHeader) : null;
  if (!res.body) return new Uint8Array(await res.arrayBuffer());
  const reader = res.body.getReader();
  let out = total !== null && Number.isSafeInteger(total) ? new Uint8Array(total) : null;
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (out && loaded + value.length <= out.length) out.set(value, loaded);
    else {
      if (out) {
        // The server sent more than it announced: keep what came, collect the rest.
        chunks.push(out.subarray(0, loaded));
        out = null;
      }
      chunks.push(value);
    }
    loaded += value.length;
    onProgress?.({ file: name, loaded, total });
  }
  if (out) return loaded === out.length ? out : out.subarray(0, loaded);
  const all = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

/** What a File gives (the DOM's File and Node 20's global File both do). */
export interface FileLike {
  readonly name: string;
  readonly size: number;
  /** Set on files of a dropped or picked folder: "folder/sub/name". */
  readonly webkitRelativePath?: string;
  arrayBuffer(): Promise<ArrayBuffer>;
  text(): Promise<string>;
  /** Part of the file without reading the rest (the DOM's Blob.slice). */
  slice?(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

/**
 * Files a user picked or dropped (an `<input type=file webkitdirectory>`'s FileList, or the
 * files of a drop). Each file is known by its base name; when a dropped folder holds the same
 * name at several depths (a model beside its checkpoints), the shallowest wins, and two at the
 * same depth are an error naming both.
 *
 * @example
 * input.onchange = async () => { const src = filesFolderSource(input.files!); ... };
 */
export function filesFolderSource(
  files: ArrayLike<FileLike> | Iterable<FileLike>,
  opts: SourceOptions = {},
): RangedFolderSource {
  const list = Array.from(files as Iterable<FileLike>);
  const byName = new Map<string, { file: FileLike; path: string; depth: number; clash: string | null }>();
  for (const file of list) {
    const path = file.webkitRelativePath || file.name;
    const depth = path.split("/").length;
    const prev = byName.get(file.name);
    if (!prev || depth < prev.depth) byName.set(file.name, { file, path, depth, clash: null });
    else if (depth === prev.depth) prev.clash = path;
  }
  const tops = new Set(
    list.map((f) => (f.webkitRelativePath?.includes("/") ? f.webkitRelativePath.split("/")[0] : "")),
  );
  const label = tops.size === 1 && !tops.has("") ? [...tops][0] : "the selected files";
  const readSoFar = new Map<string, number>();
  const entry = (name: string) => {
    const e = byName.get(name);
    if (!e) throw ioError(`${label}/${name}`, "no such file among the selected files");
    if (e.clash)
      throw ioError(
        `${label}/${name}`,
        `two selected files are named ${name} (${e.path} and ${e.clash}); select the model's own folder`,
      );
    return e;
  };
  return {
    label,
    pathOf: (name) => byName.get(name)?.path ?? `${label}/${name}`,
    has: async (name) => byName.has(name),
    readText: async (name) => entry(name).file.text(),
    async readBytes(name) {
      const { file } = entry(name);
      const bytes = new Uint8Array(await file.arrayBuffer());
      opts.onProgress?.({ file: name, loaded: bytes.length, total: file.size });
      return bytes;
    },
    size: async (name) => entry(name).file.size,
    async readRange(name, start, end) {
      const { file } = entry(name);
      const buf = file.slice
        ? await file.slice(start, end).arrayBuffer()
        : (await file.arrayBuffer()).slice(start, end);
      const done = (readSoFar.get(name) ?? 0) + buf.byteLength;
      readSoFar.set(name, done);
      opts.onProgress?.({ file: name, loaded: Math.min(done, file.size), total: file.size });
      return new Uint8Array(buf);
    },
  };
}

/**
 * Files already in memory, by name (text or bytes): what a Worker receives, or a test builds.
 *
 * @example
 * const src = bytesFolderSource({ "config.json": configText, "model.safetensors": bytes }, "my-model");
 */
export function bytesFolderSource(
  files: Readonly<Record<string, Uint8Array | string>>,
  label = "the given files",
): ModelFolderSource {
  const get = (name: string) => {
    if (!Object.hasOwn(files, name)) throw ioError(`${label}/${name}`, "no such file among the given files");
    return files[name];
  };
  return {
    label,
    pathOf: (name) => `${label}/${name}`,
    has: async (name) => Object.hasOwn(files, name),
    async readText(name) {
      const v = get(name);
      return typeof v === "string" ? v : new TextDecoder().decode(v);
    },
    async readBytes(name) {
      const v = get(name);
      return typeof v === "string" ? new TextEncoder().encode(v) : v;
    },
  };
}
