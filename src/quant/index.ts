// QLoRA's quantised base: bitsandbytes NF4 (codebook, blockwise + double quantisation),
// the frozen Linear4bit layer, the bitsandbytes checkpoint layout, and the memory formulas.
export { Linear4bit, nf4ComputePath, REQUANTIZE_WARNING } from "./linear4bit.js";
export type { MemoryEstimate, MemoryOptions, ModelShape, TrainMethod } from "./memory-estimate.js";
export { estimateMemory } from "./memory-estimate.js";
export type { QuantizeModelOptions } from "./model.js";
export { bnbQuantizationConfig, isBnb4bitConfig, linear4bitModules, quantizeModel } from "./model.js";
export type { NestedAbsmax, Nf4Tensor } from "./nf4.js";
export {
  dequantizeNf4Tensor,
  doubleQuantize,
  NF4_CODE,
  nf4Bytes,
  nf4ResidentBytes,
  QuantError,
  quantizeNf4,
  quantizeNf4Tensor,
} from "./nf4.js";
