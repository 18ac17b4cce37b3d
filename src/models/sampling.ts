// Drawing the next token from a row of logits with temperature, top-k and top-p (generate's
// sampling, and the server's). Greedy decoding does not come here (generate.ts greedyToken).
// Nothing sorts the whole vocabulary: the best few hundred ids come out of a heap, and a
// top-p set too wide for that is found by bucketing the logits.
import type { Rng } from "../core/rng.js";
import type { GenerateOptions } from "./generate.js";

/**
 * The `m` best token ids of `logits`, best first: larger logit first, the lower id first among
 * equal ones (the order a full sort by (−logit, id) gives). One pass over the vocabulary with a
 * heap of `m` ids, so a few hundred of 151,936 cost a fraction of sorting them all.
 */
function bestTokens(logits: ArrayLike<number>, m: number): Int32Array {
  const V = logits.length;
  const k = Math.min(m, V);
  // Min-heap on "worse": its root is the worst id kept.
  const heap = new Int32Array(k);
  let size = 0;
  const worse = (a: number, b: number) => logits[a] < logits[b] || (logits[a] === logits[b] && a > b);
  const siftDown = (at: number) => {
    let i = at;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let w = i;
      if (l < size && worse(heap[l], heap[w])) w = l;
      if (r < size && worse(heap[r], heap[w])) w = r;
      if (w === i) return;
      const t = heap[i];
      heap[i] = heap[w];
      heap[w] = t;
      i = w;
    }
  };
  for (let id = 0; id < V; id++) {
    if (size < k) {
      let i = size++;
      heap[i] = id;
      while (i > 0) {
        const up = (i - 1) >> 1;
        if (!worse(heap[i], heap[up])) break;
        const t = heap[i];
        heap[i] = heap[up];
        heap[up] = t;
        i = up;
      }
    } else if (worse(heap[0], id)) {
      heap[0] = id;
      siftDown(0);
    }
  }
  // Pop the worst one at a time into the back: best first.
  const out = new Int32Array(k);
  for (let j = k - 1; j >= 0; j--) {
    out[j] = heap[0];
    heap[0] = heap[--size];
    siftDown(0);
  }
  return out;
}

/** Best-first ids a top-p draw over the whole vocabulary puts in order before it buckets instead. */
const ORDERED_NUCLEUS = 2048;

/**
 * The top-p set of a whole vocabulary too large to put in order (over ORDERED_NUCLEUS ids): the
 * smallest most-likely-first set whose probability (weights w, total z) reaches topP, found by
 * bucketing the logits below the largest, mx: whole buckets from the top, then the boundary
 * bucket's ids in order. Returns a membership mask and the set's probability.
 */
export function wideNucleus(
  logits: ArrayLike<number>,
  w: Float64Array,
  z: number,
  mx: number,
  topP: number,
): { inSet: Uint8Array; mass: number } {
  const V = logits.length;
  let lo = mx; // the smallest finite logit (a −∞ one, a banned token, has weight 0)
  for (let id = 0; id < V; id++) if (logits[id] < lo && logits[id] > -Infinity) lo = logits[id];
  const B = 4096;
  const scale = mx > lo ? B / (mx - lo) : 0;
  const bucket = (id: number) => Math.min(B - 1, Math.floor((mx - logits[id]) * scale)); // 0: the best
  const mass = new Float64Array(B);
  for (let id = 0; id < V; id++) mass[bucket(id)] += w[id] / z;
  let cum = 0;
  let edge = 0;
  while (edge < B - 1 && cum + mass[edge] < topP) cum += mass[edge++];
  const inSet = new Uint8Array(V);
  const boundary: number[] = [];
  for (let id = 0; id < V; id++) {
    const b = bucket(id);
    if (b < edge) inSet[id] = 1;
    else if (b === edge) boundary.push(id);
  }
  boundary.sort((a, b) => logits[b] - logits[a] || a - b);
  for (let j = 0; j < boundary.length && (j === 0 || cum < topP); j++) {
    inSet[boundary[j]] = 1;
    cum += w[boundary[j]] / z;
  }
  let total = 0;
  for (let id = 0; id < V; id++) if (inSet[id]) total += w[id] / z;
  return { inSet, mass: total };
}

/**
 * The walk of a draw: the first candidate (ids[j], or j itself without ids) at which the
 * uniform draw u, less each one's probability w[j]/z/mass in turn, falls below 0;
 * `fallback` when rounding leaves u over.
 */
function walk(
  ids: ArrayLike<number> | null,
  w: Float64Array,
  z: number,
  mass: number,
  u: number,
  fallback: number,
): number {
  let left = u;
  for (let j = 0; j < w.length; j++) {
    left -= w[j] / z / mass;
    if (left < 0) return ids ? ids[j] : j;
  }
  return fallback;
}

/**
 * Picks the next token from one row of logits: greedy at temperature 0; otherwise one uniform
 * draw of `rng` from softmax(logits / temperature), restricted to the `topK` most likely tokens
 * (0 = all) and then to the smallest most-likely-first set whose probability reaches `topP`
 * (1 = all). A top-k draw, and a top-p set of up to 2,048 tokens, are walked most likely first
 * (the top k exactly as a full sort of the vocabulary walked them); a draw over the whole
 * vocabulary, or a wider top-p set, in id order. A full sort took 14 ms per token at 32,000
 * tokens and 67 ms at Qwen's 151,936: more than the decode step it follows.
 */
export function sampleToken(logits: ArrayLike<number>, opts: GenerateOptions, rng: Rng): number {
  const V = logits.length;
  const temperature = opts.temperature ?? 0;
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
  if (temperature <= 0) return best;
  const topK = opts.topK ?? 0;
  const topP = opts.topP ?? 1;
  const mx = logits[best];
  const weight = (id: number) => Math.exp((logits[id] - mx) / temperature);
  // The candidates best first (order, their weights wo) when there are few enough to order,
  // and the total z: of the top k summed best first, or of every token (w, by id) in id order.
  let order: Int32Array;
  let wo: Float64Array;
  let z = 0;
  let w: Float64Array | null = null;
  if (topK > 0 && topK < V) {
    order = bestTokens(logits, topK);
    wo = Float64Array.from(order, weight);
    for (let j = 0; j < wo.length; j++) z += wo[j];
  } else {
    const all = new Float64Array(V);
    w = all;
    for (let id = 0; id < V; id++) z += all[id] = weight(id);
    if (topP >= 1) return walk(null, all, z, 1, rng.uniform(), best);
    order = bestTokens(logits, Math.min(V, ORDERED_NUCLEUS));
    wo = Float64Array.from(order, (id) => all[id]);
  }
  if (topP >= 1) return walk(order, wo, z, 1, rng.uniform(), order[order.length - 1]);
  // The smallest best-first prefix whose probability reaches topP.
  let cum = 0;
  let keep = 0;
  while (keep < order.length && cum < topP) cum += wo[keep++] / z;
  if (cum < topP && w !== null && order.length < V) {
    // Wider than the ordered prefix: the set from buckets, walked in id order.
    const all = w;
    const { inSet, mass } = wideNucleus(logits, all, z, mx, topP);
    const ids = identity(V).filter((id) => inSet[id] === 1);
    return walk(
      ids,
      Float64Array.from(ids, (id) => all[id]),
      z,
      mass,
      rng.uniform(),
      best,
    );
  }
  keep = Math.max(1, keep);
  let mass = 0;
  for (let j = 0; j < keep; j++) mass += wo[j] / z;
  return walk(order, wo.subarray(0, keep), z, mass, rng.uniform(), order[keep - 1]);
}

function identity(n: number): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = i;
  return ids;
}
