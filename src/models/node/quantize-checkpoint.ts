// Quantising a checkpoint file to file, one tensor at a time (node only): each decoder linear
// is read, quantised to NF4 and written before the next is read, so memory peaks at about one
// float weight whatever the model's size (a 7B checkpoint in well under 2 GiB). The output is
// the transformers + bitsandbytes layout that `loadModel` reads back (Linear4bit modules).
//
// The size of an NF4 weight's quant_state entry (a JSON string holding the float
// nested_offset) is known only after quantising it, and safetensors puts every offset in the
// header before the data. So each shard's data goes to a hidden temporary file first, in the
// order produced; when the shard is full its header is laid out (planSafetensorsLayout, the
// order every lorakit writer uses) and the final file is assembled from the temporary one.
// Shards are split greedily in checkpoint order as transformers does (a new shard when the next
// tensor would pass the limit), named once their count is known, and renamed into place at the
// end: an interrupted run leaves no file under a real name.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { LorakitError } from "../../core/errors.js";
import { openCheckpoint, pythonJsonDumps, writeFileAtomic } from "../../io/node/index.js";
import { renameIntoPlace, writeFully } from "../../io/node/safetensors-file.js";
import { removeStaleTemps } from "../../io/node/stale-temps.js";
import type { SafetensorsTensorSpec } from "../../io/safetensors.js";
import { planSafetensorsLayout } from "../../io/safetensors.js";
import type { RawTensor } from "../../io/safetensors-dtype.js";
import { encodeTensor } from "../../io/safetensors-dtype.js";
import { isDecoderLinearWeight, nf4StateTensors } from "../../quant/model.js";
import { quantizeNf4Tensor } from "../../quant/nf4.js";
import type { LlamaConfig } from "../llama/config.js";
import { LlamaForCausalLM } from "../llama/model.js";

export interface QuantizeCheckpointOptions {
  /** Largest shard in bytes (default 5e9, transformers' "5GB"). */
  maxShardBytes?: number;
  blocksize?: number;
  doubleQuant?: boolean;
  /** Called after each source tensor is written (progress). */
  onTensor?: (name: string, done: number, total: number) => void;
}

export interface QuantizeCheckpointResult {
  files: string[];
  /** Module paths whose weight was quantised. */
  quantized: string[];
  /** Weights quantised and the bytes their NF4 entries take. */
  quantizedParams: number;
  quantizedBytes: number;
}

const COPY_CHUNK = 64 << 20;

interface Pending {
  spec: SafetensorsTensorSpec;
  /** Where its bytes are in the shard's temporary data file. */
  at: number;
  length: number;
}

/** Collects one shard's data in a temporary file, then assembles the shard. */
class ShardBuilder {
  readonly entries: Pending[] = [];
  size = 0;
  private fd: number;
  readonly dataPath: string;

  constructor(
    readonly dir: string,
    readonly tag: string,
  ) {
    this.dataPath = join(dir, `.${tag}.data.tmp`);
    this.fd = openSync(this.dataPath, "w+");
  }

  add(name: string, raw: RawTensor): void {
    let done = 0;
    while (done < raw.data.length)
      done += writeSync(this.fd, raw.data, done, raw.data.length - done, this.size + done);
    this.entries.push({
      spec: { name, dtype: raw.dtype, shape: raw.shape },
      at: this.size,
      length: raw.data.length,
    });
    this.size += raw.data.length;
  }

  /** Writes the shard (header + data in layout order) to `path` and removes the data file. */
  finish(path: string): void {
    const layout = planSafetensorsLayout(
      this.entries.map((e) => e.spec),
      { format: "pt" },
    );
    const byName = new Map(this.entries.map((e) => [e.spec.name, e]));
    const out = openSync(path, "w");
    try {
      writeSync(out, layout.head);
      const buf = new Uint8Array(Math.min(COPY_CHUNK, Math.max(1, this.size)));
      for (const { name } of layout.order) {
        const e = byName.get(name)!;
        for (let off = 0; off < e.length; ) {
          const n = readSync(this.fd, buf, 0, Math.min(buf.length, e.length - off), e.at + off);
          if (n <= 0) throw new LorakitError(`${this.dataPath}: short read while assembling ${path}`);
          let w = 0;
          while (w < n) w += writeSync(out, buf, w, n - w);
          off += n;
        }
      }
      fsyncSync(out);
    } finally {
      closeSync(out);
    }
    this.discard();
  }

  discard(): void {
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
    rmSync(this.dataPath, { force: true });
  }
}

/** Checks every weight the model needs against the headers before anything is written. */
function checkAgainstConfig(config: LlamaConfig, ckpt: ReturnType<typeof openCheckpoint>, dir: string): void {
  const model = new LlamaForCausalLM(config, { meta: true }); // shapes only, no memory
  for (const [path, p] of model.namedParameters()) {
    if (path === "lm_head.weight" && config.tieWordEmbeddings) continue;
    if (!ckpt.has(path)) throw new LorakitError(`${dir}: the checkpoint has no ${path}`);
    const got = ckpt.info(path).shape;
    if (got.length !== p.shape.length || got.some((d, i) => d !== p.shape[i]))
      throw new LorakitError(
        `${dir}: ${path} has shape [${got.join(", ")}] but config.json implies [${p.shape.join(", ")}]`,
      );
  }
}

