// The WebAssembly backend: the kernels compiled from c/*.c (SIMD128, one thread or a pool of
// workers on a shared memory, see pool.ts) for Float32Array operands (WASM_KERNELS below);
// every other kernel, and every Float64Array call (finite-difference gradient checks), is the
// TypeScript reference's. Browser-safe: it takes an instantiated
// module (module.ts) and never touches the file system.
import type { Backend, GemmParams, Nf4Weight } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import { loraGroupedWith } from "../ref/lora-grouped.js";
import { nf4GemmWith } from "../ref/nf4.js";
import { WasmArena } from "./arena.js";
import { wasmAttention, wasmAttentionBackward } from "./attention.js";
import { kernelCalls } from "./calls.js";
import { wasmAxpy, wasmBinary, wasmDropout, wasmUnary } from "./elementwise.js";
import { wasmGemm } from "./gemm.js";
import { wasmBroadcastTo, wasmCopyAxis, wasmPermute, wasmReduce, wasmWhere } from "./layout.js";
import type { WasmExports } from "./module.js";
import { wasmNf4Dequant, wasmNf4Scales } from "./nf4.js";
import {
  wasmCrossEntropy,
  wasmCrossEntropyBackward,
  wasmRmsNorm,
  wasmRmsNormBackward,
  wasmSiluMul,
  wasmSiluMulBackward,
} from "./ops.js";
import { wasmAdamw } from "./optim.js";
import type { WasmThreadPool } from "./pool.js";
import { wasmLogSoftmax, wasmRope, wasmSoftmax, wasmSoftmaxBackward } from "./rows.js";
import { wasmUnaryBackward } from "./unary.js";

/**
 * The kernels this backend runs in WebAssembly; the rest (gather, scatterAdd, fill) are the
 * reference's, whose row copies, adds into a large table and memset cost less than copying
 * their operands in and out would (bench/wasm-ops.ts). loraGrouped and nf4Gemm are the
 * reference's steps with their products on the wasm GEMM (nf4Gemm's panels dequantised by
 * the wasm nf4Dequant). Within the listed kernels some calls still go to the reference, where
 * it was measured faster: the unary backwards that are plain arithmetic (unary.ts), and
 * permute, broadcastTo and copyAxis calls that are long row copies or fills (layout.ts).
 */
export const WASM_KERNELS = [
  "gemm",
  "loraGrouped",
  "nf4Gemm",
  "attention",
  "attentionBackward",
  "siluMul",
  "siluMulBackward",
  "crossEntropy",
  "crossEntropyBackward",
  "rmsNorm",
  "rmsNormBackward",
  "adamw",
  "rope",
  "softmax",
  "softmaxBackward",
  "logSoftmax",
  "logSoftmaxBackward",
  "binary",
  "axpy",
  "dropout",
  "unary",
  "unaryBackward",
  "reduce",
  "broadcastTo",
  "permute",
  "copyAxis",
  "where",
  "nf4Dequant",
  "nf4Scales",
] as const;

/**
 * Wraps an instantiated kernel module as a Backend named "wasm": the single-threaded one
 * (`ex`), or the caller's instance of a thread pool (`pool`, whose calls are split between
 * its threads; the results are bit-identical to one thread's).
 */
