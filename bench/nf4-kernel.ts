// The prepacked NF4 decode kernel alone (micro benchmark): the 125M shape's decoder weights as
// random NF4 codes (blocksize 64), multiplied by 1, 2, 4 and 8 rows through nf4GemmPacked —
// the decode kernel, compute-bound where bf16 and f32 decode are bound by memory — in GB/s of
// codes read (median of the interleaved rounds). `--against FILE` runs another build's
// lorakit_native.node in the same rounds, in turns with this one, and prints the ratio.
//
//   npm run build && node dist/bench/nf4-kernel.js [--threads N] [--rounds 15] [--against FILE]
import { createRequire } from "node:module";
import { cpus } from "node:os";
import { resolve } from "node:path";
import { alignedArrays } from "../src/kernels/native/aligned.js";
import { loadAddon } from "../src/kernels/native/loader.js";
import type { Nf4Addon } from "../src/kernels/native/nf4.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { BENCH_125M_CONFIG } from "./scale/shapes.js";

/** The addon functions this benchmark calls (both present wherever the NF4 kernels are). */
type Nf4Kernels = Required<Pick<Nf4Addon, "nf4Pack" | "nf4GemmPacked">> & { setThreads(n: number): void };

const argv = process.argv.slice(2);
const opt = (n: string, d: string) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? argv[i + 1] : d;
};
const THREADS = Number(opt("threads", String(cpus().length)));
const ROUNDS = Number(opt("rounds", "15"));
const AGAINST = argv.includes("--against") ? resolve(opt("against", "")) : null;

const loaded = loadAddon();
if (!("addon" in loaded)) throw new Error("bench/nf4-kernel needs the native addon (npm run build:native)");
const builds: { name: string; addon: Nf4Kernels }[] = [
  { name: "this build", addon: loaded.addon as unknown as Nf4Kernels },
];
if (AGAINST) builds.push({ name: "--against", addon: createRequire(import.meta.url)(AGAINST) as Nf4Kernels });
for (const b of builds) b.addon.setThreads(THREADS);

let seed = 7;
const rand = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296;
};
const BS = 64;
const qmap = Float32Array.from({ length: 16 }, (_, i) => (i - 7.5) / 7.5);
// Every decoder linear of the 125M shape, [out, in].
const cfg = parseLlamaConfig(BENCH_125M_CONFIG);
const [H, I] = [cfg.hiddenSize, cfg.intermediateSize];
const [q, kv] = [cfg.numAttentionHeads * cfg.headDim, cfg.numKeyValueHeads * cfg.headDim];
const shapes = Array.from({ length: cfg.numHiddenLayers }, (): [number, number][] => [
  [q, H],
  [kv, H],
  [kv, H],
  [H, q],
  [I, H],
  [I, H],
  [H, I],
]).flat();
const weights = builds.map(({ addon }) =>
  shapes.map(([out, inF]) => {
    const packed = Uint8Array.from({ length: (out * inF) / 2 }, () => (rand() * 256) | 0);
    const absmax = Float32Array.from({ length: (out * inF) / BS }, rand);
    const panels = Math.ceil(out / 16);
    // As the backend's nf4Pack allocates them: 64-byte aligned where the build can.
    const arrays = alignedArrays(addon);
    const codes = arrays.u8(panels * 8 * inF);
    const pscales = arrays.f32((panels * 16 * inF) / BS);
    addon.nf4Pack(packed, absmax, BS, out, inF, codes, pscales);
    return { out, inF, codes, pscales };
  }),
);
const codeBytes = shapes.reduce((s, [o, i]) => s + (o * i) / 2, 0);
const a = Float32Array.from({ length: 8 * 2048 }, rand);
const c = new Float32Array(8 * 2048);

console.log(
  `NF4 decode kernel: 125M shape's ${shapes.length} decoder weights, ${(codeBytes / 2 ** 20).toFixed(0)} MiB of codes, ${THREADS} threads, median of ${ROUNDS} interleaved rounds`,
);
console.log(`rows | ${builds.map((b) => `${b.name} GB/s`).join(" | ")}${AGAINST ? " | this build ×" : ""}`);
for (const rows of [1, 2, 4, 8]) {
  const step = (i: number) => {
    const t0 = performance.now();
    for (const w of weights[i])
      builds[i].addon.nf4GemmPacked(false, rows, w.inF, w.out, a, w.codes, w.pscales, BS, qmap, c, 0);
    return performance.now() - t0;
  };
  const times = builds.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++)
    for (let j = 0; j < builds.length; j++) {
      const i = (r + j) % builds.length;
      times[i].push(step(i));
    }
  const med = times.map((t) => t.sort((x, y) => x - y)[t.length >> 1]);
  const gbs = med.map((ms) => (codeBytes / ms / 1e6).toFixed(1).padStart(12));
  console.log(
    `${String(rows).padStart(4)} | ${gbs.join(" | ")}${AGAINST ? ` | ${(med[1] / med[0]).toFixed(2)}×` : ""}`,
  );
}
