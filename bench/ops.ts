// Kernel benchmark: one row per (op, backend) with the median time and its throughput
// (GFLOP/s for compute-bound kernels, GB/s of f32 traffic for the rest). f32 only.
// Run: npm run build && npm run bench:ops   (about 10–20 s on the reference backend)
import type { AttentionParams, Backend } from "../src/core/backend.js";
import { refBackend } from "../src/kernels/ref/index.js";
import { availableBackends } from "../src/kernels/select.js";

// ─────────────────────────────────────────────────────────────────────────────────────
// BACKENDS MEASURED. Add a backend here; an entry that is null (an optional backend that
// failed to load, e.g. `await loadNative().catch(() => null)`) is skipped.
const BACKENDS: (Backend | null)[] = [
  refBackend,
  (await availableBackends()).find((b) => b.name === "native") ?? null,
];
// ─────────────────────────────────────────────────────────────────────────────────────

interface Case {
  op: string;
  shape: string;
  /** Work per call: flops when `unit` is GFLOP/s, bytes moved when GB/s. */
  work: number;
  unit: "GFLOP/s" | "GB/s";
  /** Allocates inputs for backend `be` and returns one call of the kernel. */
  setup(be: Backend): () => void;
}

function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = lo + ((hi - lo) * s) / 4294967296;
  }
  return a;
}

const F = 4; // bytes per f32

function gemmCase(transB: boolean): Case {
  const n = 512;
  return {
    op: transB ? "gemm A·Bᵀ" : "gemm A·B",
    shape: `${n}×${n}×${n}`,
    work: 2 * n ** 3,
    unit: "GFLOP/s",
    setup(be) {
      const a = rand(n * n, 1);
      const b = rand(n * n, 2);
      const c = new Float32Array(n * n);
      const p = {
        transA: false,
        transB,
        m: n,
        n,
        k: n,
        batch: 1,
        a,
        strideA: 0,
        b,
        strideB: 0,
        c,
        strideC: 0,
        alpha: 1,
        beta: 0,
      };
      return () => be.gemm(p);
    },
  };
}

const [N, C] = [256, 4096];
const NC = N * C;
const ROWS = `${N}×${C}`;

function attentionCase(): Case {
  const [B, T, H, D] = [1, 256, 8, 64];
  const pairs = B * H * ((T * (T + 1)) / 2);
  return {
    op: "attention fwd+bwd",
    shape: `B${B} T${T} H${H} D${D} causal`,
    // forward: q·k and p·v (4D per pair); backward: q·k, dout·v, dq, dk, dv (10D per pair)
    work: 14 * D * pairs,
    unit: "GFLOP/s",
    setup(be) {
      const n = B * T * H * D;
      const p: AttentionParams = {
        q: rand(n, 1),
        k: rand(n, 2),
        v: rand(n, 3),
        B,
        T,
        S: T,
        H,
        Hkv: H,
        D,
        kvCapacity: T,
        scale: 1 / Math.sqrt(D),
        offset: 0,
        causal: true,
      };
      const out = new Float32Array(n);
      const lse = new Float32Array(B * H * T);
      const dout = rand(n, 4);
      const dq = new Float32Array(n);
      const dk = new Float32Array(n);
      const dv = new Float32Array(n);
      return () => {
        be.attention(p, out, lse);
        be.attentionBackward(p, out, lse, dout, dq, dk, dv);
      };
    },
  };
}