export function createWasmBackend(ex: WasmExports): Backend;
export function createWasmBackend(pool: WasmThreadPool): Backend;
export function createWasmBackend(source: WasmExports | WasmThreadPool): Backend {
  const pool = "run" in source ? (source as WasmThreadPool) : null;
  const raw = pool ? pool.ex : (source as WasmExports);
  const arena = pool
    ? new WasmArena(raw.memory, pool.arenaBase, pool.maxBytes)
    : new WasmArena(raw.memory, raw.__heap_base.value as number);
  const ex = kernelCalls(raw, pool);
  const gemm = (p: GemmParams) => wasmGemm(ex, arena, p);
  const nf4Dequant = (w: Nf4Weight, start: number, count: number, out: Float32Array) =>
    wasmNf4Dequant(ex, arena, w, start, count, out);
  const backend: Backend = {
    ...refBackend,
    name: "wasm",
    gemm,
    // The reference's steps (gathers, dequantised panels) with the products on the wasm GEMM.
    loraGrouped: (p) => loraGroupedWith(gemm, p),
    nf4Gemm: (p) => nf4GemmWith(gemm, p, nf4Dequant),
    attention: (p, out, lse) => wasmAttention(ex, arena, p, out, lse),
    attentionBackward: (p, out, lse, dout, dq, dk, dv) =>
      wasmAttentionBackward(ex, arena, p, out, lse, dout, dq, dk, dv),
    siluMul: (gate, up, out) => wasmSiluMul(ex, arena, gate, up, out),
    siluMulBackward: (gate, up, dy, dgate, dup, accumulate) =>
      wasmSiluMulBackward(ex, arena, gate, up, dy, dgate, dup, accumulate),
    crossEntropy: (logits, targets, N, V, ignoreIndex, loss, lse) =>
      wasmCrossEntropy(ex, arena, logits, targets, N, V, ignoreIndex, loss, lse),
    crossEntropyBackward: (logits, targets, lse, gradScale, N, V, ignoreIndex, dlogits, accumulate) =>
      wasmCrossEntropyBackward(
        ex,
        arena,
        logits,
        targets,
        lse,
        gradScale,
        N,
        V,
        ignoreIndex,
        dlogits,
        accumulate,
      ),
    rmsNorm: (x, w, N, C, eps, y, rstd) => wasmRmsNorm(ex, arena, x, w, N, C, eps, y, rstd),
    rmsNormBackward: (x, w, rstd, dy, N, C, dx, dw, accumulateDx) =>
      wasmRmsNormBackward(ex, arena, x, w, rstd, dy, N, C, dx, dw, accumulateDx),
    adamw: (p) => wasmAdamw(ex, arena, p),
    binary: (op, a, aShape, b, bShape, out, outShape) =>
      wasmBinary(ex, arena, op, a, aShape, b, bShape, out, outShape),
    axpy: (alpha, x, y) => wasmAxpy(ex, arena, alpha, x, y),
    dropout: (x, out, p, seed, offset) => wasmDropout(ex, arena, x, out, p, seed, offset),
    unary: (op, x, out, param) => wasmUnary(ex, arena, op, x, out, param),
    unaryBackward: (op, x, y, dy, dx, param, acc) =>
      wasmUnaryBackward(ex, arena, op, x, y, dy, dx, param, acc),
    reduce: (op, x, shape, axes, out) => wasmReduce(ex, arena, op, x, shape, axes, out),
    broadcastTo: (x, xShape, out, outShape) => wasmBroadcastTo(ex, arena, x, xShape, out, outShape),
    permute: (x, shape, perm, out) => wasmPermute(ex, arena, x, shape, perm, out),
    copyAxis: (x, outer, srcAxis, inner, srcStart, out, dstAxis, dstStart, len, acc) =>
      wasmCopyAxis(ex, arena, x, outer, srcAxis, inner, srcStart, out, dstAxis, dstStart, len, acc),
    where: (cond, a, b, out) => wasmWhere(ex, arena, cond, a, b, out),
    nf4Dequant,
    nf4Scales: (q, code, nested, nestedBlocksize, offset, out) =>
      wasmNf4Scales(ex, arena, q, code, nested, nestedBlocksize, offset, out),
    rope: (x, cos, sin, B, T, H, D, inverse, out) =>
      wasmRope(ex, arena, x, cos, sin, B, T, H, D, inverse, out),
    softmax: (x, N, C, out) => wasmSoftmax(ex, arena, x, N, C, out),
    softmaxBackward: (y, dy, N, C, dx, acc) => wasmSoftmaxBackward(ex, arena, false, y, dy, N, C, dx, acc),
    logSoftmax: (x, N, C, out) => wasmLogSoftmax(ex, arena, x, N, C, out),
    logSoftmaxBackward: (y, dy, N, C, dx, acc) => wasmSoftmaxBackward(ex, arena, true, y, dy, N, C, dx, acc),
  };
  return Object.freeze(backend);
}
