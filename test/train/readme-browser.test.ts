// The README's "In the browser" example type-checks against the package's "." entry with the
// DOM's types (Worker, File, HTMLInputElement): a renamed or reshaped browser API fails here.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import ts from "typescript";
import { repoRoot } from "../util/repo.js";

test("the README's browser example type-checks against the browser entry", { timeout: 120_000 }, () => {
  const root = repoRoot();
  const md = readFileSync(join(root, "README.md"), "utf8");
  const from = md.indexOf("### In the browser");
  assert.ok(from >= 0, "README has no ### In the browser section");
  const m = /```ts\n([\s\S]*?)```/.exec(md.slice(from));
  assert.ok(m, "no ts block in the browser section");
  // The worker entry the example quotes in a comment ("//   import …", "//   runTrainerWorker(self);").
  const workerLines = [...m[1].matchAll(/^\/\/ {3}(.+)$/gm)].map((x) => x[1]);
  assert.equal(workerLines.length, 2, "the example should quote the two-line worker entry");
  // Imports of "lorakit" resolve through the package's own exports (self-reference) to dist/.
  const file = join(root, "test", "readme-browser-example.ts");
  const workerFile = join(root, "test", "readme-browser-worker.ts");
  const texts = new Map([
    [file, `${m[1]}\nexport {};\n`],
    [workerFile, `${workerLines.join("\n")}\nexport {};\n`],
  ]);
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile;
  host.getSourceFile = (name, lang, onError, fresh) => {
    const text = texts.get(name);
    return text !== undefined
      ? ts.createSourceFile(name, text, lang)
      : getSourceFile.call(host, name, lang, onError, fresh);
  };
  const fileExists = host.fileExists;
  host.fileExists = (name) => texts.has(name) || fileExists.call(host, name);
  const program = ts.createProgram([file, workerFile], options, host);
  const diags = ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file === undefined || texts.has(d.file.fileName))
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  assert.deepEqual(diags, []);
});
