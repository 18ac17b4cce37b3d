// Inference benchmark: prefill and decode tokens/s of a LLaMA-shaped model of a few
// hundred MB (random weights, built in memory), native vs reference kernels side by side,
// and native with bf16-stored weights (half the memory).
//
//   npm run build && node dist/bench/inference.js [--prompt 128] [--new 32] [--no-ref] [--no-llama-cpp] [--json]
//
// llama.cpp runs the same weights through lorakit's GGUF export (bench/llama-cpp-peer.ts).
import { cpus } from "node:os";
import { fileURLToPath } from "node:url";
import type { Backend } from "../src/core/backend.js";
import { noGrad, Rng, setBackend, tensor, tidy } from "../src/index.js";
import { refBackend } from "../src/kernels/ref/index.js";
import { availableBackends } from "../src/kernels/select.js";
import { generate } from "../src/models/generate.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { llamaCppPeer } from "./llama-cpp-peer.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const PROMPT = opt("prompt", 128);
const NEW = opt("new", 32);
const cfg = parseLlamaConfig({
  model_type: "llama",
  vocab_size: 32000,
  hidden_size: 768,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_key_value_heads: 4,
  max_position_embeddings: 2048,
});
const model = new LlamaForCausalLM(cfg, { rng: new Rng(0) });
let params = 0;
for (const p of model.parameters()) params += p.size;
const rng = new Rng(1);
const prompt = Array.from({ length: PROMPT }, () => rng.int(cfg.vocabSize));

function measure(be: Backend, label: string): Record<string, number | string> {
  setBackend(be);
  const bytes = model.parameters().reduce((a, p) => a + p.size * (p.dtype === "bf16" ? 2 : 4), 0);
  // Prefill: one forward over the prompt (logits of every position, as eval does).
  const t0 = performance.now();
  noGrad(() => tidy(() => void model.forward(tensor([prompt], [1, PROMPT], "i32"))));
  const prefill = (performance.now() - t0) / 1000;
  // Decode: greedy with the KV cache; the first step is the prompt's prefill, subtract it.
  const t1 = performance.now();
  generate(model, prompt.slice(0, 8), { maxNewTokens: 1 });
  const firstStep = (performance.now() - t1) / 1000;
  const t2 = performance.now();
  generate(model, prompt.slice(0, 8), { maxNewTokens: NEW + 1 });
  const decode = ((performance.now() - t2) / 1000 - firstStep) / NEW;
  return {
    engine: label,
    weights_mb: bytes / 2 ** 20,
    prefill_tokens_per_second: PROMPT / prefill,
    decode_tokens_per_second: 1 / decode,
  };
}

const rows: Record<string, number | string>[] = [];
const native = (await availableBackends()).find((b) => b.name === "native");
if (native) rows.push(measure(native, "native f32"));
if (!argv.includes("--no-ref")) rows.push(measure(refBackend, "ref (TypeScript) f32"));
if (!argv.includes("--no-llama-cpp")) {
  // The demo model's tokenizer, padded to this vocabulary: the prompt is token ids anyway.
  const tokDir = fileURLToPath(new URL("../../models/demo-base", import.meta.url));
  const peer = await llamaCppPeer(model, tokDir, prompt, NEW, cpus().length);
  if (peer) rows.push(peer);
}
if (native) {
  // Frozen linear weights stored as bf16: the GEMM widens them while packing.
  for (const [path, m] of model.namedModules())
    if (path.endsWith("_proj")) {
      const w = m.param("weight")!;
      m.setParam("weight", w.to("bf16"));
    }
  rows.push(measure(native, "native bf16 weights"));
}
if (argv.includes("--json"))
  for (const r of rows) console.log(JSON.stringify({ ...r, params, prompt: PROMPT, new_tokens: NEW }));
else {
  console.log(
    `LLaMA-shaped model: hidden 768, 12 layers, intermediate 2048, vocab 32000, heads 12/4, ${(params / 1e6).toFixed(0)}M parameters; prompt ${PROMPT}, ${NEW} new tokens`,
  );
  console.log("engine                 | weights MB | prefill tok/s | decode tok/s");
  for (const r of rows)
    console.log(
      `${String(r.engine).padEnd(22)} | ${(r.weights_mb as number).toFixed(0).padStart(10)} | ${(r.prefill_tokens_per_second as number).toFixed(1).padStart(13)} | ${(r.decode_tokens_per_second as number).toFixed(1).padStart(12)}`,
    );
}
