// Modules with Hugging Face parameter paths, the basic layers, and state-dict loading.
export type { LinearLike } from "./layers.js";
export { Embedding, isLinearLike, Linear, RMSNorm } from "./layers.js";
export { Module, ModuleDict, ModuleError, ModuleList, ParamHolder } from "./module.js";
export type { LoadReport, LoadStateOptions, TensorSource } from "./state.js";
export { loadStateDict, StateDictError } from "./state.js";
