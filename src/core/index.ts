// The engine's public surface: tensors, autograd, ops, RNG, memory scopes, backends.

export { ActivationCheckpointError, checkpoint } from "./activation-checkpoint.js";
export { backward, zeroGrad } from "./autograd.js";
export type {
  AdamWParams,
  AttentionParams,
  Backend,
  BinaryOp,
  FloatArray,
  GemmParams,
  PackedGemmParams,
  PackedWeight,
  ReduceOp,
  UnaryOp,
} from "./backend.js";
export { BINARY_OPS, dropoutUniform, UNARY_OPS } from "./backend.js";
export type { AnyArray, DType, FloatDType } from "./dtype.js";
export { bf16ToF32, convertArray, DTYPES, f16ToF32, f32ToBf16, f32ToF16, isFloatDType } from "./dtype.js";
export {
  backend,
  enableGrad,
  isGradEnabled,
  isWeightPackingEnabled,
  noGrad,
  setBackend,
  setWeightPacking,
} from "./engine.js";
export { BackendError, DisposedError, DTypeError, IndexError, LorakitError, ShapeError } from "./errors.js";
export {
  clearPool,
  keep,
  poolStats,
  resetPeakTensorBytes,
  setPoolLimitBytes,
  tensorBytes,
  tidy,
} from "./memory.js";
export * from "./ops/index.js";
export { kaimingUniform, Rng, randNormal, randUniform } from "./rng.js";
export type { GradNode, Shape } from "./tensor.js";
export {
  asFloat,
  empty,
  fromArray,
  full,
  meta,
  numel,
  ones,
  scalar,
  Tensor,
  tensor,
  zeros,
} from "./tensor.js";
