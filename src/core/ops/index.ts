export * from "./elementwise.js";
export * from "./indexing.js";
export * from "./linear-cross-entropy.js";
export * from "./lora-linear.js";
export * from "./matmul.js";
export * from "./nn.js";
export * from "./reduce.js";
export * from "./shape.js";
