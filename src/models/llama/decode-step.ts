// One decode step of one sequence (B = 1, T = 1, a KV cache, no graph) run straight on the
// backend with buffers allocated once per model. The general forward makes ~13 tensors per
// decoder layer for a token (each a Tensor object, a scope entry, shape checks, an array),
// and at decode sizes that bookkeeping costs as much as the small kernels it wraps: on the
// 125M shape about a fifth of a step that streams 400 MB of weights. Here every kernel gets
// the same arguments, in the same order, as in LlamaForCausalLM.hidden + forward, so the
// logits are bit for bit the general path's (test/models/decode-step.test.ts). A LoRA layer
// with one plain adapter (nn/layers.ts BaseAndDelta) has its base product run in the shared
// q/k/v or gate/up call and its adapter added after, as loraLinear does; layers the step does
// not know (NF4, any other Linear subclass) run through their own forward on a tensor view of
// the buffer, as projectShared does.
import type { Backend } from "../../core/backend.js";
import { backend, isGradEnabled } from "../../core/engine.js";
import { ropeTables } from "../../core/ops/index.js";
import { weightProduct, weightProductsShared } from "../../core/ops/weight.js";
import type { Tensor } from "../../core/tensor.js";
import { empty, fromArray } from "../../core/tensor.js";
import type { LinearLike } from "../../nn/layers.js";
import { hasBaseAndDelta, Linear, RMSNorm } from "../../nn/layers.js";
import type { KVCache } from "./kv-cache.js";
import { attendCached } from "./kv-cache.js";
import type { LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP } from "./model.js";

/** The activations of one token, reused by every step. */
interface Buffers {
  /** The residual stream entering a layer, and after its attention block. */
  x: Float32Array;
  h: Float32Array;
  /** A norm's output, its rstd, and a projection's output (C). */
  xn: Float32Array;
  rstd: Float32Array;
  proj: Float32Array;
  /** q, k, v before and after RoPE; attention's output and lse. */
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  qr: Float32Array;
  kr: Float32Array;
  att: Float32Array;
  lse: Float32Array;
  /** gate, up and silu(gate)·up (intermediate size). */
  gate: Float32Array;
  up: Float32Array;
  z: Float32Array;
}

const buffers = new WeakMap<LlamaForCausalLM, Buffers>();

function buffersOf(model: LlamaForCausalLM): Buffers {
  let b = buffers.get(model);
  if (!b) {
    const { hiddenSize: C, numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: D } = model.config;
    const I = Math.max(...model.model.layers.items.map((l) => l.mlp.gate_proj.outFeatures));
    const f = (n: number) => new Float32Array(n);
    b = {
      x: f(C),
      h: f(C),
      xn: f(C),
      rstd: f(1),
      proj: f(C),
      q: f(H * D),
      k: f(Hkv * D),
      v: f(Hkv * D),
      qr: f(H * D),
      kr: f(Hkv * D),
      att: f(H * D),
      lse: f(H),
      gate: f(I),
      up: f(I),
      z: f(I),
    };
    buffers.set(model, b);
  }
  return b;
}

const isPlain = (m: LinearLike): m is Linear => Object.getPrototypeOf(m) === Linear.prototype;
const isNorm = (m: unknown): m is RMSNorm =>
  Object.getPrototypeOf(m) === RMSNorm.prototype && (m as RMSNorm).weight.dtype === "f32";

/**
 * Whether `decodeStep` can run this forward: one token of one sequence with a cache, outside
 * autograd, f32 activations, and decoder layers of the classes this file mirrors.
 */
export function canDecodeStep(
  model: LlamaForCausalLM,
  ids: Tensor,
  cache: KVCache | null,
  layerClasses: { layer: object; attention: object; mlp: object },
): cache is KVCache {
  if (cache === null || isGradEnabled() || cache.B !== 1) return false;
  if (ids.rank !== 2 || ids.shape[0] !== 1 || ids.shape[1] !== 1) return false;
  const m = model.model;
  if (!isNorm(m.norm)) return false;
  return m.layers.items.every(
    (l) =>
      Object.getPrototypeOf(l) === layerClasses.layer &&
      Object.getPrototypeOf(l.self_attn) === layerClasses.attention &&
      Object.getPrototypeOf(l.mlp) === layerClasses.mlp &&
      isNorm(l.input_layernorm) &&
      isNorm(l.post_attention_layernorm),
  );
}

/** y (C) = rmsNorm(x)·w: the kernel call of ops.rmsNorm for one row. */
function norm(be: Backend, n: RMSNorm, x: Float32Array, b: Buffers): Float32Array {
  be.rmsNorm(x, n.weight.data as Float32Array, 1, n.dim, n.eps, b.xn, b.rstd);
  return b.xn;
}

/**
 * outs[i] = layers[i](x) for one row, as `projectShared` computes it: plain Linear layers as
 * `linearShared` runs them (the bias rows first, then one shared product call); LoRA layers
 * (BaseAndDelta) with their base products in that same call and their adapters added after,
 * as loraLinear does; anything else through its own forward, the result copied into outs[i].
 */
