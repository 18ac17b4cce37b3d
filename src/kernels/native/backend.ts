// The native backend: every kernel of core/backend.ts runs in the C++ addon for
// Float32Array operands (SIMD + threads, see native/src/ops_*.cc and gemm*.cc) and is
// delegated to the TypeScript reference for Float64Array operands (finite-difference
// gradient checks). The addon checks every buffer length and throws instead of reading
// or writing out of bounds.
import type {
  AdamWParams,
  AttentionParams,
  Backend,
  BinaryOp,
  FloatArray,
  GemmParams,
  ReduceOp,
  UnaryOp,
} from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import { nativeGemm } from "./gemm.js";
import type { NativeAddon } from "./loader.js";
import type { OpsAddon } from "./ops.js";

function isF32(a: FloatArray | null | undefined): a is Float32Array {
  return a instanceof Float32Array;
}

/** True when every non-null array is a Float32Array. */
function allF32(...arrays: (FloatArray | null)[]): boolean {
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
  const ops = addon as NativeAddon & OpsAddon;
  const unaryCode = codeTable(ops.unaryOpNames);
  const binaryCode = codeTable(ops.binaryOpNames);
  const ref = refBackend;
  // Reused shape scratch for binary (one typed array per call instead of three JS arrays).
  let shapeBuf = new Int32Array(3 * 8);

  const backend: Backend = {
    name: "native",

    gemm(p: GemmParams): void {
      if (isF32(p.a) && isF32(p.c) && (isF32(p.b as FloatArray) || p.b instanceof Uint16Array))
        nativeGemm(addon, p);
      else ref.gemm(p);
    },

    unary(op: UnaryOp, x: FloatArray, out: FloatArray, param: number): void {
      const code = unaryCode.get(op);
      if (code === undefined || !isF32(x) || !isF32(out)) {
        ref.unary(op, x, out, param);
        return;
      }
      ops.unary(code, x, out, param);
    },

    unaryBackward(op, x, y, dy, dx, param, accumulate): void {
      const code = unaryCode.get(op);
      if (code === undefined || !allF32(x, y, dy, dx)) {
        ref.unaryBackward(op, x, y, dy, dx, param, accumulate);
        return;
      }
      ops.unaryBackward(
        code,
        x as Float32Array,
        y as Float32Array,
        dy as Float32Array,
        dx as Float32Array,
        param,
        accumulate,
      );
    },

    binary(op: BinaryOp, a, aShape, b, bShape, out, outShape): void {
      const code = binaryCode.get(op);
      const rank = outShape.length;
      if (code === undefined || !allF32(a, b, out) || aShape.length !== rank || bShape.length !== rank) {
        ref.binary(op, a, aShape, b, bShape, out, outShape);
        return;
      }
      if (shapeBuf.length < 3 * rank) shapeBuf = new Int32Array(3 * rank);
      for (let i = 0; i < rank; i++) {
        shapeBuf[i] = aShape[i];
        shapeBuf[rank + i] = bShape[i];
        shapeBuf[2 * rank + i] = outShape[i];
      }
      ops.binary(code, a as Float32Array, b as Float32Array, out as Float32Array, shapeBuf, rank);
    },

    reduce(op: ReduceOp, x, shape, axes, out): void {
      if (!allF32(x, out)) {
        ref.reduce(op, x, shape, axes, out);
        return;
      }
      ops.reduce(op === "sum" ? 0 : 1, x as Float32Array, shape, axes, out as Float32Array);
    },

    broadcastTo(x, xShape, out, outShape): void {
      if (!allF32(x, out)) {
        ref.broadcastTo(x, xShape, out, outShape);
        return;
      }
      ops.broadcastTo(x as Float32Array, xShape, out as Float32Array, outShape);
    },

    permute(x, shape, perm, out): void {
      if (!allF32(x, out)) {
        ref.permute(x, shape, perm, out);
        return;
      }
      ops.permute(x as Float32Array, shape, perm, out as Float32Array);
    },

    copyAxis(x, outer, srcAxis, inner, srcStart, out, dstAxis, dstStart, len, accumulate): void {
      if (!allF32(x, out)) {
        ref.copyAxis(x, outer, srcAxis, inner, srcStart, out, dstAxis, dstStart, len, accumulate);
        return;
      }
      ops.copyAxis(
        x as Float32Array,
        outer,
        srcAxis,
        inner,
        srcStart,
        out as Float32Array,
        dstAxis,
        dstStart,
        len,
        accumulate,
      );
    },

    gather(table, idx, C, out): void {
      if (!allF32(table, out)) {
        ref.gather(table, idx, C, out);
        return;
      }
      ops.gather(table as Float32Array, idx, C, out as Float32Array);
    },

    scatterAdd(dOut, idx, C, dTable): void {
      if (!allF32(dOut, dTable)) {
        ref.scatterAdd(dOut, idx, C, dTable);
        return;
      }
      ops.scatterAdd(dOut as Float32Array, idx, C, dTable as Float32Array);
    },

    where(cond, a, b, out): void {
      if (!allF32(a, b, out)) {
        ref.where(cond, a, b, out);
        return;
      }
      ops.where(cond, a as Float32Array, b as Float32Array, out as Float32Array);
    },

    dropout(x, out, p, seed, offset): void {
      if (!allF32(x, out)) {
        ref.dropout(x, out, p, seed, offset);
        return;
      }
      ops.dropout(x as Float32Array, out as Float32Array, p, seed, offset);
    },

    softmax(x, N, C, out): void {
      if (!allF32(x, out)) {
        ref.softmax(x, N, C, out);
        return;
      }
      ops.softmax(x as Float32Array, N, C, out as Float32Array);
    },

    softmaxBackward(y, dy, N, C, dx, accumulate): void {
      if (!allF32(y, dy, dx)) {
        ref.softmaxBackward(y, dy, N, C, dx, accumulate);
        return;
      }
      ops.softmaxBackward(y as Float32Array, dy as Float32Array, N, C, dx as Float32Array, accumulate);
    },

    logSoftmax(x, N, C, out): void {
      if (!allF32(x, out)) {
        ref.logSoftmax(x, N, C, out);
        return;
      }
      ops.logSoftmax(x as Float32Array, N, C, out as Float32Array);
    },

    logSoftmaxBackward(y, dy, N, C, dx, accumulate): void {
      if (!allF32(y, dy, dx)) {
        ref.logSoftmaxBackward(y, dy, N, C, dx, accumulate);
        return;
      }
      ops.logSoftmaxBackward(y as Float32Array, dy as Float32Array, N, C, dx as Float32Array, accumulate);
    },

    crossEntropy(logits, targets, N, V, ignoreIndex, loss, lse): void {
      if (!allF32(logits, loss, lse)) {
        ref.crossEntropy(logits, targets, N, V, ignoreIndex, loss, lse);
        return;
      }
      ops.crossEntropy(
        logits as Float32Array,
        targets,
        N,
        V,
        ignoreIndex,
        loss as Float32Array,
        lse as Float32Array,
      );
    },

    crossEntropyBackward(logits, targets, lse, gradScale, N, V, ignoreIndex, dlogits, accumulate): void {
      if (!allF32(logits, lse, gradScale, dlogits)) {
        ref.crossEntropyBackward(logits, targets, lse, gradScale, N, V, ignoreIndex, dlogits, accumulate);
        return;
      }
      ops.crossEntropyBackward(
        logits as Float32Array,
        targets,
        lse as Float32Array,
        gradScale as Float32Array,
        N,
        V,
        ignoreIndex,
        dlogits as Float32Array,
        accumulate,
      );
    },

    rmsNorm(x, w, N, C, eps, y, rstd): void {
      if (!allF32(x, w, y, rstd)) {
        ref.rmsNorm(x, w, N, C, eps, y, rstd);
        return;
      }
      ops.rmsNorm(x as Float32Array, w as Float32Array, N, C, eps, y as Float32Array, rstd as Float32Array);
    },

    rmsNormBackward(x, w, rstd, dy, N, C, dx, dw, accumulateDx): void {
      if (!allF32(x, w, rstd, dy, dx, dw)) {
        ref.rmsNormBackward(x, w, rstd, dy, N, C, dx, dw, accumulateDx);
        return;
      }
      ops.rmsNormBackward(
        x as Float32Array,
        w as Float32Array,
        rstd as Float32Array,
        dy as Float32Array,
        N,
        C,
        dx as Float32Array | null,
        dw as Float32Array | null,
        accumulateDx,
      );
    },

    rope(x, cos, sin, B, T, H, D, inverse, out): void {
      if (!allF32(x, cos, sin, out)) {
        ref.rope(x, cos, sin, B, T, H, D, inverse, out);
        return;
      }
      ops.rope(
        x as Float32Array,
        cos as Float32Array,
        sin as Float32Array,
        B,
        T,
        H,
        D,
        inverse,
        out as Float32Array,
      );
    },

    attention(p: AttentionParams, out: FloatArray, lse: FloatArray): void {
      if (!allF32(p.q, p.k, p.v, out, lse)) {
        ref.attention(p, out, lse);
        return;
      }
      ops.attention(
        p.q as Float32Array,
        p.k as Float32Array,
        p.v as Float32Array,
        p.B,
        p.T,
        p.S,
        p.H,
        p.Hkv,
        p.D,
        p.kvCapacity,
        p.scale,
        p.offset,
        p.causal,
        out as Float32Array,
        lse as Float32Array,
      );
    },

    attentionBackward(p, out, lse, dout, dq, dk, dv): void {
      if (!allF32(p.q, p.k, p.v, out, lse, dout, dq, dk, dv)) {
        ref.attentionBackward(p, out, lse, dout, dq, dk, dv);
        return;
      }
      ops.attentionBackward(
        p.q as Float32Array,
        p.k as Float32Array,
        p.v as Float32Array,
        p.B,
        p.T,
        p.S,
        p.H,
        p.Hkv,
        p.D,
        p.kvCapacity,
        p.scale,
        p.offset,
        p.causal,
        out as Float32Array,
        lse as Float32Array,
        dout as Float32Array,
        dq as Float32Array | null,
        dk as Float32Array | null,
        dv as Float32Array | null,
      );
    },

    siluMul(gate, up, out): void {
      if (!allF32(gate, up, out)) {
        ref.siluMul(gate, up, out);
        return;
      }
      ops.siluMul(gate as Float32Array, up as Float32Array, out as Float32Array);
    },

    siluMulBackward(gate, up, dy, dgate, dup, accumulate): void {
      if (!allF32(gate, up, dy, dgate, dup)) {
        ref.siluMulBackward(gate, up, dy, dgate, dup, accumulate);
        return;
      }
      ops.siluMulBackward(
        gate as Float32Array,
        up as Float32Array,
        dy as Float32Array,
        dgate as Float32Array | null,
        dup as Float32Array | null,
        accumulate,
      );
    },

    axpy(alpha, x, y): void {
      if (!allF32(x, y)) {
        ref.axpy(alpha, x, y);
        return;
      }
      ops.axpy(alpha, x as Float32Array, y as Float32Array);
    },

    fill(out, value): void {
      if (!isF32(out)) {
        ref.fill(out, value);
        return;
      }
      ops.fill(out, value);
    },

    adamw(p: AdamWParams): void {
      if (!allF32(p.param, p.grad, p.m, p.v)) {
        ref.adamw(p);
        return;
      }
      ops.adamw(
        p.param as Float32Array,
        p.grad as Float32Array,
        p.m as Float32Array,
        p.v as Float32Array,
        p.lr,
        p.beta1,
        p.beta2,
        p.eps,
        p.weightDecay,
        p.step,
      );
    },
  };
  return Object.freeze(backend);
}
