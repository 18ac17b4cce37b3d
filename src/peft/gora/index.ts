export type { GoraAllocateOptions, GoraAllocateStrategy, GoraAllocation, GoraLayerInfo } from "./allocate.js";
export { allocateRanks, roundHalfEven } from "./allocate.js";
export type { GoraOptions, GoraResult } from "./gora.js";
export { goraInit } from "./gora.js";
export type { GoraImportanceType } from "./importance.js";
export { GORA_IMPORTANCE_TYPES, goraImportance } from "./importance.js";
export { goraInitB } from "./init.js";