function project(x: Float32Array, layers: readonly LinearLike[], outs: readonly Float32Array[]): void {
  const parts = layers.map((m) =>
    isPlain(m) ? { base: m, addDelta: null } : hasBaseAndDelta(m) ? m.baseAndDelta() : null,
  );
  if (parts.some((p) => p === null)) {
    const xt = fromArray(x, [1, 1, x.length], "f32");
    for (const [i, m] of layers.entries()) {
      const y = m.forward(xt);
      outs[i].set(y.data as Float32Array);
      if (y !== xt) y.dispose();
    }
    return;
  }
  const bases = parts.map((p) => p!.base);
  const betas = bases.map((m, i) => {
    if (!m.bias) return 0;
    outs[i].set(m.bias.data as Float32Array);
    return 1;
  });
  if (bases.length === 1) weightProduct(bases[0].weight, x, outs[0], 1, betas[0]);
  else
    weightProductsShared(
      bases.map((m) => m.weight),
      x,
      outs,
      1,
      betas,
    );
  for (const [i, p] of parts.entries()) p!.addDelta?.(x, outs[i]);
}

/** x = x + y for one row of C: ops.add's kernel call, into `out`. */
function addRow(be: Backend, x: Float32Array, y: Float32Array, out: Float32Array): void {
  const s = [1, 1, x.length];
  be.binary("add", x, s, y, s, out, s);
}

function attentionBlock(
  be: Backend,
  a: LlamaAttention,
  cache: KVCache,
  cos: Float32Array,
  sin: Float32Array,
  b: Buffers,
): Float32Array {
  const { H, Hkv, D } = a;
  const q = b.q.subarray(0, H * D);
  const k = b.k.subarray(0, Hkv * D);
  const v = b.v.subarray(0, Hkv * D);
  project(b.xn, [a.q_proj, a.k_proj, a.v_proj], [q, k, v]);
  const qr = b.qr.subarray(0, H * D);
  const kr = b.kr.subarray(0, Hkv * D);
  be.rope(q, cos, sin, 1, 1, H, D, false, qr);
  be.rope(k, cos, sin, 1, 1, Hkv, D, false, kr);
  const att = b.att.subarray(0, H * D);
  attendCached(cache, a.layerIdx, qr, kr, v, 1, H, att, b.lse.subarray(0, H));
  const o = b.proj.subarray(0, a.o_proj.outFeatures);
  project(att, [a.o_proj], [o]);
  return o;
}

function mlpBlock(be: Backend, m: LlamaMLP, b: Buffers): Float32Array {
  const I = m.gate_proj.outFeatures;
  const gate = b.gate.subarray(0, I);
  const up = b.up.subarray(0, I);
  project(b.xn, [m.gate_proj, m.up_proj], [gate, up]);
  const z = b.z.subarray(0, I);
  be.siluMul(gate, up, z);
  const o = b.proj.subarray(0, m.down_proj.outFeatures);
  project(z, [m.down_proj], [o]);
  return o;
}

/** One pre-norm decoder layer on b.x: h = x + attn(norm(x)); x = h + mlp(norm(h)). */
function layerStep(
  be: Backend,
  l: LlamaDecoderLayer,
  cache: KVCache,
  cos: Float32Array,
  sin: Float32Array,
  b: Buffers,
): void {
  norm(be, l.input_layernorm, b.x, b);
  addRow(be, b.x, attentionBlock(be, l.self_attn, cache, cos, sin, b), b.h);
  norm(be, l.post_attention_layernorm, b.h, b);
  addRow(be, b.h, mlpBlock(be, l.mlp, b), b.x);
}

/**
 * The logits (1, 1, V) of one new token (ids (1, 1) i32) of one sequence after what `cache`
 * holds; the cache advances by one. The same numbers as `model.forward(ids, { cache })`, which
 * calls it when `canDecodeStep` holds.
 *
 * @example
 * const logits = noGrad(() => model.forward(tensor([[next]], [1, 1], "i32"), { cache }));
 */
export function decodeStep(
  model: LlamaForCausalLM,
  ids: Tensor,
  cache: KVCache,
  invFreq: Float64Array,
): Tensor {
  const be = backend();
  const b = buffersOf(model);
  const m = model.model;
  const e = m.embed_tokens.forward(ids);
  b.x.set(e.data as Float32Array);
  e.dispose();
  const { cos, sin } = ropeTables(invFreq, 1, cache.length, "f32");
  const cd = cos.data as Float32Array;
  const sd = sin.data as Float32Array;
  for (const l of m.layers.items) layerStep(be, l, cache, cd, sd, b);
  cos.dispose();
  sin.dispose();
  cache.advance(1);
  const hn = norm(be, m.norm, b.x, b);
  const head: LinearLike = model.lm_head;
  if (!isPlain(head)) return head.forward(fromArray(hn.slice(), [1, 1, hn.length], "f32"));
  const V = head.outFeatures;
  const logits = empty([1, 1, V], "f32");
  if (head.bias) logits.data.set(head.bias.data as Float32Array);
  weightProduct(head.weight, hn, logits.data, 1, head.bias ? 1 : 0);
  return logits;
}
