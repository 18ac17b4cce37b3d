// Import directions of src/, per ARCHITECTURE.md "Layers": every module imports only from
// its own layer or below; kernels take only types from core (plus two pure helpers); and
// everything outside the node-only modules stays browser-safe (no node: builtins, no
// static import of a node-only module).
//
// Imports are read with the TypeScript parser (static imports, `export ... from`,
// `import x = require()`, dynamic `import()` and `require()` calls), not with regexes, so
// multi-line and type-only imports are classified correctly.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, posix, relative, sep } from "node:path";
import { describe, test } from "node:test";
import ts from "typescript";
import { repoRoot } from "./util/repo.js";

/** Layers from top to bottom (ARCHITECTURE.md); a module may import its own layer or lower. */
const LAYERS = [
  "cli",
  "serve",
  "train",
  "export",
  "peft",
  "optim",
  "models",
  "quant",
  "io",
  "nn",
  "core",
  "kernels",
];
/** Top-level directories that sit at another directory's level. */
const SAME_LEVEL: Record<string, string> = { tokenizer: "io", data: "io", linalg: "core" };
/** Package entry points: above every layer (nothing inside src may import them). */
const ENTRIES = new Set(["index.ts", "node.ts"]);

/**
 * Node-only modules (src-relative, posix): a prefix ending in "/" covers a directory.
 * Besides these, by convention any `node/` folder and any file named `node.ts` or
 * `*-node.ts` is node-only.
 */
const NODE_ONLY = [
  "kernels/native/",
  "kernels/select.ts",
  "io/node/",
  "tokenizer/node.ts",
  "data/",
  "serve/",
  "cli/",
  "node.ts",
];

/** The only values kernels/* may import from core: pure helpers, by core file. */
const KERNEL_VALUE_IMPORTS: Record<string, readonly string[]> = {
  // UNARY_OPS: the contract's op list, whose indices are the wasm module's op codes.
  "core/backend.ts": ["dropoutUniform", "UNARY_OPS"],
  "core/dtype.ts": ["bf16ToF32"],
  // Typed errors carry no behaviour; selection code raises BackendError.
  "core/errors.ts": ["BackendError"],
  // Only kernels/select.ts uses it: selection makes the chosen backend active.
  "core/engine.ts": ["setBackend"],
};

const NODE_BUILTINS = new Set(builtinModules.filter((m) => !m.startsWith("_")));

interface ImportRef {
  /** The module specifier as written. */
  spec: string;
  line: number;
  kind: "static" | "reexport" | "dynamic" | "require";
  /** Erased at compile time (import type, or every named binding marked `type`). */
  typeOnly: boolean;
  /** Value bindings imported by name (`{ a, b as c }` gives a, b); null when not enumerable (namespace, default, side effect, dynamic). */
  valueNames: string[] | null;
}

