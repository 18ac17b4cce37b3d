// One decode step for N sequences that each have their own KV cache (B=1) and position:
// the token rows are stacked as (N, 1, C) so every linear layer — the expensive part — runs
// once for the whole batch, with each row's own adapter (LoraLinear's mixed-batch path: the
// base product once, each adapter's low-rank product only on its rows, grouped by adapter,
// the SGMV idea of Punica / S-LoRA). Attention, the one place where rows differ in length,
// runs per sequence against its own cache. Mirrors LlamaForCausalLM.hidden() step by step
// so a row gets the same numbers it gets decoding alone.
import { backend, noGrad } from "../core/engine.js";
import { ShapeError } from "../core/errors.js";
import { tidy } from "../core/memory.js";
import { add, concat, gemmInto, reshape, rope, ropeTables, siluMul, slice } from "../core/ops/index.js";
import type { Tensor } from "../core/tensor.js";
import { empty, tensor } from "../core/tensor.js";
import { loadAddon } from "../kernels/native/loader.js";
import type { KVCache } from "../models/llama/kv-cache.js";
import { cachedAttention } from "../models/llama/kv-cache.js";
import type { LlamaForCausalLM } from "../models/llama/model.js";
import type { LinearLike } from "../nn/layers.js";
import { BASE_ROW, LoraLinear } from "../peft/lora/layer.js";

export interface DecodeRow {
  /** The row's newest token (input of this step). */
  token: number;
  cache: KVCache;
  /** Internal adapter name in the shared PeftModel, or BASE_ROW. */
  adapter: string;
}

/** cos/sin tables (N, D/2) whose row n is the rotation for position positions[n]. */
export function rowRopeTables(
  invFreq: ArrayLike<number>,
  positions: readonly number[],
): { cos: Tensor; sin: Tensor } {
  const half = invFreq.length;
  const cos = empty([positions.length, half], "f32");
  const sin = empty([positions.length, half], "f32");
  positions.forEach((p, n) => {
    const t = ropeTables(invFreq, 1, p, "f32");
    cos.data.set(t.cos.data as Float32Array, n * half);
    sin.data.set(t.sin.data as Float32Array, n * half);
    t.cos.dispose();
    t.sin.dispose();
  });
  return { cos, sin };
}

/** Runs fn with each LoRA layer's rows assigned to adapters (PeftModel's mixed batch). */
export function withRowAdapters<R>(layers: readonly LoraLinear[], names: readonly string[], fn: () => R): R {
  for (const l of layers) l.rowAdapters = names;
  try {
    return fn();
  } finally {
    for (const l of layers) l.rowAdapters = null;
  }
}

/**
 * Prefill of one sequence: its whole prompt (1, T) through the model with its adapter,
 * appending to its cache; returns the last position's logits (V).
 */
export function prefill(
  model: LlamaForCausalLM,
  layers: readonly LoraLinear[],
  ids: readonly number[],
  cache: KVCache,
  adapter: string,
): Float32Array {
  const out: { logits: Float32Array | null } = { logits: null };
  noGrad(() =>
    tidy(() =>
      withRowAdapters(layers, [adapter], () => {
        const logits = model.forward(tensor([...ids], [1, ids.length], "i32"), { cache, lastOnly: true });
        out.logits = Float32Array.from(logits.data as Float32Array);
      }),
    ),
  );
  return out.logits!;
}

/** Rows of the batch by adapter (base rows left out). */
export type RowGroups = ReadonlyMap<string, readonly number[]>;

function groupRows(names: readonly string[]): RowGroups {
  const g = new Map<string, number[]>();
  names.forEach((n, i) => {
    if (n !== BASE_ROW) g.get(n)?.push(i) ?? g.set(n, [i]);
  });
  return g;
}

/** out (m×n) = alpha·a (m×k)·bᵀ (b is n×k) + beta·out. */
function gemmNT(
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  m: number,
  n: number,
  k: number,
  alpha: number,
  beta: number,
) {
  gemmInto(a, b, out, m, n, k, { transB: true, alpha, beta });
}

/**
 * A linear layer over the rows of x (N, 1, in) where each row may use its own adapter: the
 * base product once for all rows, then per adapter group y[rows] += s·(x[rows]·Aᵀ)·Bᵀ,
 * accumulated in place (a segmented gather-matmul, the SGMV of Punica / S-LoRA, made of
 * two small GEMMs per adapter; a one-row group reads and writes its rows where they lie).
 */
