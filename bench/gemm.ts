// GEMM throughput of the native addon against the machine's FMA peak measured in the same
// run. `npm run bench:gemm` prints a table; `-- --json` prints one JSON object per line.
// Options: --threads 1,2   --quick (smaller shapes, fewer runs)   --only r=16 (shapes whose
// name contains the text)   --baseline PATH (another build of the addon, e.g. a copy of
// build/Release/lorakit_native.node from before a change: each case runs on both in turns,
// one repetition each, under the same load; the table adds its GFLOP/s, % peak and the ratio)
import { resolve } from "node:path";
import { loadAddon, loadAddonFrom, type NativeAddon } from "../src/kernels/native/loader.js";
import { cpuSeconds, perCpuSecond } from "./thread-cpu.js";

interface Case {
  name: string;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  bf16: boolean;
}

const args = process.argv.slice(2);
const json = args.includes("--json");
const quick = args.includes("--quick");
const tIdx = args.indexOf("--threads");
const oIdx = args.indexOf("--only");
const only = oIdx >= 0 ? args[oIdx + 1] : null;
const threadList = tIdx >= 0 ? args[tIdx + 1].split(",").map(Number) : [1, 2];
const bIdx = args.indexOf("--baseline");
const baselinePath = bIdx >= 0 ? resolve(args[bIdx + 1]) : null;

const cases: Case[] = [
  { name: "1024³ A·B", m: 1024, n: 1024, k: 1024, transA: false, transB: false, bf16: false },
  { name: "2048³ A·B", m: 2048, n: 2048, k: 2048, transA: false, transB: false, bf16: false },
  ...(quick
    ? []
    : [{ name: "4096³ A·B", m: 4096, n: 4096, k: 4096, transA: false, transB: false, bf16: false }]),
  { name: "X·Wᵀ 2048²·2048²", m: 2048, n: 2048, k: 2048, transA: false, transB: true, bf16: false },
  { name: "X·Wᵀ bf16 W", m: 2048, n: 2048, k: 2048, transA: false, transB: true, bf16: true },
  { name: "Xᵀ·dY 2048³ (dW)", m: 2048, n: 2048, k: 2048, transA: true, transB: false, bf16: false },
  { name: "X·Aᵀ r=16", m: 2048, n: 16, k: 2048, transA: false, transB: true, bf16: false },
  { name: "X·Aᵀ r=32", m: 2048, n: 32, k: 2048, transA: false, transB: true, bf16: false },
  { name: "X·Aᵀ r=40", m: 2048, n: 40, k: 2048, transA: false, transB: true, bf16: false },
  { name: "(XAᵀ)·Bᵀ r=16", m: 2048, n: 2048, k: 16, transA: false, transB: true, bf16: false },
  // A 128-token prefill's products on the 125M shape (row-major W; the prefill itself reads
  // prepacked panels: bench/prefill-split.ts): q/o, gate/up, down.
  { name: "prefill 128·768·768", m: 128, n: 768, k: 768, transA: false, transB: true, bf16: false },
  { name: "prefill 128·2048·768", m: 128, n: 2048, k: 768, transA: false, transB: true, bf16: false },
  { name: "prefill 128·768·2048", m: 128, n: 768, k: 2048, transA: false, transB: true, bf16: false },
  // LoRA backward shapes (G = dY 2048×2048, H = X·Aᵀ 2048×16).
  { name: "G·B r=16 (dH)", m: 2048, n: 16, k: 2048, transA: false, transB: false, bf16: false },
  { name: "Gᵀ·H r=16 (dB)", m: 2048, n: 16, k: 2048, transA: true, transB: false, bf16: false },
  { name: "dHᵀ·X r=16 (dA)", m: 16, n: 2048, k: 2048, transA: true, transB: false, bf16: false },
];

function randomF32(len: number): Float32Array {
  const x = new Float32Array(len);
  for (let i = 0; i < len; i++) x[i] = Math.random() * 2 - 1;
  return x;
}

function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = u[i] >>> 16;
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  return s[Math.floor(s.length / 2)];
}

