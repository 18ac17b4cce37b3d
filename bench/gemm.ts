// GEMM throughput of the native addon against the machine's FMA peak measured in the same
// run. `npm run bench:gemm` prints a table; `-- --json` prints one JSON object per line.
// Options: --threads 1,2   --quick (smaller shapes, fewer runs)   --only r=16 (shapes whose
// name contains the text)   --baseline PATH (another build of the addon, e.g. a copy of
// build/Release/lorakit_native.node from before a change: each case runs on both in turns,
// one repetition each, under the same load; the table adds its GFLOP/s, % peak and the ratio)
// --torch (PyTorch from Debian's python3-torch on OpenBLAS, the same shapes and threads, in a
// peer process: each case alternates blocks of repetitions between the two; the table adds the
// peer's GFLOP/s, % of the same peak and lorakit's ratio to it; bf16 W has no peer there)
import { resolve } from "node:path";
import { loadAddon, loadAddonFrom, type NativeAddon } from "../src/kernels/native/loader.js";
import { cpuSeconds, perCpuSecond } from "./thread-cpu.js";
import { startTorchPeer, type TorchPeer } from "./torch-peer.js";

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
const withTorch = args.includes("--torch");
// Blocks of repetitions per case when a peer runs: its BLAS threads and ours take turns.
const PEER_ROUNDS = 3;

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

async function main(): Promise<void> {
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
  }
  for (const threads of threadList) {
    addon.setThreads(threads);
    base?.setThreads(threads);
    let peer: TorchPeer | null = null;
    if (withTorch) {
      try {
        peer = await startTorchPeer("gemm_torch.py", threads);
      } catch (e) {
        console.error(
          `bench:gemm --torch: ${(e as Error).message} (apt-get install -y python3-torch libopenblas0-pthread)`,
        );
        process.exit(1);
      }
    }
    if (!json) {
      if (peer !== null)
        console.log(
          `peer: PyTorch ${peer.hello.torch}, ${peer.hello.threads} thread(s), in turns with this build`,
        );
      console.log(
        `${"shape".padEnd(22)}${"threads".padStart(8)}${"ms".padStart(10)}${"GFLOP/s".padStart(10)}${"peak".padStart(8)}${"%peak".padStart(8)}${"%cpu".padStart(7)}${
          base !== null
            ? `${"base".padStart(8)}${"%peak".padStart(8)}${"%cpu".padStart(7)}${"ratio".padStart(8)}`
            : ""
        }${peer !== null ? `${"torch".padStart(8)}${"%peak".padStart(8)}${"%cpu".padStart(7)}${"ratio".padStart(8)}` : ""}`,
      );
    }
    for (const cs of cases) {
      if (only !== null && !cs.name.includes(only)) continue;
      await runCase(addon, base, peer, cs, threads, features.path);
    }
    peer?.close();
  }
  addon.setThreads(before);
}

interface Timing {
  times: number[];
  cpu: number;
}

function timeCalls(call: () => void, out: Timing): void {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  call();
  out.times.push(performance.now() - t0);
  out.cpu += cpuSeconds(c0);
}

async function runCase(
  addon: NativeAddon,
  base: NativeAddon | null,
  peer: TorchPeer | null,
  cs: Case,
  threads: number,
  path: string,
): Promise<void> {
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
  // PyTorch has no product of f32 X with bf16 W; that case runs without the peer.
  const withPeer = peer !== null && !cs.bf16;
  // The peak is measured right before each case: on a shared machine the load changes.
  // Both are also timed in CPU seconds of this process (all threads): a rate per
  // CPU-second falls much less than a wall-clock one when other work shares the cores.
  const [peak, peakCpu] = perCpuSecond(() => addon.fmaPeak(threads, 150));
  const ours: Timing = { times: [], cpu: 0 };
  const theirs: Timing = { times: [], cpu: 0 };
  const baseline: Timing = { times: [], cpu: 0 };
  const reps = quick ? 3 : Math.max(3, Math.min(15, Math.round(1.5e10 / flops)));
  const rounds = withPeer ? PEER_ROUNDS : 1;
  const perRound = Math.ceil(reps / rounds);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < perRound; i++) {
      timeCalls(call, ours);
      if (base !== null) timeCalls(callBase, baseline);
    }
    if (withPeer && peer !== null) {
      const r = await peer.ask(`${m} ${n} ${k} ${cs.transA ? 1 : 0} ${cs.transB ? 1 : 0} ${perRound}`);
      theirs.times.push(...(r.seconds as number[]).map((x) => x * 1e3));
      theirs.cpu += r.cpu_seconds as number;
      // OpenBLAS's idle workers spin ~0.1 s after a call before they sleep: let them.
      if (threads > 1) await new Promise((res) => setTimeout(res, 150));
    }
  }
  const rate = (t: Timing) => {
    if (t.times.length === 0) return null;
    const gflops = flops / median(t.times) / 1e6;
    return {
      ms: median(t.times),
      gflops,
      pct: (100 * gflops) / peak,
      pctCpu: (100 * (flops * t.times.length)) / t.cpu / 1e9 / peakCpu,
    };
  };
  const o = rate(ours);
  const bl = rate(baseline);
  const pr = rate(theirs);
  if (o === null) return;
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
        path,
        ms: +o.ms.toFixed(3),
        gflops: +o.gflops.toFixed(1),
        peak_gflops: +peak.toFixed(1),
        pct_of_peak: +o.pct.toFixed(1),
        peak_gflops_per_cpu_second: +peakCpu.toFixed(1),
        pct_of_peak_cpu_time: +o.pctCpu.toFixed(1),
        ...(bl !== null
          ? {
              baseline_gflops: +bl.gflops.toFixed(1),
              baseline_pct_of_peak: +bl.pct.toFixed(1),
              baseline_pct_of_peak_cpu_time: +bl.pctCpu.toFixed(1),
            }
          : {}),
        ...(pr !== null
          ? {
              torch_gflops: +pr.gflops.toFixed(1),
              torch_pct_of_peak: +pr.pct.toFixed(1),
              torch_pct_of_peak_cpu_time: +pr.pctCpu.toFixed(1),
            }
          : {}),
      }),
    );
    return;
  }
  const cols = (r: NonNullable<ReturnType<typeof rate>>) =>
    `${r.gflops.toFixed(1).padStart(8)}${`${r.pct.toFixed(0)}%`.padStart(8)}${`${r.pctCpu.toFixed(0)}%`.padStart(7)}${(o.gflops / r.gflops).toFixed(2).padStart(8)}`;
  console.log(
    `${cs.name.padEnd(22)}${String(threads).padStart(8)}${o.ms.toFixed(2).padStart(10)}${o.gflops.toFixed(1).padStart(10)}${peak.toFixed(0).padStart(8)}${`${o.pct.toFixed(0)}%`.padStart(8)}${`${o.pctCpu.toFixed(0)}%`.padStart(7)}${
      bl !== null ? cols(bl) : ""
    }${peer !== null ? (pr !== null ? cols(pr) : "—".padStart(8)) : ""}`,
  );
}

await main();
