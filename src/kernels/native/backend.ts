// The native backend: every kernel of core/backend.ts runs in the C++ addon for
// Float32Array operands (SIMD + threads, see native/src/ops_*.cc, gemm*.cc, nf4_gemm.cc and
// lora_grouped.cc) and is delegated to the TypeScript reference for Float64Array operands
// (finite-difference gradient checks). The addon checks every buffer length and throws
// instead of reading or writing out of bounds.
//
// One rule decides every kernel: native when each float buffer the call names is a
// Float32Array, else the reference (`whenF32`); attention also runs natively on bf16 k, v. Most addon functions take the Backend's own
// arguments in the same order; the rest (op codes, parameter records, shape buffers) get a
// small adapter here.

import type { Backend, FloatArray } from "../../core/backend.js";
import { attentionRowsByCalls } from "../ref/attention-rows.js";
import { refBackend } from "../ref/index.js";
import { nativeGemm } from "./gemm.js";
import type { NativeAddon } from "./loader.js";
import { type LoraGroupedAddon, loraKernels } from "./lora-grouped.js";
import type { Nf4Addon } from "./nf4.js";
import { nf4AddonOf, nf4PackedKernels } from "./nf4.js";
import type { OpsAddon } from "./ops.js";
import { prepackAddonOf, prepackKernels } from "./prepack.js";

type KernelName = Exclude<
  keyof Backend,
  | "name"
  | "attentionRows"
  | "packWeight"
  | "gemmPacked"
  | "gemmPackedShared"
  | "nf4Pack"
  | "nf4GemmPacked"
  | "loraGrouped"
  | "prepareLora"
>;
type Args<K extends KernelName> = Parameters<Backend[K]>;
type Floats<K extends KernelName> = (...args: Args<K>) => readonly (FloatArray | Uint16Array | null)[];

/** Kernels whose addon function takes exactly the Backend's arguments. */
type SameArgKernel =
  | "broadcastTo"
  | "permute"
  | "copyAxis"
  | "gather"
  | "scatterAdd"
  | "where"
  | "dropout"
  | "softmax"
  | "softmaxBackward"
  | "logSoftmax"
  | "logSoftmaxBackward"
  | "crossEntropy"
  | "crossEntropyBackward"
  | "rmsNorm"
  | "rmsNormBackward"
  | "rope"
  | "siluMul"
  | "siluMulBackward"
  | "axpy"
  | "fill";

/** A tuple of n Float32Arrays: float buffers once allF32 has vouched for them. */
type F32<N extends number, Acc extends Float32Array[] = []> = Acc["length"] extends N
  ? Acc
  : F32<N, [...Acc, Float32Array]>;

function allF32(arrays: readonly (FloatArray | Uint16Array | null)[]): boolean {
  for (const a of arrays) if (a !== null && !(a instanceof Float32Array)) return false;
  return true;
}

function codeTable(names: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const [i, n] of names.entries()) m.set(n, i);
  return m;
}

