// A tiny served world on disk for the serve tests and bench: a base model folder (config,
// safetensors, a BPE tokenizer with a chat template) and an adapter root with PEFT adapters
// whose B matrices are random (so each adapter changes the outputs).
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Rng, randNormal } from "../../src/core/rng.js";
import { parseLlamaConfig } from "../../src/models/llama/config.js";
import { LlamaForCausalLM } from "../../src/models/llama/model.js";
import { saveModel } from "../../src/models/node/load.js";
import type { LoraConfig } from "../../src/peft/config.js";
import { getPeftModel } from "../../src/peft/model.js";
import { savePretrained } from "../../src/peft/node/io.js";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { saveTokenizer } from "../../src/tokenizer/node.js";

export const CORPUS =
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, " +
  "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery " +
  "part of the world. It is a way I have of driving off the spleen and regulating the circulation. ";

export interface ModelSize {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
}

export const TINY: ModelSize = { hidden: 32, intermediate: 48, layers: 2, heads: 4, kvHeads: 2 };

export interface Fixture {
  dir: string;
  modelDir: string;
  adapterRoot: string;
  vocabSize: number;
  /** A fresh copy of the base model (same weights as the saved one). */
  freshModel(): LlamaForCausalLM;
  /** Writes an adapter for this base (or for `model`) into `dir`. */
  writeAdapter(dir: string, seed: number, cfg?: Partial<LoraConfig>, model?: LlamaForCausalLM): void;
  cleanup(): void;
}

function modelConfig(vocab: number, s: ModelSize) {
  return parseLlamaConfig({
    model_type: "llama",
    vocab_size: vocab,
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    bos_token_id: 256,
    eos_token_id: 257,
  });
}

export interface FixtureOptions {
  /** Adapter folders to write under the root: a count (ad-0, ad-1, …) or names. */
  adapters?: number | string[];
  size?: ModelSize;
  seed?: number;
  /** Each adapter's config (default: r=4 q,v for even i; r=8 all-linear for odd i). */
  adapterConfig?: (i: number) => Partial<LoraConfig>;
}

export function buildFixture(opts: FixtureOptions = {}): Fixture {
  const dir = mkdtempSync(join(tmpdir(), "lorakit-serve-"));
  const modelDir = join(dir, "tiny-base");
  const adapterRoot = join(dir, "adapters");
  mkdirSync(adapterRoot, { recursive: true });
  const trained = trainBpeTokenizer(CORPUS.repeat(4), { vocabSize: 300 });
  saveTokenizer(modelDir, trained);
  const vocab = 300;
  const size = opts.size ?? TINY;
  const seed = opts.seed ?? 1;
  const freshModel = () => {
    const m = new LlamaForCausalLM(modelConfig(vocab, size), { rng: new Rng(seed) });
    for (const p of m.parameters()) p.requiresGrad = false;
    return m;
  };
  saveModel(freshModel(), modelDir);
  const writeAdapter = (
    out: string,
    aSeed: number,
    cfg: Partial<LoraConfig> = {},
    model?: LlamaForCausalLM,
  ) => {
    const pm = getPeftModel(
      model ?? freshModel(),
      { r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj"], ...cfg },
      "default",
      {
        seed: aSeed,
      },
    );
    const rng = new Rng(1000 + aSeed);
    for (const [, l] of pm.loraLayers()) {
      const B = l.lora_B.get("default")!.weight;
      (B.data as Float32Array).set(randNormal(rng, B.shape, 0, 0.5).data as Float32Array);
    }
    savePretrained(pm, out);
  };
  const names =
    typeof opts.adapters === "number"
      ? Array.from({ length: opts.adapters }, (_, i) => `ad-${i}`)
      : (opts.adapters ?? ["alpha", "beta"]);
  names.forEach((n, i) => {
    writeAdapter(
      join(adapterRoot, n),
      i + 1,
      opts.adapterConfig?.(i) ?? (i % 2 === 0 ? {} : { r: 8, targetModules: "all-linear" }),
    );
  });
  return {
    dir,
    modelDir,
    adapterRoot,
    vocabSize: vocab,
    freshModel,
    writeAdapter,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
