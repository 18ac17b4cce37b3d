// A bitsandbytes 4-bit module is several tensors (the packed codes, absmax, the quant state,
// the nested absmax and its code, the bias), and ModelAssembly builds the module from the part
// that holds its quant state, so all of them must be in that part. A sharded checkpoint is cut
// tensor by tensor (huggingface_hub's greedy split, and `lorakit quantize`'s), so a module can
// straddle two shards. The folder loader reads one shard at a time: this keeps the tensors of a
// module whose last tensor is in a later shard (copies of those tensors only, never the shard)
// and hands them in with the shard that completes the module.
import type { DType } from "../core/dtype.js";
import type { Tensor } from "../core/tensor.js";
import type { SafetensorsDType } from "../io/safetensors-dtype.js";
import { nf4Paths } from "../quant/model.js";
import type { CheckpointPart } from "./assemble.js";

interface Carried {
  info: { readonly dtype: SafetensorsDType; readonly shape: readonly number[] };
  /** In the file's dtype; converted on request as the chunk would. */
  tensor: Tensor;
}

export class Nf4ShardCarry {
  /** Tensor name → the shard after which its module is complete. */
  private readonly completesAt = new Map<string, string>();
  private readonly carried = new Map<string, Carried>();

  /** `weightMap`: the index's tensor → shard; `order`: the shards in reading order. */
  constructor(weightMap: ReadonlyMap<string, string>, order: readonly string[]) {
    const rank = new Map(order.map((s, i) => [s, i]));
    const names = [...weightMap.keys()];
    for (const path of nf4Paths(names)) {
      const members = names.filter(
        (n) => n === `${path}.weight` || n.startsWith(`${path}.weight.`) || n === `${path}.bias`,
      );
      let last = members[0];
      for (const n of members)
        if ((rank.get(weightMap.get(n)!) ?? 0) > (rank.get(weightMap.get(last)!) ?? 0)) last = n;
      const lastShard = weightMap.get(last)!;
      for (const n of members) if (weightMap.get(n) !== lastShard) this.completesAt.set(n, lastShard);
    }
  }

  /**
   * The part to assemble for `shard`, given a chunk of its tensors: the chunk without the tensors
   * whose module completes in a later shard (kept here), plus the kept tensors of modules this
   * shard completes.
   */
  partFor(shard: string, chunk: CheckpointPart): CheckpointPart {
    const own = chunk.names().filter((n) => {
      const at = this.completesAt.get(n);
      if (at === undefined || at === shard) return true;
      this.carried.set(n, { info: chunk.info(n), tensor: chunk.tensor(n) });
      return false;
    });
    const joining = new Map<string, Carried>();
    for (const [n, c] of this.carried)
      if (this.completesAt.get(n) === shard) {
        joining.set(n, c);
        this.carried.delete(n);
      }
    if (joining.size === 0 && own.length === chunk.names().length) return chunk;
    const ownSet = new Set(own);
    return {
      names: () => [...own, ...joining.keys()],
      has: (n) => ownSet.has(n) || joining.has(n),
      info: (n) => joining.get(n)?.info ?? chunk.info(n),
      tensor: (n, opts?: { dtype?: DType }) => {
        const c = joining.get(n);
        if (!c) return chunk.tensor(n, opts);
        return opts?.dtype && opts.dtype !== c.tensor.dtype ? c.tensor.to(opts.dtype) : c.tensor;
      },
    };
  }
}