/** Every import of a TypeScript source text. */
function readImports(fileName: string, text: string): ImportRef[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: ImportRef[] = [];
  const line = (n: ts.Node) => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
  const visit = (n: ts.Node): void => {
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      const clause = n.importClause;
      let typeOnly = false;
      let valueNames: string[] | null = null;
      if (clause) {
        const nb = clause.namedBindings;
        if (clause.isTypeOnly) typeOnly = true;
        else if (!clause.name && nb && ts.isNamedImports(nb)) {
          const values = nb.elements.filter((e) => !e.isTypeOnly);
          valueNames = values.map((e) => (e.propertyName ?? e.name).text);
          typeOnly = values.length === 0 && nb.elements.length > 0;
        }
      }
      out.push({ spec: n.moduleSpecifier.text, line: line(n), kind: "static", typeOnly, valueNames });
    } else if (ts.isExportDeclaration(n) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      let typeOnly = n.isTypeOnly;
      let valueNames: string[] | null = null;
      if (!typeOnly && n.exportClause && ts.isNamedExports(n.exportClause)) {
        const values = n.exportClause.elements.filter((e) => !e.isTypeOnly);
        valueNames = values.map((e) => (e.propertyName ?? e.name).text);
        typeOnly = values.length === 0 && n.exportClause.elements.length > 0;
      }
      out.push({ spec: n.moduleSpecifier.text, line: line(n), kind: "reexport", typeOnly, valueNames });
    } else if (
      ts.isImportEqualsDeclaration(n) &&
      ts.isExternalModuleReference(n.moduleReference) &&
      ts.isStringLiteral(n.moduleReference.expression)
    ) {
      out.push({
        spec: n.moduleReference.expression.text,
        line: line(n),
        kind: "require",
        typeOnly: n.isTypeOnly,
        valueNames: null,
      });
    } else if (ts.isCallExpression(n) && n.arguments.length >= 1 && ts.isStringLiteralLike(n.arguments[0])) {
      const spec = n.arguments[0].text;
      if (n.expression.kind === ts.SyntaxKind.ImportKeyword)
        out.push({ spec, line: line(n), kind: "dynamic", typeOnly: false, valueNames: null });
      else if (ts.isIdentifier(n.expression) && n.expression.text === "require")
        out.push({ spec, line: line(n), kind: "require", typeOnly: false, valueNames: null });
    }
    // `import("x").T` in a type position is an ImportTypeNode: erased, and not a call, so skipped.
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** The level of a src-relative path: an index into LAYERS, -1 for an entry point, null if unknown. */
function levelOf(rel: string): number | null {
  if (ENTRIES.has(rel)) return -1;
  const top = rel.split("/")[0];
  const i = LAYERS.indexOf(SAME_LEVEL[top] ?? top);
  return i < 0 ? null : i;
}

function layerName(rel: string): string {
  if (ENTRIES.has(rel)) return "entry";
  const top = rel.split("/")[0];
  return SAME_LEVEL[top] ? `${top} (${SAME_LEVEL[top]} level)` : top;
}

function isNodeOnly(rel: string): boolean {
  if (/(^|\/)node\//.test(rel) || /(^|\/|-)node\.ts$/.test(rel)) return true;
  return NODE_ONLY.some((p) => (p.endsWith("/") ? rel.startsWith(p) : rel === p));
}

function isBuiltin(spec: string): boolean {
  return spec.startsWith("node:") || NODE_BUILTINS.has(spec) || NODE_BUILTINS.has(spec.split("/")[0]);
}

/** A relative specifier resolved to a src-relative .ts path (".js" → ".ts"); null when it leaves src. */
function resolveRel(fromRel: string, spec: string): string | null {
  let target = posix.normalize(posix.join(posix.dirname(fromRel), spec));
  if (target.startsWith("../") || target === "..") return null;
  if (target.endsWith(".js")) target = `${target.slice(0, -3)}.ts`;
  else if (target.endsWith(".mjs")) target = `${target.slice(0, -4)}.mts`;
  return target;
}

/**
 * The rule violations of one module. `rel` is its path under src/ (posix), `text` its source.
 * Each violation reads "src/<file>:<line>: imports '<spec>': <why>".
 */
function checkModule(rel: string, text: string): string[] {
  const v: string[] = [];
  const fromLevel = levelOf(rel);
  if (fromLevel === null)
    v.push(
      `src/${rel}: is in no known layer (top-level '${rel.split("/")[0]}'); add it to LAYERS or SAME_LEVEL in test/layering.test.ts and ARCHITECTURE.md`,
    );
  const browserSafe = !isNodeOnly(rel);
  for (const imp of readImports(rel, text)) {
    const at = `src/${rel}:${imp.line}: imports '${imp.spec}'${imp.typeOnly ? " (type-only)" : imp.kind === "dynamic" ? " (dynamic)" : ""}`;
    if (isBuiltin(imp.spec)) {
      if (browserSafe && !imp.typeOnly)
        v.push(`${at}: a node builtin in a browser-safe module (only node-only modules may use them)`);
      continue;
    }
    if (!imp.spec.startsWith(".")) continue; // a package dependency: not a layering question
    const target = resolveRel(rel, imp.spec);
    if (target === null) {
      v.push(`${at}: resolves outside src/`);
      continue;
    }
    const toLevel = levelOf(target);
    const kernelsToCore = rel.startsWith("kernels/") && target.startsWith("core/");
    // kernels → core is upward but allowed for types (and the few values listed above): checked just below.
    if (fromLevel !== null && toLevel !== null && toLevel < fromLevel && !kernelsToCore)
      v.push(`${at}: ${layerName(rel)} may not import upward from ${layerName(target)} (src/${target})`);
    if (toLevel === null) v.push(`${at}: src/${target} is in no known layer`);
    // kernels/* implement core's Backend and take only types from core.
    if (kernelsToCore && !imp.typeOnly) {
      const allowed = KERNEL_VALUE_IMPORTS[target] ?? [];
      const names = imp.valueNames;
      const extra = names === null ? null : names.filter((n) => !allowed.includes(n));
      if (extra === null || extra.length > 0)
        v.push(
          `${at}: kernels may import only types from core${
            extra ? ` (value import of ${extra.join(", ")})` : ` (${imp.kind} import of the whole module)`
          }; allowed values: dropoutUniform and UNARY_OPS (core/backend.ts), bf16ToF32 (core/dtype.ts)`,
        );
    }
    // core's only way down into kernels is its default backend, kernels/ref.
    if (
      rel.startsWith("core/") &&
      target.startsWith("kernels/") &&
      !target.startsWith("kernels/ref/") &&
      !imp.typeOnly
    )
      v.push(`${at}: core may import only kernels/ref (the default backend) from kernels`);
    // Browser-safe code must not load node-only modules eagerly; a dynamic import() from
    // selection code (loaded only once Node is known to be there) is fine.
    if (browserSafe && isNodeOnly(target) && !imp.typeOnly && imp.kind !== "dynamic")
      v.push(`${at}: browser-safe module statically imports node-only src/${target}`);
  }
  return v;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

describe("layering: the rule checker itself", () => {
  const flag = (rel: string, text: string) => checkModule(rel, text);
  test("downward and same-layer imports pass", () => {
    assert.deepEqual(flag("models/a.ts", 'import { x } from "../nn/m.js";\nimport "./b.js";'), []);
    assert.deepEqual(flag("io/a.ts", 'import { t } from "../tokenizer/tokenizer.js";'), []);
    assert.deepEqual(flag("core/engine.ts", 'import { refBackend } from "../kernels/ref/index.js";'), []);
  });
  test("upward imports fail, also when type-only", () => {
    assert.equal(flag("nn/a.ts", 'import { Llama } from "../models/llama/model.js";').length, 1);
    assert.equal(flag("core/a.ts", 'import type { M } from "../nn/module.js";').length, 1);
    assert.equal(flag("io/a.ts", 'export { x } from "../index.js";').length, 1);
  });
  test("kernels take only types from core, plus the two helpers", () => {
    assert.deepEqual(
      flag("kernels/ref/a.ts", 'import type { FloatArray } from "../../core/backend.js";'),
      [],
    );
    assert.deepEqual(
      flag("kernels/ref/a.ts", 'import { dropoutUniform, type FloatArray } from "../../core/backend.js";'),
      [],
    );
    assert.deepEqual(flag("kernels/ref/a.ts", 'import { bf16ToF32 } from "../../core/dtype.js";'), []);
    assert.equal(flag("kernels/ref/a.ts", 'import { f32ToBf16 } from "../../core/dtype.js";').length, 1);
    assert.equal(flag("kernels/ref/a.ts", 'import { empty } from "../../core/tensor.js";').length, 1);
    assert.equal(flag("kernels/ref/a.ts", 'import * as C from "../../core/index.js";').length, 1);
    assert.equal(flag("kernels/ref/a.ts", 'const c = await import("../../core/engine.js");').length, 1);
  });
  test("core reaches kernels only through kernels/ref", () => {
    assert.ok(flag("core/a.ts", 'import { n } from "../kernels/native/index.js";').length >= 1);
  });
  test("browser-safe modules: no node builtins, no static node-only imports", () => {
    assert.equal(flag("nn/a.ts", 'import { readFileSync } from "node:fs";').length, 1);
    assert.equal(flag("nn/a.ts", 'import { join } from "path";').length, 1);
    assert.equal(flag("nn/a.ts", 'const fs = require("fs");').length, 1);
    assert.deepEqual(flag("nn/a.ts", 'import type { Stats } from "node:fs";'), []);
    assert.equal(flag("models/a.ts", 'import { open } from "../io/node/index.js";').length, 1);
    assert.deepEqual(flag("models/a.ts", 'const m = await import("../io/node/index.js");'), []);
    assert.deepEqual(flag("io/node/a.ts", 'import { readFileSync } from "node:fs";'), []);
    // kernels/wasm is browser-safe (a page instantiates it from bytes); only its node/ folder reads files.
    assert.equal(flag("kernels/wasm/backend.ts", 'import { readFile } from "node:fs/promises";').length, 1);
    assert.equal(
      flag("kernels/wasm/index.ts", 'export { loadWasmBackend } from "./node/load.js";').length,
      1,
    );
    assert.deepEqual(flag("kernels/wasm/node/load.ts", 'import { readFile } from "node:fs/promises";'), []);
    assert.deepEqual(flag("kernels/select.ts", 'const w = await import("./wasm/node/load.js");'), []);
    assert.deepEqual(flag("data/corpora.ts", 'import { createRequire } from "node:module";'), []);
    assert.deepEqual(flag("node.ts", 'export { selectBackend } from "./kernels/select.js";'), []);
    assert.equal(flag("index.ts", 'export { selectBackend } from "./kernels/select.js";').length, 1);
  });
  test("multi-line imports are read", () => {
    const text = 'import {\n  a,\n  b,\n} from "../models/x.js";\n';
    assert.equal(flag("nn/a.ts", text).length, 1);
  });
  test("unknown top-level directories are reported", () => {
    assert.equal(flag("misc/a.ts", "").length, 1);
  });
});

describe("layering: src/ follows ARCHITECTURE.md", () => {
  test("every module imports only what its layer allows", (t) => {
    const srcDir = join(repoRoot(), "src");
    const files = tsFiles(srcDir);
    assert.ok(files.length > 0, "no .ts files under src/");
    const violations: string[] = [];
    for (const f of files) {
      const rel = relative(srcDir, f).split(sep).join("/");
      violations.push(...checkModule(rel, readFileSync(f, "utf8")));
    }
    for (const line of violations) t.diagnostic(line);
    assert.equal(
      violations.length,
      0,
      `${violations.length} layering violation(s) in ${files.length} files:\n  ${violations.join("\n  ")}`,
    );
  });
});
