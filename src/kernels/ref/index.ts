// The reference backend: every kernel of core/backend.ts in plain TypeScript, for
// Float32Array and Float64Array alike. It is the oracle every other backend is tested
// against and the fallback that runs anywhere (browser included), so it is written to be
// exactly right first: f64 accumulation, max-subtracted softmaxes, PyTorch's formulas.
import type { Backend } from "../../core/backend.js";
import { attention, attentionBackward } from "./attention.js";
import { binary, unary, unaryBackward } from "./elementwise.js";
import { gemm } from "./gemm.js";
import { broadcastTo, copyAxis, gather, permute, scatterAdd, where } from "./layout.js";
import { loraGrouped } from "./lora-grouped.js";
import { nf4Dequant, nf4Gemm, nf4Scales } from "./nf4.js";
import {
  crossEntropy,
  crossEntropyBackward,
  dropout,
  logSoftmax,
  logSoftmaxBackward,
  rmsNorm,
  rmsNormBackward,
  rope,
  siluMul,
  siluMulBackward,
  softmax,
  softmaxBackward,
} from "./nn.js";
import { adamw, axpy, fill } from "./optim.js";
import { reduce } from "./reduce.js";

export const refBackend: Backend = Object.freeze({
  name: "ref",
  gemm,
  unary,
  unaryBackward,
  binary,
  reduce,
  broadcastTo,
  permute,
  copyAxis,
  gather,
  scatterAdd,
  where,
  dropout,
  softmax,
  softmaxBackward,
  logSoftmax,
  logSoftmaxBackward,
  crossEntropy,
  crossEntropyBackward,
  rmsNorm,
  rmsNormBackward,
  rope,
  attention,
  attentionBackward,
  siluMul,
  siluMulBackward,
  axpy,
  fill,
  adamw,
  loraGrouped,
  nf4Gemm,
  nf4Dequant,
  nf4Scales,
});