function main(): void {
  const r = loadAddon();
  if ("error" in r) {
    console.error(`bench:gemm needs the native addon: ${r.error.message}`);
    process.exit(1);
  }
  const addon = r.addon;
  let base: NativeAddon | null = null;
  if (baselinePath !== null) {
    const b = loadAddonFrom(baselinePath);
    if ("error" in b) {
      console.error(`bench:gemm --baseline: ${b.error.message}`);
      process.exit(1);
    }
    base = b.addon;
  }
  const features = addon.cpuFeatures();
  const before = addon.getThreads();
  if (!json) {
    console.log(
      `native GEMM, path ${features.path} (best ${features.best}), GFLOP/s median; % of the FMA peak`,
    );
    console.log(
      "measured now with the same thread count; %cpu: the same in CPU seconds of this process (all threads),",
    );
    console.log("which other work on shared cores disturbs much less.\n");
    if (base !== null) console.log(`baseline: ${baselinePath} (run in turns with this build)\n`);
    console.log(
      `${"shape".padEnd(22)}${"threads".padStart(8)}${"ms".padStart(10)}${"GFLOP/s".padStart(10)}${"peak".padStart(8)}${"%peak".padStart(8)}${"%cpu".padStart(7)}${
        base !== null
          ? `${"base".padStart(8)}${"%peak".padStart(8)}${"%cpu".padStart(7)}${"ratio".padStart(8)}`
          : ""
      }`,
    );
  }
  for (const threads of threadList) {
    addon.setThreads(threads);
    base?.setThreads(threads);
    for (const cs of cases) {
      if (only !== null && !cs.name.includes(only)) continue;
      const { m, n, k } = cs;
      const a = randomF32(m * k);
      const b32 = randomF32(k * n);
      const b = cs.bf16 ? toBf16(b32) : b32;
      const c = new Float32Array(m * n);
      const flops = 2 * m * n * k;
      const call = () => addon.gemm(cs.transA, cs.transB, m, n, k, 1, a, 0, b, 0, c, 0, 1, 0);
      const callBase = () => base?.gemm(cs.transA, cs.transB, m, n, k, 1, a, 0, b, 0, c, 0, 1, 0);
      call();
      callBase();
      // The peak is measured right before each case: on a shared machine the load changes.
      // Both are also timed in CPU seconds of this process (all threads): a rate per
      // CPU-second falls much less than a wall-clock one when other work shares the cores.
      const [peak, peakCpu] = perCpuSecond(() => addon.fmaPeak(threads, 150));
      const times: number[] = [];
      const baseTimes: number[] = [];
      let cpu = 0;
      let baseCpu = 0;
      const reps = quick ? 3 : Math.max(3, Math.min(15, Math.round(1.5e10 / flops)));
      for (let i = 0; i < reps; i++) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        call();
        times.push(performance.now() - t0);
        cpu += cpuSeconds(c0);
        if (base !== null) {
          const c1 = process.cpuUsage();
          const t1 = performance.now();
          callBase();
          baseTimes.push(performance.now() - t1);
          baseCpu += cpuSeconds(c1);
        }
      }
      const ms = median(times);
      const gflops = flops / ms / 1e6;
      const pct = (100 * gflops) / peak;
      const pctCpu = (100 * (flops * reps)) / cpu / 1e9 / peakCpu;
      const baseMs = base !== null ? median(baseTimes) : null;
      const baseGflops = baseMs !== null ? flops / baseMs / 1e6 : null;
      const basePctCpu = base !== null ? (100 * (flops * reps)) / baseCpu / 1e9 / peakCpu : null;
      if (json) {
        console.log(
          JSON.stringify({
            shape: cs.name,
            m,
            n,
            k,
            transA: cs.transA,
            transB: cs.transB,
            bf16: cs.bf16,
            threads,
            path: features.path,
            ms: +ms.toFixed(3),
            gflops: +gflops.toFixed(1),
            peak_gflops: +peak.toFixed(1),
            pct_of_peak: +pct.toFixed(1),
            peak_gflops_per_cpu_second: +peakCpu.toFixed(1),
            pct_of_peak_cpu_time: +pctCpu.toFixed(1),
            ...(baseGflops !== null
              ? {
                  baseline_gflops: +baseGflops.toFixed(1),
                  baseline_pct_of_peak: +((100 * baseGflops) / peak).toFixed(1),
                  baseline_pct_of_peak_cpu_time: +(basePctCpu ?? 0).toFixed(1),
                }
              : {}),
          }),
        );
      } else {
        console.log(
          `${cs.name.padEnd(22)}${String(threads).padStart(8)}${ms.toFixed(2).padStart(10)}${gflops.toFixed(1).padStart(10)}${peak.toFixed(0).padStart(8)}${`${pct.toFixed(0)}%`.padStart(8)}${`${pctCpu.toFixed(0)}%`.padStart(7)}${
            baseGflops !== null
              ? `${baseGflops.toFixed(1).padStart(8)}${`${((100 * baseGflops) / peak).toFixed(0)}%`.padStart(8)}${`${(basePctCpu ?? 0).toFixed(0)}%`.padStart(7)}${(gflops / baseGflops).toFixed(2).padStart(8)}`
              : ""
          }`,
        );
      }
    }
  }
  addon.setThreads(before);
}

main();
