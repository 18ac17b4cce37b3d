// How much of a training step the wasm backend still spends in the TypeScript reference's
// kernels: every Backend call is timed (wall clock on the calling thread, which also waits
// for the pool's workers) and filed under "wasm" or "ref" by where this build routes it (a
// method the wasm backend did not override is the reference's own function; unary and
// unaryBackward are filed per op by WASM_UNARY_OPS / WASM_UNARY_BACKWARD_OPS). Two steps:
//   lora    the demo model (models/demo-base/config.json, random weights), r=16 all-linear,
//           AdamW, B×T tokens (bench/lora-step.ts)
//   qlora   the same with every linear layer's base weight in NF4 (quantizeModelNf4)
// Prints one row per kernel (ms per step) and the ref share of each step.
//
//   npm run build && node dist/bench/wasm-ref-share.js [--threads 1] [--steps 3] [--batch 8] [--seq 128] [--json]
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend } from "../src/core/backend.js";
import {
  backward,
  clipGradNorm,
  crossEntropy,
  fromArray,
  Rng,
  reshape,
  setBackend,
  tidy,
} from "../src/index.js";
import { refBackend } from "../src/kernels/ref/index.js";
import { WASM_UNARY_BACKWARD_OPS, WASM_UNARY_OPS } from "../src/kernels/wasm/elementwise.js";
import { loadNodeWasmBackend } from "../src/kernels/wasm/node/load.js";
import type { LlamaConfig } from "../src/models/llama/config.js";
import { parseLlamaConfig } from "../src/models/llama/config.js";
import { LlamaForCausalLM } from "../src/models/llama/model.js";
import { AdamW } from "../src/optim/adamw.js";
import { getPeftModel } from "../src/peft/model.js";
import { quantizeModel } from "../src/quant/model.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const threads = opt("threads", 1);
const steps = opt("steps", 3);
const B = opt("batch", 8);
const T = opt("seq", 128);
const json = argv.includes("--json");

const r = await loadNodeWasmBackend({ threads });
if ("error" in r) throw r.error;
const wasm = r.handle.backend;

/** Milliseconds per kernel label over the timed region. */
const spent = new Map<string, { ms: number; calls: number; onRef: boolean }>();
let timing = false;

function where(method: string, args: unknown[]): { label: string; onRef: boolean } {
  if (method === "unary" || method === "unaryBackward") {
    const op = args[0] as string;
    const list: readonly string[] = method === "unary" ? WASM_UNARY_OPS : WASM_UNARY_BACKWARD_OPS;
    return { label: `${method} ${op}`, onRef: !list.includes(op) };
  }
  const own = (wasm as unknown as Record<string, unknown>)[method];
  return { label: method, onRef: own === (refBackend as unknown as Record<string, unknown>)[method] };
}

/** The wasm backend with every method timed (a copy: the backend itself is frozen). */
const timed = Object.fromEntries(
  Object.entries(wasm).map(([key, v]) => {
    if (typeof v !== "function") return [key, v];
    const fn = v as (...a: unknown[]) => unknown;
    return [
      key,
      (...args: unknown[]) => {
        if (!timing) return fn(...args);
        const t0 = performance.now();
        try {
          return fn(...args);
        } finally {
          const { label, onRef } = where(key, args);
          const e = spent.get(label) ?? { ms: 0, calls: 0, onRef };
          e.ms += performance.now() - t0;
          e.calls++;
          spent.set(label, e);
        }
      },
    ];
  }),
) as unknown as Backend;

/**
 * bench/lora-step.ts's step (random weights, r=16 all-linear, AdamW, clipping) with the
 * decoder linears in NF4 for qlora; `steps` timed steps after an untimed warm-up, whose
 * kernel calls `onWarm` starts counting. Returns the milliseconds of the timed steps and the last loss.
 */
function runSteps(
  be: Backend,
  cfg: LlamaConfig,
  nf4: boolean,
  onWarm: () => void,
): { ms: number; loss: number } {
  setBackend(be);
  const V = cfg.vocabSize;
  const model = new LlamaForCausalLM(cfg, { rng: new Rng(0) });
  if (nf4) quantizeModel(model);
  const pm = getPeftModel(model, { r: 16, loraAlpha: 32, targetModules: "all-linear" });
  const params = pm.trainableParameters();
  const optim = new AdamW(params, { lr: 1e-3, weightDecay: 0 });
  const rng = new Rng(1);
  const inputs = new Int32Array(B * T).map(() => rng.int(V));
  const targets = new Int32Array(B * T).map(() => rng.int(V));
  const one = (): number =>
    tidy(() => {
      pm.train(true);
      const logits = pm.forward(fromArray(inputs, [B, T]));
      const loss = crossEntropy(reshape(logits, [-1, V]), fromArray(targets, [B * T]));
      const value = loss.item();
      backward(loss);
      clipGradNorm(params, 1);
      optim.step();
      optim.zeroGrad();
      return value;
    });
  one();
  onWarm();
  const t0 = performance.now();
  let loss = Number.NaN;
  for (let i = 0; i < steps; i++) loss = one();
  return { ms: performance.now() - t0, loss };
}

const here = dirname(fileURLToPath(import.meta.url));
const cfg = parseLlamaConfig(
  JSON.parse(readFileSync(join(here, "..", "..", "models/demo-base/config.json"), "utf8")),
);

for (const kind of ["lora", "qlora"] as const) {
  spent.clear();
  timing = false;
  const res = runSteps(timed, cfg, kind === "qlora", () => {
    timing = true;
  });
  const total = res.ms;
  timing = false;
  const perStep = (ms: number) => ms / steps;
  const rows = [...spent.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const refMs = rows.filter(([, e]) => e.onRef).reduce((s, [, e]) => s + e.ms, 0);
  const kernelMs = rows.reduce((s, [, e]) => s + e.ms, 0);
  if (json) {
    console.log(
      JSON.stringify({
        kind,
        threads,
        batch: B,
        seq: T,
        step_ms: perStep(total),
        kernel_ms: perStep(kernelMs),
        ref_ms: perStep(refMs),
        loss: res.loss,
        kernels: Object.fromEntries(
          rows.map(([k, e]) => [k, { ms: perStep(e.ms), calls: e.calls / steps, ref: e.onRef }]),
        ),
      }),
    );
    continue;
  }
  console.log(
    `\n${kind}: demo model, r=16 all-linear, ${B}×${T}, wasm on ${threads} thread(s), ${steps} timed steps; ms per step`,
  );
  console.log(`${"kernel".padEnd(26)} | where |    ms | calls`);
  for (const [k, e] of rows)
    console.log(
      `${k.padEnd(26)} | ${(e.onRef ? "ref" : "wasm").padEnd(5)} | ${perStep(e.ms).toFixed(1).padStart(5)} | ${(e.calls / steps).toFixed(0).padStart(5)}`,
    );
  console.log(
    `step ${perStep(total).toFixed(1)} ms, in kernels ${perStep(kernelMs).toFixed(1)} ms, on ref ${perStep(refMs).toFixed(1)} ms (${((100 * refMs) / total).toFixed(1)} % of the step); loss ${res.loss.toFixed(6)}`,
  );
}
r.handle.dispose();
