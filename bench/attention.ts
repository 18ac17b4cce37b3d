// The native attention forward alone, one thread, CPU milliseconds per call (CPU time is the
// steadier figure on a shared host): a 128-token causal prompt and a one-query decode step on
// the 125M shape (12 query heads over 4 KV heads, D = 64), and a decode step of bench/serve's
// model (8 over 4, D = 32). `--against FILE` loads another build of the addon (e.g. one built
// from an earlier commit) and runs it interleaved with this one, and checks both give the
// same bits.
//
//   npm run build && node dist/bench/attention.js [--against path/to/lorakit_native.node] [--json]
import { createRequire } from "node:module";
import { loadAddon } from "../src/kernels/native/loader.js";
import type { OpsAddon } from "../src/kernels/native/ops.js";

const argv = process.argv.slice(2);
const loaded = loadAddon();
if (!("addon" in loaded)) throw new Error("bench/attention needs the native addon (npm run build:native)");
const builds: [string, OpsAddon & { setThreads(n: number): void }][] = [
  ["this build", loaded.addon as unknown as OpsAddon & { setThreads(n: number): void }],
];
const ai = argv.indexOf("--against");
if (ai >= 0) builds.push([argv[ai + 1], createRequire(import.meta.url)(argv[ai + 1])]);
for (const [, b] of builds) b.setThreads(1);

interface Case {
  name: string;
  T: number;
  S: number;
  H: number;
  Hkv: number;
  D: number;
  calls: number;
}
const CASES: Case[] = [
  { name: "125M, 128-token causal prompt", T: 128, S: 128, H: 12, Hkv: 4, D: 64, calls: 100 },
  { name: "125M, decode over 700 keys", T: 1, S: 700, H: 12, Hkv: 4, D: 64, calls: 2000 },
  { name: "serve model, decode over 40 keys", T: 1, S: 40, H: 8, Hkv: 4, D: 32, calls: 20000 },
];

let seed = 1;
const rand = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
};
const randomF32 = (n: number) => Float32Array.from({ length: n }, rand);

const rows: Record<string, unknown>[] = [];
for (const c of CASES) {
  const q = randomF32(c.T * c.H * c.D);
  const k = randomF32(c.S * c.Hkv * c.D);
  const v = randomF32(c.S * c.Hkv * c.D);
  const best = builds.map(() => Number.POSITIVE_INFINITY);
  const outs = builds.map(() => new Float32Array(q.length));
  for (let round = 0; round < 3; round++)
    builds.forEach(([, b], i) => {
      const lse = new Float32Array(c.H * c.T);
      const c0 = process.cpuUsage();
      for (let n = 0; n < c.calls; n++)
        b.attention(
          q,
          k,
          v,
          1,
          c.T,
          c.S,
          c.H,
          c.Hkv,
          c.D,
          c.S,
          1 / Math.sqrt(c.D),
          c.S - c.T,
          true,
          outs[i],
          lse,
        );
      const u = process.cpuUsage(c0);
      best[i] = Math.min(best[i], (u.user + u.system) / 1000 / c.calls);
    });
  const same = outs.every((o) => o.every((x, j) => Object.is(x, outs[0][j])));
  rows.push({
    case: c.name,
    ...Object.fromEntries(builds.map(([name], i) => [`${name} cpu ms`, best[i]])),
    ...(builds.length > 1 ? { bit_identical: same } : {}),
  });
}
if (argv.includes("--json")) for (const r of rows) console.log(JSON.stringify(r));
else
  for (const r of rows)
    console.log(
      Object.entries(r)
        .map(([k, x]) => `${k}: ${typeof x === "number" ? x.toFixed(3) : x}`)
        .join(" | "),
    );
