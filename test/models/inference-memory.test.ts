// A forward without a graph (generation, serving, evaluation) holds one decoder layer's
// temporaries at a time: each layer's go back to the pool when it returns, so the peak does
// not grow with the depth (before, every layer's lived until the caller's scope ended: a
// 2,048-token prompt through a 7B model's 32 layers would have held ~15 GB of them).
import assert from "node:assert/strict";
import { test } from "node:test";
import { noGrad } from "../../src/core/engine.js";
import { resetPeakTensorBytes, tensorBytes, tidy } from "../../src/core/memory.js";
import { tensor } from "../../src/core/tensor.js";
import { KVCache } from "../../src/models/llama/kv-cache.js";
import { tinyModel } from "../util/tiny-model.js";

const T = 96;
const ids = tensor(
  Array.from({ length: T }, (_, i) => (i * 7) % 48),
  [1, T],
  "i32",
);

/** Peak tensor bytes above what was live before, for one forward in `mode`. */
function peakOf(layers: number, mode: "forward" | "cached" | "step"): number {
  const model = tinyModel(3, { num_hidden_layers: layers, intermediate_size: 160 });
  const before = tensorBytes().live;
  resetPeakTensorBytes();
  tidy(() =>
    noGrad(() => {
      if (mode === "forward") return model.forward(ids);
      const cache = new KVCache(layers, 1, T, 2, 8);
      if (mode === "cached") return model.forward(ids, { cache, lastOnly: true });
      return model.step([Array.from(ids.data as Int32Array)], [cache]);
    }),
  );
  return tensorBytes().peak - before;
}

for (const mode of ["forward", "cached", "step"] as const)
  test(`an inference ${mode} holds one layer's temporaries at a time`, () => {
    const [two, twelve] = [peakOf(2, mode), peakOf(12, mode)];
    // One layer's temporaries of a 96-token prompt (hidden 32, intermediate 160) are
    // ~200 KB; twelve layers' would be six times two's.
    assert.ok(twelve < two * 1.25, `peak with 12 layers ${twelve} B, with 2 layers ${two} B`);
  });
