// Training-step benchmark: LoRA fine-tuning tokens/s of lorakit (native and, optionally,
// reference kernels) and of PyTorch 1.13 side by side in one run, same model, batch,
// sequence, rank, optimizer and threads. Prints a table with the ratio and the model-FLOPs
// utilisation (analytic FLOPs of a step / time / the machine's FMA peak measured now).
//
//   npm run build && node dist/bench/train.js [--threads 2] [--steps 5] [--ref] [--no-torch] [--json]
//
// PyTorch gets its best settings (ARCHITECTURE.md): OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
// unset and glibc's mmap/trim thresholds raised, for its process only.
import { spawnSync } from "node:child_process";
import type { Backend } from "../src/core/backend.js";
import { loadAddon } from "../src/kernels/native/loader.js";
import { refBackend } from "../src/kernels/ref/index.js";
import { availableBackends } from "../src/kernels/select.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { timeLoraSteps } from "./lora-step.js";
import { torchPeerEnv, torchPeerScript } from "./torch-peer.js";

const argv = process.argv.slice(2);
const flag = (n: string) => argv.includes(`--${n}`);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const threads = opt("threads", 2);
const steps = opt("steps", 5);
const SHAPE = {
  hidden: 512,
  layers: 4,
  intermediate: 1408,
  vocab: 4096,
  heads: 8,
  kv_heads: 2,
  batch: 4,
  seq: 256,
  r: 16,
  alpha: 32,
};
const {
  hidden: C,
  layers: L,
  intermediate: I,
  vocab: V,
  heads: H,
  kv_heads: HKV,
  batch: B,
  seq: T,
  r,
} = SHAPE;
const D = C / H;

/** Analytic FLOPs of one LoRA training step (frozen base: forward + input gradient only). */
function stepFlops(): number {
  const tok = B * T;
  const linearParams = L * (C * H * D + 2 * C * HKV * D + H * D * C + 3 * C * I) + C * V;
  const loraParams = L * r * (C + H * D + 2 * (C + HKV * D) + (H * D + C) + 2 * (C + I) + (I + C));
  const attn = L * B * H * T * T * D * 2 * 2; // QKᵀ and PV, forward, full square
  return tok * (4 * linearParams + 6 * loraParams) + attn * 3; // attention backward ≈ 2× forward
}

function lorakitStep(be: Backend): { seconds: number } {
  const cfg = parseLlamaConfig({
    model_type: "llama",
    vocab_size: V,
    hidden_size: C,
    intermediate_size: I,
    num_hidden_layers: L,
    num_attention_heads: H,
    num_key_value_heads: HKV,
    max_position_embeddings: 1024,
  });
  return timeLoraSteps(be, cfg, { r, alpha: SHAPE.alpha, lr: 1e-4, batch: B, seq: T, steps });
}

function torchStep(): { seconds: number; version: string } | { error: string } {
  const script = torchPeerScript("train_torch.py");
  const env = torchPeerEnv(threads);
  const r = spawnSync("/usr/bin/python3", [script, JSON.stringify({ ...SHAPE, threads, steps, warmup: 1 })], {
    env,
    encoding: "utf8",
  });
  if (r.status !== 0)
    return { error: (r.stderr || r.error?.message || "failed").trim().split("\n").pop() ?? "failed" };
  const j = JSON.parse(r.stdout.trim().split("\n").pop()!);
  return { seconds: j.seconds_per_step, version: j.torch };
}

const addon = loadAddon();
const peak = "addon" in addon ? addon.addon.fmaPeak(threads, 300) : Number.NaN;
const flops = stepFlops();
const tokens = B * T;
const rows: { engine: string; seconds: number }[] = [];
const native = (await availableBackends()).find((b) => b.name === "native");
if (native) {
  (native as Backend & { setThreads?: (n: number) => void }).setThreads?.(threads);
  if ("addon" in addon) addon.addon.setThreads(threads);
  rows.push({ engine: "lorakit native", ...lorakitStep(native) });
}
if (flag("ref") || !native) rows.push({ engine: "lorakit ref (TypeScript)", ...lorakitStep(refBackend) });
let torch: ReturnType<typeof torchStep> | null = null;
if (!flag("no-torch")) {
  torch = torchStep();
  if ("seconds" in torch) rows.push({ engine: `PyTorch ${torch.version}`, seconds: torch.seconds });
}
const torchRow = rows.find((x) => x.engine.startsWith("PyTorch"));
const out = rows.map((x) => ({
  engine: x.engine,
  threads,
  seconds_per_step: x.seconds,
  tokens_per_second: tokens / x.seconds,
  gflops: flops / x.seconds / 1e9,
  mfu: flops / x.seconds / 1e9 / peak,
  vs_pytorch: torchRow ? torchRow.seconds / x.seconds : null,
}));
if (flag("json")) for (const o of out) console.log(JSON.stringify({ ...o, peak_gflops: peak, shape: SHAPE }));
else {
  console.log(
    `LoRA training step: hidden ${C}, ${L} layers, intermediate ${I}, vocab ${V}, heads ${H}/${HKV}, batch ${B}×${T}, r=${r} all-linear, AdamW; ${threads} thread(s); FMA peak ${peak.toFixed(0)} GFLOP/s; ${(flops / 1e9).toFixed(1)} GFLOP per step`,
  );
  console.log("engine                      | s/step | tokens/s | GFLOP/s | MFU   | vs PyTorch");
  for (const o of out)
    console.log(
      `${o.engine.padEnd(27)} | ${o.seconds_per_step.toFixed(3).padStart(6)} | ${o.tokens_per_second.toFixed(0).padStart(8)} | ${o.gflops.toFixed(1).padStart(7)} | ${(100 * o.mfu).toFixed(1).padStart(4)}% | ${o.vs_pytorch === null ? "-" : `${o.vs_pytorch.toFixed(2)}×`}`,
    );
  if (torch && "error" in torch) console.log(`(PyTorch peer not run: ${torch.error})`);
}
