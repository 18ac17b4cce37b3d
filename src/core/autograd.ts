// Reverse-mode autodiff over the graph that ops record (a tape in topological order).
// A tensor that does not require grad receives none and its gradient is never computed:
// each backward rule is told which inputs need one.

import type { FloatDType } from "./dtype.js";
import { backend, noGrad } from "./engine.js";
import { DisposedError, fmtShape, ShapeError } from "./errors.js";
import { keep } from "./memory.js";
import type { GradNode, Tensor } from "./tensor.js";
import { empty } from "./tensor.js";

/** Records `node` as the producer of `out` when any input requires grad. */
export function record<T extends Tensor>(out: T, node: GradNode): T {
  out.requiresGrad = true;
  out.node = node;
  return out;
}

function checkAlive(t: Tensor): void {
  if (t.isDisposed)
    throw new DisposedError(
      `backward(): tensor ${t.name ?? `#${t.id}`} [${t.shape.join(", ")}] of the graph was disposed (the tidy scope that made it has ended); call backward() inside that tidy scope`,
    );
}

function topoOrder(root: Tensor): Tensor[] {
  checkAlive(root);
  const order: Tensor[] = [];
  const seen = new Set<number>();
  // Iterative DFS: graphs of deep models overflow a recursive one.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root.id);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const c = inputs[i];
      if (c.requiresGrad && !seen.has(c.id)) {
        checkAlive(c);
        seen.add(c.id);
        stack.push([c, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order;
}

function sumNew(a: Tensor<FloatDType>, b: Tensor<FloatDType>): Tensor<FloatDType> {
  const out = empty(a.shape, a.dtype);
  out.data.set(a.data);
  backend().axpy(1, b.data, out.data);
  return out;
}

/**
 * Backpropagates from `root` (a scalar unless `grad` is given). Leaf tensors with
 * requiresGrad accumulate into `.grad` across calls until zeroed.
 *
 * Gradient tensors in flight may share storage (a rule may hand its dy straight to an
 * input), so they are never written in place: sums are out of place, and a leaf's
 * `.grad` is its own copy.
 */
export function backward(root: Tensor, grad?: Tensor<FloatDType>): void {
  if (!root.requiresGrad)
    throw new ShapeError(
      "backward(): the tensor does not require grad (no parameter with requiresGrad reaches it)",
    );
  if (!grad && root.size !== 1)
    throw new ShapeError(`backward(): a non-scalar root ${fmtShape(root.shape)} needs an explicit gradient`);
  if (grad && grad.size !== root.size)
    throw new ShapeError(
      `backward(): gradient ${fmtShape(grad.shape)} does not match the root ${fmtShape(root.shape)}`,
    );
  noGrad(() => {
    const order = topoOrder(root);
    const grads = new Map<number, Tensor<FloatDType>>();
    let seed: Tensor<FloatDType>;
    if (grad) seed = grad.view(root.shape);
    else {
      seed = empty(root.shape, root.dtype as FloatDType);
      seed.data.fill(1);
    }
    grads.set(root.id, seed);
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i];
      const g = grads.get(t.id);
      if (!g) continue;
      grads.delete(t.id);
      const node = t.node;
      if (!node) {
        if (t.grad) backend().axpy(1, g.data, t.grad.data);
        else {
          const own = empty(t.shape, g.dtype);
          own.data.set(g.data);
          t.grad = keep(own);
        }
        g.dispose();
        continue;
      }
      const needs = node.inputs.map((x) => x.requiresGrad);
      const gin = node.backward(g, needs);
      const made = new Set<Tensor>([g]);
      for (let j = 0; j < node.inputs.length; j++) {
        const x = node.inputs[j];
        const gx = gin[j];
        if (!needs[j] || !gx) continue;
        made.add(gx);
        if (gx.size !== x.size)
          throw new ShapeError(
            `backward of ${node.op}: gradient ${fmtShape(gx.shape)} does not match input ${fmtShape(x.shape)} (a bug in that op's rule)`,
          );
        const prev = grads.get(x.id);
        if (prev) {
          grads.set(x.id, sumNew(prev, gx));
          prev.dispose();
        } else grads.set(x.id, gx.view(x.shape));
      }
      for (const m of made) m.dispose();
    }
  });
}

/** Clears `.grad` of the given tensors. */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
