// Peak memory of loading one checkpoint three ways, each in its own process (max RSS):
//   node      loadModel(dir): positioned reads, tensor by tensor
//   chunked   loadModelFromSource(nodeFolderSource(dir)): the browser loader reading ranges in
//             16 MiB chunks (what a page gets from dropped files or a range-serving URL)
//   whole     loadModelFromSource(bytesFolderSource(files)): the file in memory first (what a
//             page gets from a URL whose server sends no Accept-Ranges)
// The checkpoint is a random LLaMA-shaped model written once to a temporary folder.
//
//   npm run build && node dist/bench/load-folder.js [--layers 4] [--hidden 1024] [--vocab 16000]
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Rng } from "../src/core/rng.js";
import { bytesFolderSource } from "../src/io/folder-source.js";
import { nodeFolderSource } from "../src/io/node/folder-source.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { loadModelFromSource } from "../src/models/load-folder.js";
import { loadModel, saveModel } from "../src/models/node/load.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};

async function child(way: string, dir: string): Promise<void> {
  const t0 = performance.now();
  if (way === "node") loadModel(dir);
  else if (way === "chunked") await loadModelFromSource(nodeFolderSource(dir), { tokenizer: false });
  else {
    const files: Record<string, Uint8Array> = {};
    for (const f of readdirSync(dir)) files[f] = new Uint8Array(readFileSync(join(dir, f)));
    await loadModelFromSource(bytesFolderSource(files, "in memory"), { tokenizer: false });
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ way, maxRssMiB: process.resourceUsage().maxRSS / 1024, seconds }));
}

async function main(): Promise<void> {
  if (argv[0] === "--child") return child(argv[1], argv[2]);
  const hidden = opt("hidden", 1024);
  const config = parseLlamaConfig({
    model_type: "llama",
    vocab_size: opt("vocab", 16000),
    hidden_size: hidden,
    intermediate_size: Math.round((hidden * 11) / 4),
    num_hidden_layers: opt("layers", 4),
    num_attention_heads: hidden / 64,
    num_key_value_heads: hidden / 64,
    tie_word_embeddings: false,
  });
  const dir = mkdtempSync(join(tmpdir(), "lorakit-bench-load-"));
  try {
    saveModel(new LlamaForCausalLM(config, { rng: new Rng(1) }), dir);
    const bytes = readdirSync(dir).reduce((a, f) => a + statSync(join(dir, f)).size, 0);
    console.log(`checkpoint: ${(bytes / 2 ** 20).toFixed(0)} MiB f32 (${dir})`);
    const self = fileURLToPath(import.meta.url);
    for (const way of ["node", "chunked", "whole"]) {
      const r = spawnSync(process.execPath, [self, "--child", way, dir], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(r.stderr);
      const { maxRssMiB, seconds } = JSON.parse(r.stdout.trim().split("\n").pop()!);
      console.log(
        `${way.padEnd(8)} max RSS ${maxRssMiB.toFixed(0).padStart(6)} MiB   ${seconds.toFixed(2)} s`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
