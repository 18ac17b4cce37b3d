// Mean negative log-likelihood of a token stream under a causal LM.
import { noGrad } from "../core/engine.js";
import { ShapeError } from "../core/errors.js";
import { tidy } from "../core/memory.js";
import { tensor } from "../core/tensor.js";
import type { LlamaForCausalLM } from "./llama/model.js";
import { assertFiniteOutput } from "./non-finite.js";

export interface NllResult {
  /** Mean NLL in nats over the predicted tokens. */
  loss: number;
  /** Tokens predicted: every token but the first. */
  tokens: number;
  windows: number;
}

/**
 * Windows of `seqLen` tokens that overlap by one, so every token after the first is
 * predicted exactly once (with the context available inside its window). Windows of equal
 * length run `batchSize` at a time.
 */
export function evaluateNll(
  model: LlamaForCausalLM,
  ids: readonly number[],
  opts: { seqLen: number; batchSize?: number },
): NllResult {
  const L = opts.seqLen;
  if (L < 2) throw new ShapeError(`evaluateNll: seqLen must be ≥ 2, got ${L}`);
  if (ids.length < 2) throw new ShapeError("evaluateNll: needs at least 2 tokens");
  const windows: number[][] = [];
  for (let start = 0; start < ids.length - 1; start += L - 1) windows.push(ids.slice(start, start + L));
  const B = opts.batchSize ?? 4;
  let total = 0;
  let count = 0;
  model.withEval(() =>
    noGrad(() => {
      for (let i = 0; i < windows.length; ) {
        const len = windows[i].length;
        const group: number[][] = [];
        while (i < windows.length && group.length < B && windows[i].length === len) group.push(windows[i++]);
        tidy(() => {
          const inputs = tensor(
            group.map((w) => w.slice(0, -1)),
            [group.length, len - 1],
            "i32",
          );
          const targets = tensor(
            group.map((w) => w.slice(1)),
            [group.length * (len - 1)],
            "i32",
          );
          // The fused output layer + loss: no (B·T, V) logits even for a 150k vocabulary.
          const s = model.loss(inputs, targets, { reduction: "sum" }).item();
          total += s;
          count += group.length * (len - 1);
        });
      }
    }),
  );
  assertFiniteOutput(model, "evaluateNll: the loss", total);
  return { loss: total / count, tokens: count, windows: windows.length };
}