/**
 * Writes `srcDir`'s weights to `outDir` with every decoder linear in NF4 (bitsandbytes
 * layout) and everything else as stored, streaming tensor by tensor. Writes the shards and,
 * when there are several, model.safetensors.index.json; config.json is the caller's.
 *
 * @example
 * const r = quantizeCheckpoint("./Llama-2-7b", "./Llama-2-7b-nf4", { config });
 */
export function quantizeCheckpoint(
  srcDir: string,
  outDir: string,
  config: LlamaConfig,
  opts: QuantizeCheckpointOptions = {},
): QuantizeCheckpointResult {
  const max = opts.maxShardBytes ?? 5e9;
  if (!(max > 0)) throw new LorakitError(`maxShardBytes must be positive, got ${max}`);
  const ckpt = openCheckpoint(srcDir);
  removeStaleTemps(outDir); // shards of an earlier run that was killed
  const tag = `quantize-${process.pid}-${Date.now()}`;
  const built: string[] = []; // temporary names of finished shards
  const weightMap: [string, number][] = []; // tensor name → shard index
  let shard: ShardBuilder | null = null;
  let total = 0;
  const result: QuantizeCheckpointResult = {
    files: [],
    quantized: [],
    quantizedParams: 0,
    quantizedBytes: 0,
  };
  let pendingNames: string[] = []; // tensors of the shard being filled
  const closeShard = () => {
    if (!shard) return;
    const tmp = join(outDir, `.${tag}-${built.length}.safetensors.tmp`);
    shard.finish(tmp);
    for (const n of pendingNames) weightMap.push([n, built.length]);
    pendingNames = [];
    built.push(tmp);
    shard = null;
  };
  // huggingface_hub's greedy split (planShards), on the sizes as produced: a tensor larger
  // than the limit is a shard of its own at once; otherwise a new shard starts when the next
  // tensor would pass the limit.
  const put = (name: string, raw: RawTensor) => {
    const size = raw.data.length;
    total += size;
    if (size > max) {
      const own = new ShardBuilder(outDir, `${tag}-big-${built.length}`);
      own.add(name, raw);
      const tmp = join(outDir, `.${tag}-${built.length}.safetensors.tmp`);
      own.finish(tmp);
      weightMap.push([name, built.length]);
      built.push(tmp);
      return;
    }
    if (shard && shard.size + size > max) closeShard();
    if (!shard) shard = new ShardBuilder(outDir, `${tag}-${built.length}`);
    shard.add(name, raw);
    pendingNames.push(name);
  };
  try {
    checkAgainstConfig(config, ckpt, srcDir);
    mkdirSync(outDir, { recursive: true });
    const names = ckpt.names();
    names.forEach((name, i) => {
      const info = ckpt.info(name);
      const prefix = name.slice(0, -".weight".length);
      if (isDecoderLinearWeight(name) && info.shape.length === 2) {
        // Read in the file's dtype: the quant state records it (bfloat16) as bitsandbytes does.
        const w = ckpt.tensor(name);
        const f = w.dtype === "f32" ? (w.data as Float32Array) : (w.to("f32").data as Float32Array);
        const dtype = w.dtype === "bf16" ? "bfloat16" : w.dtype === "f16" ? "float16" : "float32";
        const q = quantizeNf4Tensor(f, info.shape, {
          blocksize: opts.blocksize,
          doubleQuant: opts.doubleQuant,
          dtype,
        });
        for (const [k, t] of nf4StateTensors(prefix, q)) {
          const raw = encodeTensor(t);
          put(k, raw);
          result.quantizedBytes += raw.data.length;
        }
        result.quantized.push(prefix);
        result.quantizedParams += f.length;
      } else if (!name.endsWith("rotary_emb.inv_freq")) {
        put(name, { dtype: info.dtype, shape: info.shape, data: ckpt.raw(name) });
      }
      opts.onTensor?.(name, i + 1, names.length);
    });
    closeShard();
    const pad = (k: number) => String(k).padStart(5, "0");
    const finalNames =
      built.length === 1
        ? ["model.safetensors"]
        : built.map((_, k) => `model-${pad(k + 1)}-of-${pad(built.length)}.safetensors`);
    built.forEach((tmp, k) => {
      renameIntoPlace(tmp, join(outDir, finalNames[k]));
    });
    result.files = finalNames.map((n) => join(outDir, n));
    // Shards of an earlier save into the same folder that are not part of this one.
    const keep = new Set(finalNames);
    for (const f of readdirSync(outDir))
      if (/^model(-\d{5}-of-\d{5})?\.safetensors$/.test(f) && !keep.has(f))
        rmSync(join(outDir, f), { force: true });
    const indexPath = join(outDir, "model.safetensors.index.json");
    if (built.length > 1) {
      const index = {
        metadata: { total_size: total },
        weight_map: Object.fromEntries(weightMap.map(([n, k]) => [n, finalNames[k]])),
      };
      const text = new TextEncoder().encode(`${pythonJsonDumps(index)}\n`);
      writeFileAtomic(indexPath, (fd) => writeFully(fd, text));
    } else rmSync(indexPath, { force: true });
    return result;
  } catch (e) {
    (shard as ShardBuilder | null)?.discard();
    for (const tmp of built) rmSync(tmp, { force: true });
    throw e;
  } finally {
    ckpt.close();
  }
}
