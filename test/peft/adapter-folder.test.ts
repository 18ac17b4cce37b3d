// PEFT adapter folders in the browser: adapterFiles gives byte for byte what savePretrained and
// `lorakit train` write, loadAdapterFromFiles / Url / Source read them back to the same outputs,
// and a broken adapter folder fails with the node reader's error.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { tensor } from "../../src/core/tensor.js";
import { bytesFolderSource } from "../../src/io/folder-source.js";
import { nodeFolderSource } from "../../src/io/node/folder-source.js";
import { loadModel } from "../../src/models/node/load.js";
import {
  adapterFiles,
  loadAdapterFromFiles,
  loadAdapterFromSource,
  loadAdapterFromUrl,
} from "../../src/peft/adapter-folder.js";
import { getPeftModel, PeftModel } from "../../src/peft/model.js";
import { fromPretrained, savePretrained } from "../../src/peft/node/io.js";
import { repoRoot } from "../util/repo.js";
import { tinyModel } from "../util/tiny-model.js";

const ROOT = repoRoot();
const DEMO = join(ROOT, "models", "demo-base");
const CLI = join(ROOT, "dist", "src", "cli", "main.js");
const tmp = mkdtempSync(join(tmpdir(), "lorakit-adapter-folder-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function folderFiles(dir: string): File[] {
  return readdirSync(dir).map((f) => new File([readFileSync(join(dir, f))], f));
}

function assertSameFiles(files: ReturnType<typeof adapterFiles>, dir: string) {
  assert.equal(files["adapter_config.json"], readFileSync(join(dir, "adapter_config.json"), "utf8"));
  assert.deepEqual(
    Buffer.from(files["adapter_model.safetensors"]),
    readFileSync(join(dir, "adapter_model.safetensors")),
  );
}

describe("adapterFiles", () => {
  const cases: [string, Parameters<typeof getPeftModel>[1]][] = [
    ["lora q,v", { r: 4, loraAlpha: 8, targetModules: ["q_proj", "v_proj"] }],
    ["all-linear rslora", { r: 2, loraAlpha: 4, targetModules: "all-linear", useRslora: true }],
    ["dora", { r: 3, loraAlpha: 6, targetModules: ["q_proj", "o_proj"], useDora: true }],
  ];
  for (const [name, cfg] of cases)
    test(`${name}: byte for byte what savePretrained writes`, () => {
      const pm = getPeftModel(tinyModel(2), cfg, "default", { seed: 3 });
      // Non-zero B, so the bytes carry real values.
      for (const [, p] of pm.namedParameters())
        if (p.requiresGrad) for (let i = 0; i < p.data.length; i++) p.data[i] = Math.sin(i + 1) / 7;
      const dir = join(tmp, `save-${name.replace(/\W/g, "_")}`);
      savePretrained(pm, dir, { baseModelNameOrPath: "tiny" });
      assertSameFiles(adapterFiles(pm, { baseModelNameOrPath: "tiny" }), dir);
    });

  test("an adapter `lorakit train` wrote, loaded from dropped files, gives back the same two files", async () => {
    const out = join(tmp, "trained");
    const data = join(tmp, "data.txt");
    writeFileSync(data, "Call me Ishmael. Some years ago, never mind how long precisely. ".repeat(20));
    const r = spawnSync(
      process.execPath,
      [CLI, "train", "--model", DEMO, "--data", data, "--out", out, "--steps", "2", "--seq-len", "32"].concat(
        ["--batch-size", "2", "--r", "4", "--target-modules", "q_proj,v_proj", "--json"],
      ),
      { encoding: "utf8", env: { ...process.env, LORAKIT_THREADS: "1" } },
    );
    assert.equal(r.status, 0, r.stderr);
    const adapterDir = join(tmp, "trained-adapter");
    cpSync(join(out, "adapter_config.json"), join(adapterDir, "adapter_config.json"));
    cpSync(join(out, "adapter_model.safetensors"), join(adapterDir, "adapter_model.safetensors"));

    const { model } = loadModel(DEMO);
    const pm = await loadAdapterFromFiles(model, folderFiles(adapterDir));
    assert.ok(pm instanceof PeftModel);
    assertSameFiles(adapterFiles(pm), adapterDir);

    // Same outputs as the node reader's adapter.
    const ref = fromPretrained(loadModel(DEMO).model, adapterDir);
    const ids = tensor([5, 9, 2, 7, 1], [1, 5], "i32");
    assert.deepEqual(pm.forward(ids).data, ref.forward(ids).data);

    // A second adapter onto the same PeftModel, under its own name.
    const files = adapterFiles(pm);
    await loadAdapterFromSource(pm, bytesFolderSource({ ...files }, "second"), { adapterName: "second" });
    assert.deepEqual([...pm.peftConfig.keys()].sort(), ["default", "second"]);
  });
});

describe("loadAdapterFromUrl", () => {
  test("reads an adapter folder through the given fetch (HEAD, then GET) onto a base model", async () => {
    const pm = getPeftModel(
      tinyModel(4),
      { r: 2, loraAlpha: 4, targetModules: ["q_proj", "v_proj"] },
      "default",
      {
        seed: 9,
      },
    );
    for (const [, p] of pm.namedParameters())
      if (p.requiresGrad) for (let i = 0; i < p.data.length; i++) p.data[i] = Math.cos(i) / 5;
    const files = adapterFiles(pm);
    const seen: string[] = [];
    const fakeFetch = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input));
      seen.push(`${init?.method ?? "GET"} ${url.pathname}`);
      const name = url.pathname.replace("/adapters/mine/", "");
      const body = (files as unknown as Record<string, string | Uint8Array>)[name];
      if (body === undefined) return new Response(null, { status: 404 });
      const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
      return new Response(init?.method === "HEAD" ? null : (bytes as Uint8Array<ArrayBuffer>), {
        status: 200,
        headers: { "content-length": String(bytes.length) },
      });
    }) as typeof fetch;
    const loaded = await loadAdapterFromUrl(tinyModel(4), "https://models.example/adapters/mine", {
      fetch: fakeFetch,
    });
    const ids = tensor([1, 2, 3, 4], [1, 4], "i32");
    assert.deepEqual(loaded.forward(ids).data, pm.forward(ids).data);
    assert.ok(seen.includes("HEAD /adapters/mine/adapter_config.json"));
    assert.ok(seen.includes("GET /adapters/mine/adapter_model.safetensors"));
    await assert.rejects(
      loadAdapterFromUrl(tinyModel(4), "https://models.example/adapters/none/", { fetch: fakeFetch }),
      {
        message:
          "https://models.example/adapters/none/: no adapter_config.json (is this a PEFT adapter folder?)",
      },
    );
  });
});