/** Wraps a loaded addon as a Backend named "native". */
export function createNativeBackend(addon: NativeAddon): Backend {
  const ops = addon as NativeAddon & OpsAddon & LoraGroupedAddon;
  const nf4 = nf4AddonOf(addon);
  const ref = refBackend;

  /** Kernel K: `native` when every buffer `floats` names is a Float32Array, else the reference. */
  const whenF32 = <K extends KernelName>(k: K, floats: Floats<K>, native: (...args: Args<K>) => void) =>
    ((...args: Args<K>) => {
      if (allF32(floats(...args))) native(...args);
      else (ref[k] as (...a: Args<K>) => void)(...args);
    }) as Backend[K];

  /** Kernel K passed straight to the addon function of the same name. */
  const same = <K extends SameArgKernel>(k: K, floats: Floats<K>) => {
    const fn = (ops[k] as unknown as (...a: Args<K>) => void).bind(ops);
    return whenF32(k, floats, fn);
  };

  // k, v may also both be bf16 (a KV cache kept in bf16): the addon widens them itself.
  const attention: Backend["attention"] = (p, out, lse) => {
    const { q, k, v } = p;
    const kv =
      (k instanceof Float32Array && v instanceof Float32Array) ||
      (k instanceof Uint16Array && v instanceof Uint16Array);
    if (kv && allF32([q, out, lse]))
      ops.attention(q as Float32Array, k, v, ...attentionSizes(p), out as Float32Array, lse as Float32Array);
    else ref.attention(p, out, lse);
  };

  return Object.freeze({
    name: "native",
    gemm: (p) => {
      if (p.a instanceof Float32Array && p.c instanceof Float32Array && !(p.b instanceof Float64Array))
        nativeGemm(addon, p);
      else ref.gemm(p);
    },
    ...elementwise(ops, ref),
    broadcastTo: same("broadcastTo", (x, _s, out) => [x, out]),
    permute: same("permute", (x, _s, _p, out) => [x, out]),
    copyAxis: same("copyAxis", (x, _o, _sa, _i, _ss, out) => [x, out]),
    gather: same("gather", (t, _i, _c, out) => [t, out]),
    scatterAdd: same("scatterAdd", (d, _i, _c, t) => [d, t]),
    where: same("where", (_c, a, b, out) => [a, b, out]),
    dropout: same("dropout", (x, out) => [x, out]),
    softmax: same("softmax", (x, _n, _c, out) => [x, out]),
    softmaxBackward: same("softmaxBackward", (y, dy, _n, _c, dx) => [y, dy, dx]),
    logSoftmax: same("logSoftmax", (x, _n, _c, out) => [x, out]),
    logSoftmaxBackward: same("logSoftmaxBackward", (y, dy, _n, _c, dx) => [y, dy, dx]),
    crossEntropy: same("crossEntropy", (l, _t, _n, _v, _ig, loss, lse) => [l, loss, lse]),
    crossEntropyBackward: same("crossEntropyBackward", (l, _t, lse, gs, _n, _v, _ig, dl) => [l, lse, gs, dl]),
    rmsNorm: same("rmsNorm", (x, w, _n, _c, _e, y, rstd) => [x, w, y, rstd]),
    rmsNormBackward: same("rmsNormBackward", (x, w, rstd, dy, _n, _c, dx, dw) => [x, w, rstd, dy, dx, dw]),
    rope: same("rope", (x, cos, sin, _b, _t, _h, _d, _inv, out) => [x, cos, sin, out]),
    attention,
    attentionRows: (p, out) => {
      const f32 = p.k.every((k, n) => k instanceof Float32Array && p.v[n] instanceof Float32Array);
      const bf16 = p.k.every((k, n) => k instanceof Uint16Array && p.v[n] instanceof Uint16Array);
      if ((f32 || bf16) && allF32([p.q, out])) {
        const rows = new Int32Array(3 * p.tokens.length);
        for (let n = 0; n < p.tokens.length; n++) {
          rows[3 * n] = p.tokens[n];
          rows[3 * n + 1] = p.offsets[n];
          rows[3 * n + 2] = p.capacities[n];
        }
        ops.attentionRows(
          p.q as Float32Array,
          p.k as readonly (Float32Array | Uint16Array)[],
          p.v as readonly (Float32Array | Uint16Array)[],
          rows,
          p.H,
          p.Hkv,
          p.D,
          p.scale,
          out as Float32Array,
        );
      } else attentionRowsByCalls(attention, p, out);
    },
    attentionBackward: whenF32(
      "attentionBackward",
      (p, out, lse, dout, dq, dk, dv) => [p.q, p.k, p.v, out, lse, dout, dq, dk, dv],
      (p, out, lse, dout, dq, dk, dv) =>
        ops.attentionBackward(
          ...([p.q, p.k, p.v] as F32<3>),
          ...attentionSizes(p),
          ...([out, lse, dout] as F32<3>),
          ...([dq, dk, dv] as [Float32Array | null, Float32Array | null, Float32Array | null]),
        ),
    ),
    siluMul: same("siluMul", (g, u, out) => [g, u, out]),
    siluMulBackward: same("siluMulBackward", (g, u, dy, dg, du) => [g, u, dy, dg, du]),
    axpy: same("axpy", (_a, x, y) => [x, y]),
    fill: same("fill", (out) => [out]),
    adamw: whenF32(
      "adamw",
      (p) => [p.param, p.grad, p.m, p.v],
      (p) =>
        ops.adamw(
          ...([p.param, p.grad, p.m, p.v] as F32<4>),
          p.lr,
          p.beta1,
          p.beta2,
          p.eps,
          p.weightDecay,
          p.step,
        ),
    ),
    ...loraKernels(ops, ref),
    ...nf4Kernels(nf4, ref),
    ...nf4PackedKernels(nf4),
    ...prepackKernels(prepackAddonOf(addon)),
  } satisfies Backend);
}

