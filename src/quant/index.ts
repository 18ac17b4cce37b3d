// QLoRA's quantised base: bitsandbytes NF4 (codebook, blockwise + double quantisation),
// the frozen Linear4bit layer, and the bitsandbytes checkpoint layout.
export * from "./linear4bit.js";
export * from "./memory.js";
export * from "./model.js";
export * from "./nf4.js";
