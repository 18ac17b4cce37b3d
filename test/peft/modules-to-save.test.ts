// modules_to_save: a trained copy per adapter, saved under the module's own key as PEFT does,
// loaded back, switched with the adapter, and kept by merge-and-unload.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { noGrad, tensor } from "../../src/core/index.js";
import { openSafetensors } from "../../src/io/node/index.js";
import { getPeftModel } from "../../src/peft/model.js";
import { ModulesToSaveWrapper } from "../../src/peft/modules-to-save.js";
import { fromPretrained, savePretrained } from "../../src/peft/node/io.js";
import { tinyModel } from "../util/tiny-model.js";

const ids = tensor([[1, 5, 9, 2, 7]], [1, 5], "i32");
const out = (m: { forward(x: typeof ids): { data: ArrayLike<number> } }) =>
  noGrad(() => Float32Array.from(m.forward(ids).data as Float32Array));

test("modules_to_save: train a copy of lm_head, save, load, switch, unload", () => {
  const base = out(tinyModel(11));
  const pm = getPeftModel(tinyModel(11), { r: 2, targetModules: ["q_proj"], modulesToSave: ["lm_head"] });
  const [[path, w]] = [...pm.savedModules()];
  assert.equal(path, "lm_head");
  assert.ok(w instanceof ModulesToSaveWrapper);
  assert.deepEqual(out(pm), base, "the copy starts equal to the original");
  const copy = w.modules_to_save.get("default")!;
  assert.equal(copy.param("weight")!.requiresGrad, true);
  assert.equal(w.original_module.param("weight")!.requiresGrad, false);
  const cw = copy.param("weight")!.data as Float32Array;
  for (let i = 0; i < cw.length; i += 7) cw[i] += 0.5; // "training"
  const trained = out(pm);
  assert.notDeepEqual(trained, base);
  assert.deepEqual(
    pm.withAdaptersDisabled(() => out(pm)),
    base,
  );

  const dir = mkdtempSync(join(tmpdir(), "lorakit-mts-"));
  savePretrained(pm, dir);
  const f = openSafetensors(join(dir, "adapter_model.safetensors"));
  assert.ok(f.names().includes("base_model.model.lm_head.weight"), f.names().join(", "));
  f.close();
  assert.deepEqual(JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")).modules_to_save, [
    "lm_head",
  ]);
  const loaded = fromPretrained(tinyModel(11), dir);
  assert.deepEqual(out(loaded), trained);

  const plain = pm.mergeAndUnload();
  assert.deepEqual(out(plain), trained);
  for (const [p] of plain.namedParameters())
    assert.ok(!p.includes("modules_to_save") && !p.includes("original_module"), p);
});

test("modules_to_save that matches nothing is refused", () => {
  assert.throws(
    () => getPeftModel(tinyModel(12), { r: 2, modulesToSave: ["classifier"] }),
    /matches no module/,
  );
});
