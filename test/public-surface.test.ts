// The package's public surface: what a CLI user can do is reachable from the library, and
// internals are not exported. Each layer's index.ts lists its exports by name.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as browser from "../src/index.js";
import * as node from "../src/node.js";

/** Library entry points for each CLI command (node entry), by the command they stand behind. */
const CLI_CAPABILITIES: Record<string, readonly string[]> = {
  info: ["describeCheckpoint", "residentWeightBytes", "readModelConfig"],
  eval: ["loadModel", "loadTokenizer", "evaluateNll", "fromPretrained"],
  generate: ["generate", "sampleToken", "KVCache"],
  train: [
    "getPeftModel",
    "Trainer",
    "AdamW",
    "loadSplits",
    "planTraining",
    "estimateTrainingMemory",
    "savePretrained",
  ],
  "train --quantize nf4 (QLoRA)": ["quantizeModel", "Linear4bit", "linear4bitModules"],
  "train --method adalora": [
    "getAdaLoraModel",
    "AdaLoraModel",
    "RankAllocator",
    "saveAdaLora",
    "loadAdaLora",
  ],
  "train --method gora": ["goraInit", "allocateRanks"],
  "train --init pissa / conversion": ["initPissa", "convertPissaToLora"],
  "train --lora-plus-ratio": ["createLoraPlusOptimizer"],
  "train --resume": ["saveCheckpoint", "loadCheckpoint", "latestCheckpoint"],
  merge: ["saveModel"],
  quantize: ["quantizeCheckpoint"],
  memory: ["estimateMemory", "parseByteSize"],
  params: ["countLoraParams", "countBaseParams", "parseLlamaConfig"],
  serve: ["startServer", "DEFAULT_LIMITS"],
  "export-gguf": ["exportModelGguf", "exportAdapterGguf", "exportMergedGguf"],
  "build-demo-base": ["trainBpeTokenizer", "saveTokenizer", "LlamaForCausalLM"],
  backends: ["selectBackend", "availableBackends"],
};

/** Names that are implementation details of one module. */
const INTERNAL = [
  "BASE_ROW",
  "KEY_PREFIX",
  "splitAdapterTensors",
  "cachedAttention",
  "modelLoss",
  "nativeFallbackNotice",
  "pyFloatRepr",
  "meanF32",
  "registerNf4Kernels",
  "RUNTIME_BYTES",
];

describe("public surface", () => {
  for (const [cmd, names] of Object.entries(CLI_CAPABILITIES))
    test(`lorakit ${cmd} is reachable from "lorakit/node"`, () => {
      const missing = names.filter((n) => !(n in node));
      assert.deepEqual(missing, [], `missing from the node entry: ${missing.join(", ")}`);
    });
  test("internals are not exported", () => {
    const leaked = INTERNAL.filter((n) => n in node || n in browser);
    assert.deepEqual(leaked, []);
  });
  test("the browser entry has the model, PEFT and training API without node-only parts", () => {
    for (const n of ["getPeftModel", "LlamaForCausalLM", "Trainer", "quantizeModel", "getAdaLoraModel"])
      assert.ok(n in browser, n);
    for (const n of ["loadModel", "startServer", "selectBackend", "savePretrained", "nodeFolderSource"])
      assert.ok(!(n in browser), n);
  });
  test("the browser entry loads folders and adapters and trains in a Worker (issue 15)", () => {
    for (const n of [
      "loadModelFromUrl",
      "loadModelFromFiles",
      "loadModelFromSource",
      "loadTokenizerFromSource",
      "urlFolderSource",
      "filesFolderSource",
      "bytesFolderSource",
      "loadAdapterFromUrl",
      "loadAdapterFromFiles",
      "loadAdapterFromSource",
      "adapterFiles",
      "WorkerTrainer",
      "runTrainerWorker",
      "WorkerError",
      "WorkerProtocolError",
    ])
      assert.ok(n in browser, n);
    assert.ok("nodeFolderSource" in node);
  });
});
