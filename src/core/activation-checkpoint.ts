// Activation checkpointing (torch.utils.checkpoint): run a block without keeping its
// intermediates, and recompute them when backward reaches the block. Memory of a deep
// model's forward drops from every layer's activations to one tensor per layer boundary,
// for the price of a second forward per block.
//
// Two things the recorded node cannot learn from its inputs, and how they are handled:
// - Trainable parameters the block uses (LoRA A/B, biases, full fine-tuning weights) are
//   leaves outside the node's inputs. The first forward runs under `probeGrad`, which
//   reports whether any op skipped recording for an input that requires grad: exactly
//   when the plain forward would have produced an output that requires grad. The nested
//   backward of the recompute then accumulates into those parameters' `.grad` as usual.
// - Randomness (dropout) must draw the same numbers again. The first forward runs under
//   `captureRngDraws`, which notes every Rng it draws from with the state before its first
//   draw; the recompute starts each from that state and afterwards puts back the state it
//   found, so the run's random stream is the same with and without checkpointing.
import { backward } from "./autograd.js";
import type { FloatArray } from "./backend.js";
import { enableGrad, isGradEnabled, probeGrad } from "./engine.js";
import { DisposedError, fmtShape, LorakitError } from "./errors.js";
import { tidy } from "./memory.js";
import type { RngState } from "./rng.js";
import { captureRngDraws } from "./rng.js";
import type { Tensor } from "./tensor.js";
import { asFloat } from "./tensor.js";

export class ActivationCheckpointError extends LorakitError {}

/**
 * The recompute runs the same kernels on the same data, so it is normally bit-identical;
 * the tolerance only keeps a kernel with another summation order from tripping the check.
 */
function closeTo(got: FloatArray, want: FloatArray): boolean {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < want.length; i++) {
    const w = want[i];
    const a = w < 0 ? -w : w;
    if (a > scale) scale = a;
    const d = got[i] - w;
    if (d > diff) diff = d;
    else if (-d > diff) diff = -d;
  }
  return !(diff > 1e-4 * scale);
}

function sameState(a: RngState, b: RngState): boolean {
  return a.spare === b.spare && a.s.every((w, i) => w === b.s[i]);
}

/**
 * Runs `fn(...inputs)` keeping none of its intermediates; when backward() reaches the
 * result, `fn` runs again with recording on (on detached copies of the inputs) and its
 * graph is backpropagated and freed at once. Gradients, losses and random draws equal
 * those of calling `fn` directly. Under noGrad it is a plain call.
 *
 * `fn` must compute the same thing when it is run again: it may read tensors it closes
 * over (parameters, rotary tables), which must stay alive and unchanged until backward,
 * and it may draw from any Rng (the draws are replayed). The inputs must stay alive until
 * backward too (they are what the node keeps). A recompute whose output or random draws
 * differ from the first run's (weights changed in between, another training mode) throws
 * ActivationCheckpointError instead of producing wrong gradients.
 *
 * @example
 * // one decoder layer per checkpoint: only h survives the forward between layers
 * for (const layer of layers) h = checkpoint((x) => layer.forward(x, ctx), [h]);
 */
export function checkpoint(
  fn: (...xs: Tensor[]) => Tensor,
  inputs: readonly Tensor[],
  opts: {
    /**
     * What backward runs instead of `fn`: the same graph, but it may leave the output's
     * values uncomputed (nothing reads them; only the gradient flows through). The check
     * that the recompute reproduces the first output is then skipped; the random-draw check
     * stays.
     */
    recompute?: (...xs: Tensor[]) => Tensor;
  } = {},
): Tensor {
  if (!isGradEnabled()) return fn(...inputs);
  const first = tidy(() => {
    const { result, reached } = probeGrad(() => captureRngDraws(() => fn(...inputs)));
    return { out: result.result, drawn: result.drawn, reached };
  });
  const { drawn, reached } = first;
  let out = first.out;
  // fn returned a tensor that existed before (an input, a parameter): record on a new view of
  // it, never on the tensor itself.
  const preexisting = out.requiresGrad || out.node !== null;
  if (!reached && !preexisting) return out;
  if (preexisting) out = out.view(out.shape);
  asFloat(out, "checkpoint");
  const rngs = [...drawn.keys()];
  const afterForward = rngs.map((r) => r.getState());
  const saved = [...inputs];
  const result = out;
  result.requiresGrad = true;
  result.node = {
    op: "checkpoint",
    inputs: saved,
    backward: (dy, needs) => {
      for (const [i, x] of saved.entries())
        if (x.isDisposed)
          throw new DisposedError(
            `checkpoint: input ${i} (${x.name ?? `#${x.id}`} ${fmtShape(x.shape)}) was disposed before backward(); a checkpoint recomputes from its inputs, so they must stay alive until backward() (call it inside the tidy scope that made them)`,
          );
      const current = rngs.map((r) => r.getState());
      for (const r of rngs) r.setState(drawn.get(r)!);
      try {
        return tidy(() => {
          // Detached leaves sharing the inputs' storage: the nested backward stops at them.
          const leaves = saved.map((x, i) => {
            const l = x.view(x.shape);
            if (needs[i]) l.requiresGrad = true;
            return l;
          });
          const y = enableGrad(() => (opts.recompute ?? fn)(...leaves));
          for (const [i, r] of rngs.entries())
            if (!sameState(r.getState(), afterForward[i]))
              throw new ActivationCheckpointError(
                "checkpoint: the recomputed forward drew different random numbers than the first one (did the training mode or the function change between forward and backward?)",
              );
          // The node lives on `result`, so it is alive here: a recompute that computes
          // something else (weights changed in between, a mixed-adapter batch, another
          // training mode) would give silently wrong gradients.
          if (
            y.size !== result.size ||
            (!opts.recompute && !closeTo(y.data as FloatArray, result.data as FloatArray))
          )
            throw new ActivationCheckpointError(
              `checkpoint: the recomputed output ${fmtShape(y.shape)} differs from the first forward's ${fmtShape(result.shape)}; the function must compute the same thing in backward() (same weights, modes and options)`,
            );
          // backward() runs under noGrad, so the recompute above had to turn recording on;
          // parameters reached inside fn accumulate into their .grad here.
          if (y.requiresGrad) backward(y, dy);
          return leaves.map((l, i) => (needs[i] ? l.grad : null));
        });
      } catch (e) {
        if (e instanceof DisposedError)
          throw new DisposedError(
            `checkpoint: recomputing the forward in backward() failed: ${e.message}; tensors the function closes over must stay alive until backward()`,
          );
        throw e;
      } finally {
        for (const [i, r] of rngs.entries()) r.setState(current[i]);
      }
    },
  };
  return result;
}
