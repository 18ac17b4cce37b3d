// Issue 17, results that used to be silently wrong: NaN weights, ids past the tokenizer,
// adapter tensors the config does not target, a save killed halfway, a failed adapter load
// that leaked into a shared model, checkpoints and temporaries that piled up, NF4 block sizes
// bitsandbytes does not have, PEFT fields lorakit does not implement.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { meta } from "../../src/core/tensor.js";
import { openSafetensors } from "../../src/io/node/index.js";
import { removeStaleTemps } from "../../src/io/node/stale-temps.js";
import { evaluateNll } from "../../src/models/evaluate.js";
import { generate } from "../../src/models/generate.js";
import { saveModel } from "../../src/models/node/load.js";
import { NonFiniteError } from "../../src/models/non-finite.js";
import { parseLoraConfig } from "../../src/peft/config.js";
import { PeftError } from "../../src/peft/errors.js";
import { loadAdapterTensors } from "../../src/peft/format.js";
import { getPeftModel, PeftModel } from "../../src/peft/model.js";
import { fromPretrained, savePretrained } from "../../src/peft/node/io.js";
import { QuantError, quantizeNf4Tensor } from "../../src/quant/nf4.js";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { saveTokenizer } from "../../src/tokenizer/node.js";
import { pruneCheckpoints } from "../../src/train/node/checkpoint.js";
import { tinyModel } from "../util/tiny-model.js";
import { buildWorld, CORPUS, cli, failsClearly, oneJson, type World } from "./cli-world.js";

let w: World;
before(() => {
  w = buildWorld();
});
after(() => w?.cleanup());

