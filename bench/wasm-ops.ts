// The Backend ops that were the reference's in the wasm backend, each timed on the reference
// and on wasm (1 thread, and --threads N): median microseconds per call over interleaved
// rounds (ref, wasm 1, wasm N, ref, …, so a busy neighbour slows all alike), and the ratio
// ref / wasm. The last rows time the ops that stay on the reference (gather, scatterAdd, where,
// fill) against what wasm would have to do at least for them: copy the operands into its
// memory and the result back out (arena copies, no kernel). Some calls of the listed ops go
// to the reference too (layout.ts, unary.ts): the rows that show ref/wasm near 1 on both.
//
//   npm run build && node dist/bench/wasm-ops.js [--threads 2] [--rounds 15] [--json]
import type { Backend, Nf4Weight } from "../src/core/backend.js";
import { Rng } from "../src/index.js";
import { refBackend } from "../src/kernels/ref/index.js";
import { loadNodeWasmBackend } from "../src/kernels/wasm/node/load.js";
import { NF4_CODE } from "../src/quant/nf4.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const threads = opt("threads", 2);
const rounds = opt("rounds", 15);
const json = argv.includes("--json");

const one = await loadNodeWasmBackend({ threads: 1 });
if ("error" in one) throw one.error;
const many = await loadNodeWasmBackend({ threads });
if ("error" in many) throw many.error;
const columns: [string, Backend][] = [
  ["ref", refBackend],
  ["wasm 1", one.handle.backend],
  [`wasm ${threads}`, many.handle.backend],
];

const rng = new Rng(7);
function rand(n: number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.uniform();
  return a;
}

interface Case {
  name: string;
  /** One call on `be` (inputs made once, outside the timing). */
  call(be: Backend): () => void;
}

// Activation-sized operands: one layer of the demo model's 8×128 batch (1024 rows) at C=352,
// and a 0.5B-model MLP width (1024 × 4864).
const N = 1024 * 4864;
const x = rand(N, -4, 4);
const xPos = rand(N, 0.1, 3);
const y = new Float32Array(N);
const dy = rand(N);
const dx = new Float32Array(N);
const cases: Case[] = [];
for (const op of ["exp", "log", "tanh", "sigmoid", "silu", "gelu_tanh", "gelu_erf", "pow"] as const) {
  const input = op === "log" || op === "pow" ? xPos : x;
  cases.push({ name: `unary ${op} 1024×4864`, call: (be) => () => be.unary(op, input, y, 2.5) });
}
for (const op of ["silu", "gelu_tanh", "gelu_erf", "pow"] as const) {
  refBackend.unary(op, op === "pow" ? xPos : x, y, 2.5);
  const yy = y.slice();
  cases.push({
    name: `unaryBackward ${op} 1024×4864`,
    call: (be) => () => be.unaryBackward(op, op === "pow" ? xPos : x, yy, dy, dx, 2.5, true),
  });
}
const red = new Float32Array(N);
cases.push({
  name: "reduce sum [1024,4864] over [1]",
  call: (be) => () => be.reduce("sum", x, [1024, 4864], [1], red),
});
cases.push({
  name: "reduce sum [1024,4864] over [0]",
  call: (be) => () => be.reduce("sum", x, [1024, 4864], [0], red),
});
cases.push({
  name: "reduce max [8,128,4864] over [0,1]",
  call: (be) => () => be.reduce("max", x, [8, 128, 4864], [0, 1], red),
});
const perm = new Float32Array(N);
cases.push({
  name: "permute [8,128,14,64]→[8,14,128,64]",
  call: (be) => () => be.permute(x.subarray(0, 8 * 128 * 14 * 64), [8, 128, 14, 64], [0, 2, 1, 3], perm),
});
cases.push({
  name: "permute [1024,4864] by [1,0]",
  call: (be) => () => be.permute(x, [1024, 4864], [1, 0], perm),
});
cases.push({
  name: "permute [8,128,14,64] by [0,2,3,1]",
  call: (be) => () => be.permute(x.subarray(0, 8 * 128 * 14 * 64), [8, 128, 14, 64], [0, 2, 3, 1], perm),
});
const row = rand(4864);
cases.push({
  name: "broadcastTo [1,4864]→[1024,4864]",
  call: (be) => () => be.broadcastTo(row, [1, 4864], perm, [1024, 4864]),
});
const col = rand(1024);
cases.push({
  name: "broadcastTo [1024,1]→[1024,4864]",
  call: (be) => () => be.broadcastTo(col, [1024, 1], perm, [1024, 4864]),
});
const half = rand(N / 2);
cases.push({
  name: "copyAxis accumulate 1024×2432 into 1024×4864",
  call: (be) => () => be.copyAxis(half, 1024, 2432, 1, 0, perm, 4864, 1216, 2432, true),
});
cases.push({
  name: "copyAxis copy 1024×2432 into 1024×4864",
  call: (be) => () => be.copyAxis(half, 1024, 2432, 1, 0, perm, 4864, 1216, 2432, false),
});
// A 896×4864 NF4 weight (a 0.5B model's MLP projection), block 64.
const O = 896;
const I = 4864;
const w: Nf4Weight = {
  packed: Uint8Array.from({ length: (O * I) / 2 }, () => Math.floor(rng.uniform() * 256)),
  scales: rand((O * I) / 64, 0.01, 0.1),
  blocksize: 64,
  quantMap: NF4_CODE,
  outFeatures: O,
  inFeatures: I,
};
const deq = new Float32Array(1 << 18);
cases.push({
  name: "nf4Dequant 2¹⁸ elements (a panel)",
  call: (be) => () => be.nf4Dequant(w, 4096, 1 << 18, deq),
});
const q = Uint8Array.from({ length: (O * I) / 64 }, () => Math.floor(rng.uniform() * 256));
const code = rand(256);
const nested = rand(Math.ceil(q.length / 256));
const sc = new Float32Array(q.length);
cases.push({
  name: `nf4Scales ${q.length} blocks`,
  call: (be) => () => be.nf4Scales(q, code, nested, 256, 0.02, sc),
});
const cond = Uint8Array.from({ length: N }, () => (rng.uniform() > 0.5 ? 1 : 0));
cases.push({ name: "where 1024×4864", call: (be) => () => be.where(cond, x, dy, y) });
const a16 = new Float32Array(16 * 1024);
cases.push({
  name: "nf4Gemm forward 16 rows × 896×4864",
  call: (be) => () => be.nf4Gemm({ backward: false, rows: 16, a: rand(16 * I), w, c: a16, beta: 0 }),
});