describe("loadAdapterFromSource fails as the node reader does", () => {
  const base = join(tmp, "good");
  const pm = getPeftModel(tinyModel(2), { r: 2, loraAlpha: 4, targetModules: ["q_proj"] }, "default", {
    seed: 1,
  });
  savePretrained(pm, base);
  let n = 0;
  const cases: [string, (dir: string) => void][] = [
    ["no adapter_config.json", (d) => rmSync(join(d, "adapter_config.json"))],
    ["a config that is not JSON", (d) => writeFileSync(join(d, "adapter_config.json"), "{")],
    [
      "a config with a bad r",
      (d) => {
        const cfg = JSON.parse(readFileSync(join(d, "adapter_config.json"), "utf8"));
        writeFileSync(join(d, "adapter_config.json"), JSON.stringify({ ...cfg, r: 0 }));
      },
    ],
    [
      "only adapter_model.bin",
      (d) => {
        rmSync(join(d, "adapter_model.safetensors"));
        writeFileSync(join(d, "adapter_model.bin"), "x");
      },
    ],
    ["no weights", (d) => rmSync(join(d, "adapter_model.safetensors"))],
    ["truncated weights", (d) => writeFileSync(join(d, "adapter_model.safetensors"), new Uint8Array(3))],
    [
      "weights for another model (a shape mismatch)",
      (d) => {
        const other = getPeftModel(tinyModel(2, { hidden_size: 48 }), { r: 2, targetModules: ["q_proj"] });
        savePretrained(other, join(d, "other"));
        cpSync(join(d, "other", "adapter_model.safetensors"), join(d, "adapter_model.safetensors"));
      },
    ],
  ];
  for (const [what, edit] of cases)
    test(what, async () => {
      const dir = join(tmp, `bad-adapter-${n++}`);
      cpSync(base, dir, { recursive: true });
      edit(dir);
      let nodeError: Error | null = null;
      try {
        fromPretrained(tinyModel(2), dir);
      } catch (e) {
        nodeError = e as Error;
      }
      assert.ok(nodeError, "the node reader should fail");
      await assert.rejects(loadAdapterFromSource(tinyModel(2), nodeFolderSource(dir)), (e: Error) => {
        assert.equal(e.message, nodeError.message);
        assert.equal(e.constructor, nodeError.constructor);
        return true;
      });
    });
});