export function groupedLinear(m: LinearLike, x: Tensor, groups: RowGroups): Tensor {
  if (!(m instanceof LoraLinear) || m.disabled || m.merged.length) return m.forward(x);
  const y = m.base_layer.forward(x);
  const inF = m.inFeatures;
  const outF = m.outFeatures;
  const xd = x.data as Float32Array;
  const yd = y.data as Float32Array;
  const grouped = nativeGrouped();
  if (grouped) {
    // One native call for every group (same products, bit for bit, as the loop below).
    const names = [...groups.keys()].filter((n) => m.lora_A.has(n));
    const starts = new Int32Array(names.length + 1);
    const flat: number[] = [];
    names.forEach((n, i) => {
      flat.push(...groups.get(n)!);
      starts[i + 1] = flat.length;
    });
    grouped(
      xd,
      yd,
      inF,
      outF,
      Int32Array.from(flat),
      starts,
      names.map((n) => m.lora_A.get(n)!.weight.data as Float32Array),
      names.map((n) => m.lora_B.get(n)!.weight.data as Float32Array),
      Int32Array.from(names, (n) => m.r.get(n)!),
      Float64Array.from(names, (n) => m.scaling.get(n)!),
    );
    for (const n of names) {
      const bias = m.lora_B.get(n)!.bias?.data as Float32Array | undefined;
      if (!bias) continue;
      const s = m.scaling.get(n)!;
      for (const row of groups.get(n)!) for (let c = 0; c < outF; c++) yd[row * outF + c] += s * bias[c];
    }
    return y;
  }
  for (const [name, rows] of groups) {
    const a = m.lora_A.get(name);
    if (!a) continue;
    const b = m.lora_B.get(name)!;
    const r = m.r.get(name)!;
    const s = m.scaling.get(name)!;
    const A = a.weight.data as Float32Array;
    const B = b.weight.data as Float32Array;
    const n = rows.length;
    const h = new Float32Array(n * r);
    const first = rows[0];
    if (rows.every((row, j) => row === first + j)) {
      // Contiguous rows (one sequence, or all rows on one adapter): read and write in place.
      gemmNT(xd.subarray(first * inF, (first + n) * inF), A, h, n, r, inF, s, 0);
      gemmNT(h, B, yd.subarray(first * outF, (first + n) * outF), n, outF, r, 1, 1);
    } else {
      const xs = new Float32Array(n * inF);
      rows.forEach((row, j) => {
        xs.set(xd.subarray(row * inF, (row + 1) * inF), j * inF);
      });
      gemmNT(xs, A, h, n, r, inF, s, 0);
      const d = new Float32Array(n * outF);
      gemmNT(h, B, d, n, outF, r, 1, 0);
      rows.forEach((row, j) => {
        const o = row * outF;
        const dj = j * outF;
        for (let c = 0; c < outF; c++) yd[o + c] += d[dj + c];
      });
    }
    if (b.bias) {
      const bias = b.bias.data as Float32Array;
      for (const row of rows) for (let c = 0; c < outF; c++) yd[row * outF + c] += s * bias[c];
    }
  }
  return y;
}

/**
 * One decode step for every row: tokens (N) → logits (N, V), each cache advanced by one.
 * `invFreq` is computeRopeInvFreq(model.config).
 */
export function batchedDecode(
  model: LlamaForCausalLM,
  invFreq: ArrayLike<number>,
  rows: readonly DecodeRow[],
): Float32Array {
  const N = rows.length;
  if (N === 0) return new Float32Array(0);
  const cfg = model.config;
  const sw = cfg.layerTypes.includes("sliding_attention") ? cfg.slidingWindow : null;
  for (const r of rows)
    if (sw !== null && r.cache.length + 1 > sw)
      throw new ShapeError(
        `batchedDecode: ${r.cache.length + 1} positions exceed the sliding window of ${sw}`,
      );
  const out: { logits: Float32Array | null } = { logits: null };
  noGrad(() =>
    tidy(() =>
      (() => {
        const groups = groupRows(rows.map((r) => r.adapter));
        const lin = (m: LinearLike, x: Tensor) => groupedLinear(m, x, groups);
        const { cos, sin } = rowRopeTables(
          invFreq,
          rows.map((r) => r.cache.length),
        );
        // (N, 1, C): one token per sequence.
        let h = model.model.embed_tokens.forward(
          tensor(
            rows.map((r) => r.token),
            [N, 1],
            "i32",
          ),
        );
        for (const layer of model.model.layers.items) {
          const a = layer.self_attn;
          const { H, Hkv, D } = a;
          const x = layer.input_layernorm.forward(h);
          // The N rows as the time axis of one sequence: rope rotates row n by its own position.
          const q = reshape(rope(reshape(lin(a.q_proj, x), [1, N, H, D]), cos, sin), [N, 1, H, D]);
          const k = reshape(rope(reshape(lin(a.k_proj, x), [1, N, Hkv, D]), cos, sin), [N, 1, Hkv, D]);
          const v = reshape(lin(a.v_proj, x), [N, 1, Hkv, D]);
          const outs = rows.map((r, n) =>
            N === 1
              ? cachedAttention(r.cache, a.layerIdx, q, k, v)
              : cachedAttention(
                  r.cache,
                  a.layerIdx,
                  slice(q, 0, n, n + 1),
                  slice(k, 0, n, n + 1),
                  slice(v, 0, n, n + 1),
                ),
          );
          const o = N === 1 ? outs[0] : concat(outs, 0);
          h = add(h, lin(a.o_proj, reshape(o, [N, 1, H * D])));
          const mlp = layer.mlp;
          const xm = layer.post_attention_layernorm.forward(h);
          h = add(h, lin(mlp.down_proj, siluMul(lin(mlp.gate_proj, xm), lin(mlp.up_proj, xm))));
        }
        for (const r of rows) r.cache.advance(1);
        const logits = model.lm_head.forward(model.model.norm.forward(h));
        out.logits = Float32Array.from(logits.data as Float32Array);
      })(),
    ),
  );
  return out.logits!;
}

type GroupedFn = (
  x: Float32Array,
  y: Float32Array,
  inF: number,
  outF: number,
  rows: Int32Array,
  starts: Int32Array,
  As: Float32Array[],
  Bs: Float32Array[],
  ranks: Int32Array,
  scales: Float64Array,
) => void;

/** The native grouped LoRA product when the native backend is active and has it. */
function nativeGrouped(): GroupedFn | null {
  if (backend().name !== "native") return null;
  const r = loadAddon();
  if (!("addon" in r)) return null;
  const f = (r.addon as unknown as { loraGroupedNT?: GroupedFn }).loraGroupedNT;
  return typeof f === "function" ? f.bind(r.addon) : null;
}
