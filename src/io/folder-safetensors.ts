// A safetensors file of a ModelFolderSource, read in pieces. Where the source can read byte
// ranges (a page's File, a file on disk, a server that serves ranges) only the header is read at open and the tensors come in
// chunks of about `chunkBytes`, so loading holds the model plus one chunk, never the file; where
// it cannot (a server without ranges), the whole file is read once and cut into the same chunks. Either way each
// chunk is a synchronous view whose tensors are copies, so it can be dropped once used.
import type { Tensor } from "../core/tensor.js";
import { SafetensorsError } from "./errors.js";
import type { ModelFolderSource, RangedFolderSource } from "./folder-source.js";
import type { SafetensorsHeader, SafetensorsTensorInfo } from "./safetensors.js";
import { parseSafetensorsHeader, readHeaderLength, SafetensorsHeaderLookup } from "./safetensors.js";
import type { DecodeOptions } from "./safetensors-dtype.js";
import { decodeTensor } from "./safetensors-dtype.js";

function isRanged(s: ModelFolderSource): s is RangedFolderSource {
  const r = s as Partial<RangedFolderSource>;
  return typeof r.size === "function" && typeof r.readRange === "function";
}

/** Some tensors of the file with their bytes in memory: read synchronously. */
export class SafetensorsChunk {
  private readonly set: ReadonlySet<string>;

  constructor(
    private readonly file: FolderSafetensors,
    private readonly list: readonly string[],
    /** File offset of bytes[0]. */
    private readonly start: number,
    private readonly bytes: Uint8Array,
  ) {
    this.set = new Set(list);
  }

  names(): string[] {
    return [...this.list];
  }

  has(name: string): boolean {
    return this.set.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    return this.file.info(name);
  }

  /** A new tensor with a copy of the data, converted if `opts.dtype` asks. */
  tensor(name: string, opts?: DecodeOptions): Tensor {
    const i = this.file.info(name);
    const at = i.fileOffset - this.start;
    if (at < 0 || at + i.byteLength > this.bytes.length)
      throw new SafetensorsError("tensor_not_found", `${this.file.path}: ${name} is not in this chunk`);
    return decodeTensor(name, i.dtype, i.shape, this.bytes.subarray(at, at + i.byteLength), opts);
  }
}

/** An opened safetensors file of a folder source: its header, and its tensors in chunks. */
export class FolderSafetensors extends SafetensorsHeaderLookup {
  private constructor(
    private readonly source: ModelFolderSource,
    private readonly name: string,
    /** The file as errors name it. */
    readonly path: string,
    header: SafetensorsHeader,
    /** The whole file, when the source cannot read ranges. */
    private whole: Uint8Array | null,
  ) {
    super(header, path);
  }

  /** Reads the header (the whole file where the source cannot read ranges); errors name the file. */
  static async open(source: ModelFolderSource, name: string): Promise<FolderSafetensors> {
    const path = source.pathOf(name);
    // As the node reader says of a shard the index names but the folder lacks.
    if (!(await source.has(name))) throw new SafetensorsError("io", `${path}: cannot open`);
    try {
      const size = isRanged(source) ? await source.size(name) : null;
      if (isRanged(source) && size !== null) {
        const n = readHeaderLength(await source.readRange(name, 0, Math.min(8, size)), size);
        const header = parseSafetensorsHeader(await source.readRange(name, 8, Math.min(8 + n, size)), size);
        return new FolderSafetensors(source, name, path, header, null);
      }
      const bytes = await source.readBytes(name);
      const n = readHeaderLength(bytes.subarray(0, 8), bytes.length);
      const header = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.length);
      return new FolderSafetensors(source, name, path, header, bytes);
    } catch (e) {
      if (e instanceof SafetensorsError && !e.message.startsWith(path)) e.message = `${path}: ${e.message}`;
      throw e;
    }
  }

  /**
   * The tensors `names` (default: all) in data order, in chunks of about `chunkBytes` (a tensor
   * larger than that is a chunk of its own). One chunk is read at a time.
   */
  async *chunks(
    names: readonly string[] = this.names(),
    chunkBytes = 16 << 20,
  ): AsyncGenerator<SafetensorsChunk> {
    const infos = names.map((n) => this.info(n)).sort((a, b) => a.fileOffset - b.fileOffset);
    let i = 0;
    while (i < infos.length) {
      const first = infos[i];
      let end = first.fileOffset + first.byteLength;
      let j = i + 1;
      while (j < infos.length && infos[j].fileOffset + infos[j].byteLength - first.fileOffset <= chunkBytes) {
        end = Math.max(end, infos[j].fileOffset + infos[j].byteLength);
        j++;
      }
      const list = infos.slice(i, j).map((x) => x.name);
      const bytes = this.whole
        ? this.whole.subarray(first.fileOffset, end)
        : await (this.source as RangedFolderSource).readRange(this.name, first.fileOffset, end);
      if (bytes.length !== end - first.fileOffset)
        throw new SafetensorsError(
          "io",
          `${this.path}: file ended while reading ${end - first.fileOffset} bytes at ${first.fileOffset} (was it truncated after it was opened?)`,
        );
      yield new SafetensorsChunk(this, list, first.fileOffset, bytes);
      i = j;
    }
  }

  /** Lets the whole-file bytes go (sources without ranges). */
  close(): void {
    this.whole = null;
  }
}