/** The unary, binary and reduce kernels: the addon takes op codes where the Backend takes names. */
function elementwise(
  ops: OpsAddon,
  ref: Backend,
): Pick<Backend, "unary" | "unaryBackward" | "binary" | "reduce"> {
  const unaryCode = codeTable(ops.unaryOpNames);
  const binaryCode = codeTable(ops.binaryOpNames);
  // Reused shape scratch for binary (one typed array per call instead of three JS arrays).
  let shapeBuf = new Int32Array(3 * 8);
  return {
    unary(op, x, out, param) {
      const code = unaryCode.get(op);
      if (code === undefined || !allF32([x, out])) ref.unary(op, x, out, param);
      else ops.unary(code, x as Float32Array, out as Float32Array, param);
    },
    unaryBackward(op, x, y, dy, dx, param, accumulate) {
      const code = unaryCode.get(op);
      if (code === undefined || !allF32([x, y, dy, dx]))
        ref.unaryBackward(op, x, y, dy, dx, param, accumulate);
      else ops.unaryBackward(code, ...([x, y, dy, dx] as F32<4>), param, accumulate);
    },
    binary(op, a, aShape, b, bShape, out, outShape) {
      const code = binaryCode.get(op);
      const rank = outShape.length;
      if (code === undefined || !allF32([a, b, out]) || aShape.length !== rank || bShape.length !== rank) {
        ref.binary(op, a, aShape, b, bShape, out, outShape);
        return;
      }
      if (shapeBuf.length < 3 * rank) shapeBuf = new Int32Array(3 * rank);
      shapeBuf.set(aShape, 0);
      shapeBuf.set(bShape, rank);
      shapeBuf.set(outShape, 2 * rank);
      ops.binary(code, ...([a, b, out] as F32<3>), shapeBuf, rank);
    },
    reduce(op, x, shape, axes, out) {
      if (!allF32([x, out])) ref.reduce(op, x, shape, axes, out);
      else ops.reduce(op === "sum" ? 0 : 1, x as Float32Array, shape, axes, out as Float32Array);
    },
  };
}

/** B, T, S, H, Hkv, D, kvCapacity, scale, offset, causal: the sizes the addon's attention takes. */
function attentionSizes(
  p: Parameters<Backend["attention"]>[0],
): [number, number, number, number, number, number, number, number, number, boolean] {
  return [p.B, p.T, p.S, p.H, p.Hkv, p.D, p.kvCapacity, p.scale, p.offset, p.causal];
}

/** The NF4 kernels: the addon's when it has them (every addon built from this tree does), else the reference. */
function nf4Kernels(
  nf4: Nf4Addon | null,
  ref: Backend,
): Pick<Backend, "nf4Gemm" | "nf4Dequant" | "nf4Scales"> {
  if (!nf4) return { nf4Gemm: ref.nf4Gemm, nf4Dequant: ref.nf4Dequant, nf4Scales: ref.nf4Scales };
  return {
    nf4Gemm: (p) =>
      nf4.nf4Gemm(
        p.backward,
        p.rows,
        p.w.inFeatures,
        p.w.outFeatures,
        p.a,
        p.w.packed,
        p.w.scales,
        p.w.blocksize,
        p.w.quantMap,
        p.c,
        p.beta,
      ),
    nf4Dequant: (w, start, count, out) =>
      nf4.nf4Dequant(w.packed, w.scales, w.blocksize, w.quantMap, start, count, out),
    nf4Scales: (q, code, nested, nbs, offset, out) => nf4.nf4Scales(q, code, nested, nbs, offset, out),
  };
}
