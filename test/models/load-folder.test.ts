// The browser-safe folder loader (loadModelFromSource / Url / Files): the same model, report and
// tokenizer as the node loader, the same errors for the same broken folder, a sharded
// checkpoint read one shard at a time, and a URL folder served over HTTP.
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { tensor } from "../../src/core/tensor.js";
import { bytesFolderSource, filesFolderSource, type RangedFolderSource } from "../../src/io/folder-source.js";
import { nodeFolderSource } from "../../src/io/node/folder-source.js";
import { llamaConfigToJson } from "../../src/models/llama/config.js";
import { loadModelFromFiles, loadModelFromSource, loadModelFromUrl } from "../../src/models/load-folder.js";
import { loadModel, readModelConfig, saveModel } from "../../src/models/node/load.js";
import { quantizeCheckpoint } from "../../src/models/node/quantize-checkpoint.js";
import { bnbQuantizationConfig } from "../../src/quant/model.js";
import { loadTokenizer } from "../../src/tokenizer/node.js";
import { repoRoot } from "../util/repo.js";
import { tinyModel } from "../util/tiny-model.js";

const DEMO = join(repoRoot(), "models", "demo-base");
const tmp = mkdtempSync(join(tmpdir(), "lorakit-load-folder-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A folder's files as page File objects, with the webkitRelativePath a dropped folder gives. */
function filesOf(dir: string, top: string): File[] {
  return readdirSync(dir)
    .filter((f) => statSync(join(dir, f)).isFile())
    .map((f) => {
      const file = new File([readFileSync(join(dir, f))], f);
      Object.defineProperty(file, "webkitRelativePath", { value: `${top}/${f}` });
      return file;
    });
}

function sameParams(
  a: Awaited<ReturnType<typeof loadModelFromSource>>["model"],
  dir: string,
  dtype?: "bf16",
) {
  const { model: ref, report } = loadModel(dir, { dtype });
  const got = new Map(a.namedParameters());
  for (const [path, p] of ref.namedParameters()) {
    const q = got.get(path);
    assert.ok(q, path);
    assert.equal(q.dtype, p.dtype, path);
    assert.equal(q.requiresGrad, false, path);
    assert.deepEqual(q.data, p.data, path);
  }
  assert.equal(got.size, [...ref.namedParameters()].length);
  return report;
}

/** A sharded copy of a tiny model (three or more shards) with a tokenizer. */
function shardedFolder(): string {
  const dir = join(tmp, "sharded");
  saveModel(tinyModel(5, { tie_word_embeddings: false, vocab_size: 300 }), dir, { maxShardBytes: 20_000 });
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) cpSync(join(DEMO, f), join(dir, f));
  return dir;
}

describe("loadModelFromSource", () => {
  test("the demo model from bytes, from dropped files and from disk equals loadModel's, with its tokenizer", async () => {
    const bytes: Record<string, Uint8Array> = {};
    for (const f of readdirSync(DEMO)) bytes[f] = new Uint8Array(readFileSync(join(DEMO, f)));
    const fromBytes = await loadModelFromSource(bytesFolderSource(bytes, "demo-base"));
    const report = sameParams(fromBytes.model, DEMO);
    assert.deepEqual(fromBytes.report, report);
    const tok = loadTokenizer(DEMO);
    assert.deepEqual(fromBytes.tokenizer?.encode("Call me Ishmael."), tok.encode("Call me Ishmael."));
    assert.equal(fromBytes.model.nameOrPath, "demo-base");

    const progress: string[] = [];
    const dropped = await loadModelFromFiles(filesOf(DEMO, "demo-base"), {
      dtype: "bf16",
      onProgress: (p) => progress.push(p.file),
    });
    sameParams(dropped.model, DEMO, "bf16");
    assert.ok(progress.includes("model.safetensors"));
    assert.equal(dropped.model.nameOrPath, "demo-base");

    const disk = await loadModelFromSource(nodeFolderSource(DEMO));
    sameParams(disk.model, DEMO);
    const ids = tensor([1, 2, 3, 4], [1, 4], "i32");
    assert.deepEqual(disk.model.forward(ids).data, loadModel(DEMO).model.forward(ids).data);
  });

  test("quantize: nf4 on load, and a saved NF4 (bitsandbytes layout) checkpoint, as loadModel gives them", async () => {
    const q = await loadModelFromSource(nodeFolderSource(DEMO), { quantize: "nf4" });
    const { model: ref } = loadModel(DEMO, { quantize: "nf4" });
    const ids = tensor([1, 2, 3, 4, 5], [1, 5], "i32");
    assert.deepEqual(q.model.forward(ids).data, ref.forward(ids).data);
    const dir = join(tmp, "nf4");
    saveModel(ref, dir);
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) cpSync(join(DEMO, f), join(dir, f));
    const back = await loadModelFromSource(nodeFolderSource(dir));
    assert.deepEqual(back.model.forward(ids).data, loadModel(dir).model.forward(ids).data);
    assert.deepEqual(back.report, loadModel(dir).report);
  });

  test("a sharded 4-bit checkpoint whose modules straddle shards loads as loadModel loads it", async () => {
    const dir = join(tmp, "nf4-sharded");
    // Small shards cut modules apart: their codes in one shard, absmax or quant state in the next.
    quantizeCheckpoint(DEMO, dir, readModelConfig(DEMO), { maxShardBytes: 30_000 });
    const raw = JSON.parse(readFileSync(join(DEMO, "config.json"), "utf8"));
    raw.quantization_config = bnbQuantizationConfig({ doubleQuant: true });
    writeFileSync(join(dir, "config.json"), JSON.stringify(raw));
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) cpSync(join(DEMO, f), join(dir, f));
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
    const weightMap = index.weight_map as Record<string, string>;
    const straddling = Object.keys(weightMap)
      .filter((n) => n.endsWith(".weight.quant_state.bitsandbytes__nf4"))
      .map((n) => n.slice(0, -".weight.quant_state.bitsandbytes__nf4".length))
      .filter((p) => {
        const shards = Object.entries(weightMap)
          .filter(([n]) => n.startsWith(`${p}.weight`))
          .map(([, s]) => s);
        return new Set(shards).size > 1;
      });
    assert.ok(straddling.length > 0, "expected a module split across shards");
    const ids = tensor([1, 2, 3, 4, 5], [1, 5], "i32");
    const ref = loadModel(dir);
    for (const chunkBytes of [undefined, 4096]) {
      const back = await loadModelFromSource(nodeFolderSource(dir), { chunkBytes });
      assert.deepEqual(back.report, ref.report);
      assert.deepEqual(back.model.forward(ids).data, ref.model.forward(ids).data);
    }
  });

  test("a sharded checkpoint is read one piece at a time, each piece once, and equals loadModel", async () => {
    const dir = shardedFolder();
    const shards = readdirSync(dir).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f));
    assert.ok(shards.length >= 3, `expected several shards, got ${shards.join(", ")}`);
    const inner = nodeFolderSource(dir);
    let inFlight = 0;
    let most = 0;
    const wholeReads: string[] = [];
    const rangeBytes = new Map<string, number>();
    let largestRead = 0;
    const counting: RangedFolderSource = {
      ...inner,
      async readBytes(name) {
        wholeReads.push(name);
        return inner.readBytes(name);
      },
      async readRange(name, start, end) {
        inFlight++;
        most = Math.max(most, inFlight);
        try {
          const b = await inner.readRange(name, start, end);
          rangeBytes.set(name, (rangeBytes.get(name) ?? 0) + b.length);
          largestRead = Math.max(largestRead, b.length);
          return b;
        } finally {
          inFlight--;
        }
      },
    };
    const chunkBytes = 3000;
    const got = await loadModelFromSource(counting, { chunkBytes });
    assert.equal(most, 1);
    assert.deepEqual(wholeReads, []);
    // Each shard read once (header, then its data in pieces): no byte twice, no piece above the
    // chunk size unless one tensor is larger.
    for (const s of shards) assert.equal(rangeBytes.get(s), statSync(join(dir, s)).size, s);
    const { model: ref } = loadModel(dir);
    const biggest = Math.max(...[...ref.namedParameters()].map(([, p]) => p.size * 4));
    assert.ok(largestRead <= Math.max(chunkBytes, biggest), `read ${largestRead} bytes at once`);
    const report = sameParams(got.model, dir);
    assert.deepEqual(got.report, report);
  });

  test("a folder served over HTTP loads: in byte ranges where the server serves them, else whole", async () => {
    const dir = shardedFolder();
    const log: string[] = [];
    const server: Server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      const [, route, name] = decodeURIComponent(url.pathname).split("/");
      const root = route === "demo" ? DEMO : route === "sharded" || route === "ranged" ? dir : null;
      let body: Buffer;
      try {
        if (root === null || !name) throw new Error("no such route");
        body = readFileSync(join(root, name));
      } catch {
        res.writeHead(404).end();
        return;
      }
      const ranges = route === "ranged";
      const m = ranges ? /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "") : null;
      log.push(`${req.method} ${route}/${name}${m ? ` ${m[1]}-${m[2]}` : ""}`);
      if (m) {
        const part = body.subarray(Number(m[1]), Number(m[2]) + 1);
        res.writeHead(206, {
          "content-length": part.length,
          "content-range": `bytes ${m[1]}-${Number(m[1]) + part.length - 1}/${body.length}`,
        });
        res.end(part);
        return;
      }
      res.writeHead(200, { "content-length": body.length, ...(ranges ? { "accept-ranges": "bytes" } : {}) });
      res.end(req.method === "HEAD" ? undefined : body);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as { port: number }).port;
      const sharded = await loadModelFromUrl(`http://127.0.0.1:${port}/sharded`);
      sameParams(sharded.model, dir);
      const ranged = await loadModelFromUrl(`http://127.0.0.1:${port}/ranged/`, { chunkBytes: 4000 });
      sameParams(ranged.model, dir);
      const shardGets = (route: string) =>
        log.filter((l) => l.startsWith(`GET ${route}/model-`) && !/ \d+-\d+$/.test(l)).length;
      const rangeGets = log.filter((l) => /^GET ranged\/model-.* \d+-\d+$/.test(l)).length;
      assert.ok(shardGets("sharded") >= 3, "without ranges each shard is fetched whole");
      assert.equal(shardGets("ranged"), 0, "with ranges no shard is fetched whole");
      assert.ok(rangeGets > 6, `expected header and chunk ranges, got ${rangeGets}`);
      const demo = await loadModelFromUrl(`http://127.0.0.1:${port}/demo/`);
      sameParams(demo.model, DEMO);
      assert.equal(demo.tokenizer?.vocabSize, loadTokenizer(DEMO).vocabSize);
      await assert.rejects(
        loadModelFromUrl(`http://127.0.0.1:${port}/nothing-here/`),
        /nothing-here\/: no config.json \(is this a Hugging Face model folder\?\)/,
      );
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  test("chat_template.jinja takes priority over tokenizer_config.json's template, on disk and in the browser", async () => {
    const dir = join(tmp, "jinja");
    cpSync(DEMO, dir, { recursive: true });
    const template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}";
    writeFileSync(join(dir, "chat_template.jinja"), template);
    const msgs = [{ role: "user", content: "hi" }];
    assert.equal(loadTokenizer(dir).applyChatTemplate(msgs), "[user] hi\n");
    const { tokenizer } = await loadModelFromFiles(filesOf(dir, "jinja"));
    assert.equal(tokenizer?.applyChatTemplate(msgs), "[user] hi\n");
    assert.notEqual(loadTokenizer(DEMO).applyChatTemplate(msgs), "[user] hi\n");
  });
});

