// PEFT adapter folders on disk (node only): LoRA (PiSSA conversion included) and AdaLoRA.
export { loadAdaLora, saveAdaLora } from "../adalora/node/io.js";
export type { LoadOptions, SaveOptions } from "./io.js";
export { CONFIG_NAME, fromPretrained, loadAdapter, savePretrained, WEIGHTS_NAME } from "./io.js";
