// Writing a GGUF file tensor by tensor (node only): the header is laid out from the tensor
// infos alone, then each tensor's bytes are asked for, written and dropped, so memory peaks
// at one tensor whatever the model's size. The file is written beside its final name and
// renamed into place only when complete: a failure leaves no file under that name.
import { writeFileAtomic } from "../../io/node/index.js";
import { writeFully } from "../../io/node/safetensors-file.js";
import { ExportError } from "../errors.js";
import type { GgufKv, GgufTensorInfo } from "../gguf/format.js";
import { encodeGgufHeader, GGUF_ALIGNMENT } from "../gguf/format.js";

const ZEROS = new Uint8Array(GGUF_ALIGNMENT);

/**
 * Writes `path` as a GGUF v3 file with `metadata` and `tensors`; `produce(i)` returns the
 * data of tensors[i] (exactly its ggml byte length), called once per tensor in order.
 * Returns the file's size.
 *
 * @example
 * writeGgufFile("model.gguf", metadata, infos, (i) => encodeGgmlData(read(infos[i].name), infos[i].type));
 */
export function writeGgufFile(
  path: string,
  metadata: readonly GgufKv[],
  tensors: readonly GgufTensorInfo[],
  produce: (index: number, info: GgufTensorInfo) => Uint8Array,
): number {
  const layout = encodeGgufHeader(metadata, tensors);
  writeFileAtomic(path, (fd) => {
    writeFully(fd, layout.head);
    let at = layout.head.length;
    layout.tensors.forEach((t, i) => {
      if (at !== t.offset)
        throw new ExportError(`GGUF: ${t.info.name}: data at ${at}, planned at ${t.offset}`);
      const bytes = produce(i, t.info);
      if (!(bytes instanceof Uint8Array) || bytes.length !== t.bytes)
        throw new ExportError(
          `GGUF: ${t.info.name} (${t.info.type} [${t.info.shape.join(", ")}]) needs ${t.bytes} bytes; got ${bytes instanceof Uint8Array ? bytes.length : typeof bytes}`,
        );
      writeFully(fd, bytes);
      const pad = (GGUF_ALIGNMENT - (bytes.length % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
      if (pad) writeFully(fd, ZEROS.subarray(0, pad));
      at += bytes.length + pad;
    });
    if (at !== layout.fileBytes)
      throw new ExportError(`GGUF: wrote ${at} bytes, planned ${layout.fileBytes}`);
  });
  return layout.fileBytes;
}
