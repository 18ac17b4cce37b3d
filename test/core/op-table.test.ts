// Every differentiable op of src/ and where its backward is checked. The table is checked
// both ways against the source: every op name that src records in the graph (maybeRecord /
// record calls) has a row, and every row's test file runs a finite-difference gradcheck named
// after it (gradcheck() itself fails when the op it names is not in the graph it checks). An
// op whose input must be f32 (NF4) is checked against the op whose gradient it must equal.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { UNARY_OPS } from "../../src/core/backend.js";
import { repoRoot } from "../util/repo.js";

type Check = { gradcheck: string } | { equalsGradientOf: string; in: string };

const GRADCHECK = "test/core/gradcheck.test.ts";
const OP_TABLE: Record<string, Check> = {
  add: { gradcheck: GRADCHECK },
  sub: { gradcheck: GRADCHECK },
  mul: { gradcheck: GRADCHECK },
  div: { gradcheck: GRADCHECK },
  maximum: { gradcheck: GRADCHECK },
  ...Object.fromEntries(UNARY_OPS.map((op) => [op, { gradcheck: GRADCHECK }])),
  broadcastTo: { gradcheck: GRADCHECK },
  sum: { gradcheck: GRADCHECK },
  mean: { gradcheck: GRADCHECK },
  max: { gradcheck: GRADCHECK },
  reshape: { gradcheck: GRADCHECK },
  permute: { gradcheck: GRADCHECK },
  slice: { gradcheck: GRADCHECK },
  concat: { gradcheck: GRADCHECK },
  matmul: { gradcheck: GRADCHECK },
  linear: { gradcheck: GRADCHECK },
  embedding: { gradcheck: GRADCHECK },
  where: { gradcheck: GRADCHECK },
  scatterRows: { gradcheck: GRADCHECK },
  softmax: { gradcheck: GRADCHECK },
  logSoftmax: { gradcheck: GRADCHECK },
  crossEntropy: { gradcheck: GRADCHECK },
  rmsNorm: { gradcheck: GRADCHECK },
  rope: { gradcheck: GRADCHECK },
  attention: { gradcheck: GRADCHECK },
  siluMul: { gradcheck: GRADCHECK },
  dropout: { gradcheck: GRADCHECK },
  linearCrossEntropy: { gradcheck: "test/core/linear-cross-entropy.test.ts" },
  loraLinear: { gradcheck: "test/core/lora-linear.test.ts" },
  loraDelta: { gradcheck: "test/core/lora-linear.test.ts" },
  checkpoint: { gradcheck: "test/core/activation-checkpoint.test.ts" },
  linear4bit: { equalsGradientOf: "linear", in: "test/quant/linear4bit.test.ts" },
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** Op names src records: string literals passed to maybeRecord/record, `const op = "…"` in ops that pass `op`, and the unary ops. */
function recordedOps(): Set<string> {
  const ops = new Set<string>();
  for (const file of sources(join(repoRoot(), "src"))) {
    const text = readFileSync(file, "utf8");
    if (!/maybeRecord\(|\bop: "/.test(text)) continue;
    for (const m of text.matchAll(/maybeRecord\(\s*\w+,\s*"(\w+)"/g)) ops.add(m[1]);
    if (/maybeRecord\(\s*\w+,\s*op\b/.test(text))
      for (const m of text.matchAll(/const op = "(\w+)"/g)) ops.add(m[1]);
    for (const m of text.matchAll(/\.node = \{\s*op: "(\w+)"/g)) ops.add(m[1]);
  }
  // unaryOp(op, …) records whichever UNARY_OPS member it runs.
  for (const op of UNARY_OPS) ops.add(op);
  return ops;
}

describe("op table: every recorded op has its gradient checked", () => {
  const recorded = recordedOps();
  test("the scan finds the ops (a broken scan would pass everything)", () => {
    for (const op of ["matmul", "loraLinear", "checkpoint", "linear4bit", "exp"])
      assert.ok(recorded.has(op), op);
  });
  test("every op src records has a row", () => {
    const missing = [...recorded].filter((op) => !(op in OP_TABLE));
    assert.deepEqual(missing, [], `ops without a gradient check in OP_TABLE: ${missing.join(", ")}`);
  });
  test("every row names an op src records", () => {
    const stale = Object.keys(OP_TABLE).filter((op) => !recorded.has(op));
    assert.deepEqual(stale, [], `OP_TABLE rows for ops src no longer records: ${stale.join(", ")}`);
  });
  for (const [op, check] of Object.entries(OP_TABLE))
    test(`${op}: ${"gradcheck" in check ? `gradcheck in ${check.gradcheck}` : `equals ${check.equalsGradientOf}'s gradient in ${check.in}`}`, () => {
      if ("gradcheck" in check) {
        const text = readFileSync(join(repoRoot(), check.gradcheck), "utf8");
        // gradcheck("op…", …) directly, or a ["op", f] row of a table the file gradchecks by name.
        const named =
          new RegExp(`gradcheck\\(\\s*"${op}[ "]`).test(text) || new RegExp(`\\["${op}[ "]`).test(text);
        assert.ok(named && /gradcheck\(/.test(text), `${check.gradcheck} has no gradcheck of ${op}`);
      } else {
        const text = readFileSync(join(repoRoot(), check.in), "utf8");
        assert.ok(
          /backward\(/.test(text) && text.includes(check.equalsGradientOf),
          `${check.in} does not compare gradients`,
        );
      }
    });
});