describe("the folder loader fails as the node loader does", () => {
  let n = 0;
  /** A copy of the demo folder changed by `edit`. */
  function broken(edit: (dir: string) => void): string {
    const dir = join(tmp, `broken-${n++}`);
    cpSync(DEMO, dir, { recursive: true });
    edit(dir);
    return dir;
  }
  const demoConfig = () => JSON.parse(readFileSync(join(DEMO, "config.json"), "utf8"));
  const cases: [string, (dir: string) => void, Record<string, unknown>?][] = [
    ["no config.json", (d) => rmSync(join(d, "config.json"))],
    ["config.json not JSON", (d) => writeFileSync(join(d, "config.json"), "{nope")],
    [
      "config.json with a bad field",
      (d) => writeFileSync(join(d, "config.json"), JSON.stringify({ ...demoConfig(), hidden_size: -3 })),
    ],
    [
      "only a pickle",
      (d) => {
        rmSync(join(d, "model.safetensors"));
        writeFileSync(join(d, "pytorch_model.bin"), "x");
      },
    ],
    ["no weights at all", (d) => rmSync(join(d, "model.safetensors"))],
    ["a truncated safetensors file", (d) => writeFileSync(join(d, "model.safetensors"), new Uint8Array(5))],
    [
      "weights of another shape",
      (d) =>
        writeFileSync(
          join(d, "config.json"),
          JSON.stringify({ ...demoConfig(), intermediate_size: demoConfig().intermediate_size + 8 }),
        ),
    ],
    [
      "a missing tensor (config.json says 2 layers, the weights have 1)",
      (d) => {
        const m = tinyModel(1, { vocab_size: 300, num_hidden_layers: 1 });
        saveModel(m, d);
        writeFileSync(
          join(d, "config.json"),
          JSON.stringify({ ...llamaConfigToJson(m.config), num_hidden_layers: 2 }),
        );
      },
    ],
    ["a bad dtype option", () => {}, { dtype: "f16" }],
    ["an index that is not JSON", (d) => writeFileSync(join(d, "model.safetensors.index.json"), "[")],
    [
      "an index with a path as shard name",
      (d) =>
        writeFileSync(
          join(d, "model.safetensors.index.json"),
          JSON.stringify({ weight_map: { "model.norm.weight": "../model.safetensors" } }),
        ),
    ],
    [
      "an index that puts a tensor in the wrong shard",
      (d) =>
        writeFileSync(
          join(d, "model.safetensors.index.json"),
          JSON.stringify({ weight_map: { "model.nothing.weight": "model.safetensors" } }),
        ),
    ],
    [
      "an index naming a shard that is not there",
      (d) =>
        writeFileSync(
          join(d, "model.safetensors.index.json"),
          JSON.stringify({ weight_map: { "model.norm.weight": "model-00001-of-00002.safetensors" } }),
        ),
    ],
    [
      "no tokenizer.json, a sentencepiece model",
      (d) => {
        rmSync(join(d, "tokenizer.json"));
        writeFileSync(join(d, "tokenizer.model"), "x");
      },
    ],
    ["a tokenizer.json that is not a tokenizer", (d) => writeFileSync(join(d, "tokenizer.json"), "{}")],
  ];
  for (const [what, edit, extra] of cases)
    test(what, async () => {
      const dir = broken(edit);
      const opts = extra?.dtype ? { dtype: extra.dtype as "f32" } : {};
      let nodeError: Error | null = null;
      try {
        loadModel(dir, opts);
        loadTokenizer(dir);
      } catch (e) {
        nodeError = e as Error;
      }
      assert.ok(nodeError, "the node loader should fail");
      await assert.rejects(loadModelFromSource(nodeFolderSource(dir), opts), (e: Error) => {
        assert.equal(e.message, nodeError.message);
        assert.equal(e.constructor, nodeError.constructor);
        return true;
      });
    });
});

describe("filesFolderSource", () => {
  test("matches by base name, prefers the shallowest copy, and refuses two at the same depth", async () => {
    const f = (path: string, text: string) => {
      const file = new File([text], path.split("/").pop()!);
      Object.defineProperty(file, "webkitRelativePath", { value: path });
      return file;
    };
    const src = filesFolderSource([
      f("m/config.json", "top"),
      f("m/checkpoint-2/config.json", "deep"),
      f("m/a/x.txt", "1"),
      f("m/b/x.txt", "2"),
    ]);
    assert.equal(src.label, "m");
    assert.equal(await src.readText("config.json"), "top");
    assert.equal(await src.has("nothing.json"), false);
    await assert.rejects(
      src.readText("x.txt"),
      /two selected files are named x.txt \(m\/a\/x.txt and m\/b\/x.txt\)/,
    );
  });
});