const CASES: Case[] = [
  gemmCase(false),
  gemmCase(true),
  {
    op: "binary add",
    shape: ROWS,
    work: 3 * NC * F,
    unit: "GB/s",
    setup(be) {
      const a = rand(NC, 1);
      const b = rand(NC, 2);
      const out = new Float32Array(NC);
      return () => be.binary("add", a, [N, C], b, [N, C], out, [N, C]);
    },
  },
  {
    op: "binary add (row bcast)",
    shape: `${ROWS} + 1×${C}`,
    work: 2 * NC * F,
    unit: "GB/s",
    setup(be) {
      const a = rand(NC, 1);
      const b = rand(C, 2);
      const out = new Float32Array(NC);
      return () => be.binary("add", a, [N, C], b, [1, C], out, [N, C]);
    },
  },
  {
    op: "unary silu",
    shape: ROWS,
    work: 2 * NC * F,
    unit: "GB/s",
    setup(be) {
      const x = rand(NC, 1);
      const out = new Float32Array(NC);
      return () => be.unary("silu", x, out, 0);
    },
  },
  {
    op: "softmax",
    shape: ROWS,
    work: 2 * NC * F,
    unit: "GB/s",
    setup(be) {
      const x = rand(NC, 1, -5, 5);
      const out = new Float32Array(NC);
      return () => be.softmax(x, N, C, out);
    },
  },
  {
    op: "crossEntropy fwd+bwd",
    shape: ROWS,
    work: 3 * NC * F,
    unit: "GB/s",
    setup(be) {
      const x = rand(NC, 1, -5, 5);
      const targets = new Int32Array(N).map((_, i) => (i * 7919) % C);
      const loss = new Float32Array(N);
      const lse = new Float32Array(N);
      const scale = new Float32Array(N).fill(1 / N);
      const dx = new Float32Array(NC);
      return () => {
        be.crossEntropy(x, targets, N, C, -100, loss, lse);
        be.crossEntropyBackward(x, targets, lse, scale, N, C, -100, dx, false);
      };
    },
  },
  {
    op: "rmsNorm",
    shape: ROWS,
    work: 2 * NC * F,
    unit: "GB/s",
    setup(be) {
      const x = rand(NC, 1);
      const w = rand(C, 2);
      const y = new Float32Array(NC);
      const rstd = new Float32Array(N);
      return () => be.rmsNorm(x, w, N, C, 1e-5, y, rstd);
    },
  },
  {
    op: "rope",
    shape: "B1 T256 H32 D128",
    work: 2 * NC * F,
    unit: "GB/s",
    setup(be) {
      const [B, T, H, D] = [1, 256, 32, 128];
      const x = rand(B * T * H * D, 1);
      const cos = rand((T * D) / 2, 2);
      const sin = rand((T * D) / 2, 3);
      const out = new Float32Array(x.length);
      return () => be.rope(x, cos, sin, B, T, H, D, false, out);
    },
  },
  attentionCase(),
  {
    op: "adamw",
    shape: "1M params",
    work: 7 * 2 ** 20 * F,
    unit: "GB/s",
    setup(be) {
      const n = 2 ** 20;
      const param = rand(n, 1);
      const grad = rand(n, 2);
      const m = new Float32Array(n);
      const v = new Float32Array(n);
      let step = 0;
      return () =>
        be.adamw({
          param,
          grad,
          m,
          v,
          lr: 1e-3,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0.01,
          step: ++step,
        });
    },
  },
];

/** Median milliseconds per call: one warm-up, then at least 3 calls and about 0.4 s. */
function time(fn: () => void): number {
  fn();
  const ms: number[] = [];
  const start = performance.now();
  while (ms.length < 3 || (performance.now() - start < 400 && ms.length < 100)) {
    const t = performance.now();
    fn();
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  return ms[ms.length >> 1];
}

const header = ["op", "shape", "backend", "ms", "throughput"];
const rows: string[][] = [];
for (const c of CASES) {
  for (const be of BACKENDS) {
    if (!be) continue;
    const ms = time(c.setup(be));
    const rate = c.work / (ms * 1e6);
    rows.push([c.op, c.shape, be.name, ms.toFixed(2), `${rate.toFixed(2)} ${c.unit}`]);
  }
}
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r: string[]) =>
  r.map((v, i) => (i >= 3 ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join("  ");
console.log(line(header));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const r of rows) console.log(line(r));
