// llama.cpp as a side-by-side peer of the inference benchmark, through lorakit's own GGUF
// export: the same in-memory model is written as an f32 GGUF and run by node-llama-cpp (a
// devDependency; its CPU prebuilt) with an f32 KV cache. Prefill evaluates the prompt in one
// batch (llama.cpp computes the last position's logits only); decode is greedy, one token per
// evaluation, as `generate` does.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportLoadedModelGguf } from "../src/export/node/export-gguf.js";
import type { LlamaForCausalLM } from "../src/models/llama/model.js";

/**
 * Prefill and decode tokens/s of llama.cpp on `model` (exported to GGUF with the tokenizer of
 * `tokenizerDir`, padded to the model's vocabulary), or null when node-llama-cpp is not
 * installed.
 */
export async function llamaCppPeer(
  model: LlamaForCausalLM,
  tokenizerDir: string,
  prompt: readonly number[],
  newTokens: number,
  threads: number,
): Promise<Record<string, number | string> | null> {
  let lib: typeof import("node-llama-cpp");
  try {
    lib = await import("node-llama-cpp");
  } catch {
    return null;
  }
  const dir = mkdtempSync(join(tmpdir(), "lorakit-bench-gguf-"));
  try {
    const file = join(dir, "model.gguf");
    const r = exportLoadedModelGguf(model, tokenizerDir, file, { dtype: "f32" });
    const llama = await lib.getLlama({ gpu: false, build: "never", logLevel: lib.LlamaLogLevel.error });
    const m = await llama.loadModel({ modelPath: file });
    const ctx = await m.createContext({
      contextSize: prompt.length + newTokens + 16,
      batchSize: prompt.length,
      threads,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
      flashAttention: false,
    });
    type Token = import("node-llama-cpp").Token;
    const toks = prompt as unknown as Token[];
    const seq = ctx.getSequence();
    const t0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(toks);
    const prefill = (performance.now() - t0) / 1000;
    await seq.clearHistory();
    await seq.evaluateWithoutGeneratingNewTokens(toks.slice(0, 8));
    let last = toks[7];
    const t1 = performance.now();
    for (let k = 0; k < newTokens; k++) {
      const out = await seq.controlledEvaluate([[last, { generateNext: { token: true } }]]);
      last = out[0]!.next.token!;
    }
    const decode = (performance.now() - t1) / 1000 / newTokens;
    await ctx.dispose();
    await m.dispose();
    await llama.dispose();
    return {
      engine: "llama.cpp f32 (GGUF)",
      weights_mb: r.bytes / 2 ** 20, // the file: weights plus the tokenizer metadata
      prefill_tokens_per_second: prompt.length / prefill,
      decode_tokens_per_second: 1 / decode,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