/** The pid of a process that has exited (so no live process owns it). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
    encoding: "utf8",
  });
  return Number(r.stdout);
}

describe("no silently wrong results", { timeout: 120_000 }, () => {
  test("a NaN weight fails eval and generate naming the tensor", async () => {
    const m = tinyModel(1);
    m.getSubmodule("model.layers.1.mlp.down_proj").param("weight")!.data[5] = Number.NaN;
    assert.throws(
      () => evaluateNll(m, [1, 2, 3, 4, 5], { seqLen: 8 }),
      (e: Error) =>
        e instanceof NonFiniteError && /model\.layers\.1\.mlp\.down_proj\.weight .*element 5/.test(e.message),
    );
    assert.throws(
      () => generate(m, [1, 2], { maxNewTokens: 3 }),
      (e: Error) => e instanceof NonFiniteError && /down_proj\.weight/.test(e.message),
    );
    // Through the CLI, with the NaN in an adapter's B.
    const pm = getPeftModel(tinyModel(0, { vocab_size: w.vocab }), { r: 2, targetModules: ["q_proj"] });
    const [, l0] = pm.loraLayers().next().value!;
    l0.lora_B.get("default")!.weight.data[0] = Number.NaN;
    const nanDir = join(w.root, "nan-adapter");
    savePretrained(pm, nanDir);
    const args = ["--model", w.modelDir, "--adapter", nanDir];
    failsClearly(
      await cli(["eval", ...args, "--text", w.textFile, "--json"]),
      /lora_B\.default\.weight holds a NaN/,
    );
    failsClearly(
      await cli(["generate", ...args, "--prompt", "Call me", "--max-new-tokens", "3", "--json"]),
      /not finite: the weight .*lora_B\.default\.weight/,
    );
  });

  test("ids past the tokenizer (a padded vocabulary) decode to nothing, and the output is kept", async () => {
    const dir = join(w.root, "padded");
    const m = tinyModel(2, { vocab_size: w.vocab + 16 });
    // Every real row 0; two padded rows ±v, so a padded id has the largest logit.
    const head = m.lm_head.weight.data as Float32Array;
    head.fill(0);
    const C = m.config.hiddenSize;
    for (let c = 0; c < C; c++) {
      head[(w.vocab + 3) * C + c] = 1 + (c % 3);
      head[(w.vocab + 4) * C + c] = -(1 + (c % 3));
    }
    saveModel(m, dir);
    saveTokenizer(dir, trainBpeTokenizer(CORPUS.repeat(3), { vocabSize: 300 }));
    const r = oneJson(
      await cli(["generate", "--model", dir, "--prompt", "Call me", "--max-new-tokens", "4", "--json"]),
    );
    const tokens = r.tokens as number[];
    assert.equal(tokens.length, 4);
    assert.ok(
      tokens.every((t) => t >= w.vocab),
      `expected padded ids, got ${tokens}`,
    );
    assert.equal(r.text, "");
  });

  test("adapter tensors for modules the config does not target are refused, naming them", async () => {
    const pm = getPeftModel(tinyModel(0, { vocab_size: w.vocab }), {
      r: 2,
      targetModules: ["q_proj", "v_proj"],
    });
    const dir = join(w.root, "untargeted");
    savePretrained(pm, dir);
    const cfgPath = join(dir, "adapter_config.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
    cfg.target_modules = ["q_proj"];
    writeFileSync(cfgPath, JSON.stringify(cfg));
    assert.throws(
      () => fromPretrained(tinyModel(0, { vocab_size: w.vocab }), dir),
      (e: Error) =>
        e instanceof PeftError &&
        /belong to no module that the config targets .*v_proj\.lora_A\.weight/.test(e.message),
    );
    failsClearly(
      await cli(["eval", "--model", w.modelDir, "--adapter", dir, "--text", w.textFile, "--json"]),
      /belong to no module that the config targets/,
    );
  });

  test("a failed adapter load leaves no LoRA weights behind in the shared model", () => {
    const base = tinyModel(3);
    const pm = new PeftModel(base);
    const before = [...base.namedParameters()].length;
    const src = getPeftModel(tinyModel(3), { r: 2, targetModules: ["q_proj", "v_proj"] });
    const tensors = new Map<string, import("../../src/core/tensor.js").Tensor>();
    for (const [path, l] of src.loraLayers()) {
      tensors.set(`base_model.model.${path}.lora_A.weight`, l.lora_A.get("default")!.weight);
      tensors.set(`base_model.model.${path}.lora_B.weight`, l.lora_B.get("default")!.weight);
    }
    // The last module's A has the wrong shape: every earlier module was already given its weights.
    const lastA = [...tensors.keys()].filter((k) => k.endsWith("lora_A.weight")).pop()!;
    tensors.set(lastA, meta([3, 32], "f32"));
    const cfg = parseLoraConfig({ r: 2, lora_alpha: 4, target_modules: ["q_proj", "v_proj"] });
    for (let i = 0; i < 3; i++)
      assert.throws(
        () => loadAdapterTensors(pm, `a${i}`, cfg, tensors),
        (e: Error) => e instanceof PeftError,
      );
    assert.equal([...base.namedParameters()].length, before);
    assert.equal([...pm.loraLayers()].length, 0);
  });

  test("a save that fails halfway leaves the old adapter whole, never new config beside old weights", () => {
    const dir = join(w.root, "atomic");
    const old = getPeftModel(tinyModel(0), { r: 2, targetModules: ["q_proj"] });
    savePretrained(old, dir);
    const oldCfg = readFileSync(join(dir, "adapter_config.json"), "utf8");
    const oldWeights = readFileSync(join(dir, "adapter_model.safetensors"));
    const next = getPeftModel(tinyModel(0), { r: 4, targetModules: ["q_proj", "v_proj"] });
    const [, l] = [...next.loraLayers()].pop()!;
    l.lora_B.get("default")!.weight = meta(l.lora_B.get("default")!.weight.shape, "f32") as never;
    assert.throws(() => savePretrained(next, dir));
    assert.equal(readFileSync(join(dir, "adapter_config.json"), "utf8"), oldCfg);
    assert.deepEqual(readFileSync(join(dir, "adapter_model.safetensors")), oldWeights);
    assert.deepEqual(readdirSync(dir).sort(), ["adapter_config.json", "adapter_model.safetensors"]);
    // A new folder that fails is not created at all.
    assert.throws(() => savePretrained(next, join(w.root, "atomic-new")));
    assert.ok(!existsSync(join(w.root, "atomic-new")));
    assert.deepEqual(
      readdirSync(w.root).filter((n) => n.endsWith(".tmp")),
      [],
    );
    // And a save that works replaces the pair.
    const good = getPeftModel(tinyModel(0), { r: 4, targetModules: ["q_proj", "v_proj"] });
    savePretrained(good, dir);
    assert.equal(JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")).r, 4);
    const f = openSafetensors(join(dir, "adapter_model.safetensors"));
    assert.equal(f.names().length, 8);
    f.close();
  });

  test("temporaries of killed runs are removed; a live process's are not", () => {
    const dir = join(w.root, "temps");
    mkdirSync(dir, { recursive: true });
    const dead = deadPid();
    const stale = [
      `.adapter_model.safetensors.${dead}.deadbeef.tmp`,
      `.tmp-checkpoint-4-${dead}`,
      `.quantize-${dead}-1700000000000-0.safetensors.tmp`,
    ];
    const live = `.adapter_model.safetensors.${process.pid}.cafebabe.tmp`;
    for (const n of [...stale, live, "keep.txt"]) writeFileSync(join(dir, n), "x");
    assert.deepEqual(removeStaleTemps(dir).sort(), [...stale].sort());
    assert.deepEqual(readdirSync(dir).sort(), [live, "keep.txt"].sort());
  });

  test("checkpoints are pruned to --save-total-limit (default 2)", async () => {
    const root = join(w.root, "ckpts");
    for (const s of [1, 2, 3, 10]) mkdirSync(join(root, `checkpoint-${s}`), { recursive: true });
    pruneCheckpoints(root, 2);
    assert.deepEqual(readdirSync(root).sort(), ["checkpoint-10", "checkpoint-3"]);
    const out = join(w.root, "train-ckpt");
    const data = join(w.root, "data.txt");
    writeFileSync(data, CORPUS.repeat(4));
    const r = await cli([
      "train",
      "--model",
      w.modelDir,
      "--data",
      data,
      "--out",
      out,
      "--steps",
      "4",
      "--batch-size",
      "1",
      "--seq-len",
      "16",
      "--checkpoint-every",
      "1",
      "--valid-fraction",
      "0",
      "--json",
    ]);
    oneJson(r);
    assert.deepEqual(readdirSync(join(out, "checkpoints")).sort(), ["checkpoint-3", "checkpoint-4"]);
  });

  test("NF4 block sizes are bitsandbytes' (32 … 4096, powers of two)", () => {
    const v = new Float32Array(96 * 4).map((_, i) => Math.sin(i));
    for (const bs of [32, 64, 128]) quantizeNf4Tensor(v, [4, 96], { blocksize: bs });
    for (const bs of [48, 16, 8192, 6])
      assert.throws(
        () => quantizeNf4Tensor(v, [4, 96], { blocksize: bs }),
        (e: Error) => e instanceof QuantError && /is not one of bitsandbytes'/.test(e.message),
      );
  });

  test("PEFT fields lorakit does not implement are refused by name; EVA/OLoRA/CorDA/LoftQ adapters load", () => {
    const base = { r: 2, lora_alpha: 4, target_modules: ["q_proj"] };
    for (const [k, v] of [
      ["use_qalora", true],
      ["trainable_token_indices", [1, 2]],
      ["target_parameters", ["experts.down_proj"]],
      ["alora_invocation_tokens", [5, 6]],
      ["use_bdlora", { block: 2 }],
    ] as const)
      assert.throws(
        () => parseLoraConfig({ ...base, [k]: v }),
        (e: Error) =>
          e instanceof PeftError && e.message.includes(`${k} (`) && /does not implement it/.test(e.message),
      );
    for (const init of ["eva", "olora", "corda", "loftq"]) {
      const c = parseLoraConfig({ ...base, init_lora_weights: init, loftq_config: { loftq_bits: 4 } });
      assert.equal(c.initLoraWeights, true);
    }
    // Defaults of those fields, as PEFT writes them, are fine.
    parseLoraConfig({ ...base, use_qalora: false, trainable_token_indices: null, target_parameters: [] });
  });
});