/** Median microseconds of each case on each column, rounds interleaved. */
function measure(cs: Case): number[] {
  const fns = columns.map(([, be]) => cs.call(be));
  for (const f of fns) f();
  const times: number[][] = columns.map(() => []);
  for (let r = 0; r < rounds; r++)
    for (const [i, f] of fns.entries()) {
      const t0 = performance.now();
      f();
      times[i].push((performance.now() - t0) * 1000);
    }
  return times.map((t) => t.sort((p, q) => p - q)[Math.floor(t.length / 2)]);
}

if (!json)
  console.log(
    `${"op".padEnd(46)} | ${columns.map(([n]) => n.padStart(9)).join(" | ")} | ref/wasm1 | ref/wasm${threads}  (µs, median of ${rounds})`,
  );
for (const cs of cases) {
  const us = measure(cs);
  if (json)
    console.log(
      JSON.stringify({ op: cs.name, threads, us: Object.fromEntries(columns.map(([n], i) => [n, us[i]])) }),
    );
  else
    console.log(
      `${cs.name.padEnd(46)} | ${us.map((u) => u.toFixed(0).padStart(9)).join(" | ")} | ${(us[0] / us[1]).toFixed(2).padStart(9)} | ${(us[0] / us[2]).toFixed(2).padStart(9)}`,
    );
}

// The ops that stay on the reference: their time against the arena copies wasm would need
// at least (operands in, result out; measured as TypedArray copies into a fresh buffer).
const V = 32000;
const C = 896;
const table = rand(V * C);
const idx = Int32Array.from({ length: 1024 }, () => Math.floor(rng.uniform() * V));
const g = new Float32Array(1024 * C);
const scratch = new Float32Array(V * C + 2 * N);
const stay: [string, () => void, () => void][] = [
  [
    "gather 1024 rows of 32000×896",
    () => refBackend.gather(table, idx, C, g),
    () => {
      scratch.set(table);
      g.set(scratch.subarray(0, g.length));
    },
  ],
  [
    "scatterAdd 1024 rows into 32000×896",
    () => refBackend.scatterAdd(g, idx, C, table),
    () => {
      scratch.set(table);
      scratch.set(g, V * C);
      table.set(scratch.subarray(0, V * C));
    },
  ],
  ["fill 1024×4864", () => refBackend.fill(y, 1.5), () => y.set(scratch.subarray(0, N))],
];
if (!json) console.log(`\n${"stays on ref".padEnd(46)} | ${"ref".padStart(9)} | wasm copies alone (µs)`);
for (const [name, refCall, copies] of stay) {
  const t: number[][] = [[], []];
  for (let r = 0; r < rounds; r++)
    for (const [i, f] of [refCall, copies].entries()) {
      const t0 = performance.now();
      f();
      t[i].push((performance.now() - t0) * 1000);
    }
  const [a, b] = t.map((s) => s.sort((p, q) => p - q)[Math.floor(s.length / 2)]);
  if (json) console.log(JSON.stringify({ op: name, ref_us: a, copies_us: b }));
  else console.log(`${name.padEnd(46)} | ${a.toFixed(0).padStart(9)} | ${b.toFixed(0).padStart(9)}`);
}
one.handle.dispose();
many.handle.dispose();
