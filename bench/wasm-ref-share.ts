// How much of a training step the wasm backend still spends in the TypeScript reference's
// kernels: every Backend call is timed (wall clock on the calling thread, which also waits
// for the pool's workers) and filed under "wasm" or "ref" by where this build routes it (a
// method the wasm backend did not override is the reference's own function; unary and
// unaryBackward are filed per op by WASM_UNARY_OPS / WASM_UNARY_BACKWARD_OPS). Two steps:
//   lora    the demo model (models/demo-base/config.json, random weights), r=16 all-linear,
//           AdamW, B×T tokens (bench/lora-step.ts)
//   qlora   the same with every linear layer's base weight in NF4 (quantizeModelNf4)
// Prints one row per kernel (ms per step; nf4Gemm's inner dequantisation and products as
// nested rows) and the ref share of each step. --compare also runs main's routing (06c4918:
// the ops this branch moved on the reference, nf4Gemm's panels dequantised there) in
// interleaved rounds with this branch's and prints both, and the CPU time per step of each
// round (process CPU: on one thread that is the step's own).
//
//   npm run build && node dist/bench/wasm-ref-share.js [--threads 1] [--steps 3] [--batch 8] [--seq 128]
//                                                      [--compare] [--rounds 3] [--json]
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend, Nf4GemmParams, UnaryOp } from "../src/core/backend.js";
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
import { nf4GemmWith } from "../src/kernels/ref/nf4.js";
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
const compare = argv.includes("--compare");

const r = await loadNodeWasmBackend({ threads });
if ("error" in r) throw r.error;
const wasm = r.handle.backend;

/** Milliseconds per kernel label over the timed region. */
const spent = new Map<string, { ms: number; calls: number; onRef: boolean; nested: boolean }>();
let timing = false;

/** The unary ops main's wasm backend ran in wasm (before this branch); every backward was ref's. */
const MAIN_WASM_UNARY: readonly string[] = ["neg", "abs", "square", "sqrt", "rsqrt", "scale", "relu"];

/** A routing of the Backend calls: the backend and which calls of it run on the reference. */
interface Routing {
  name: string;
  backend: Backend;
  onRef(method: string, args: unknown[]): boolean;
}

function label(method: string, args: unknown[]): string {
  return method === "unary" || method === "unaryBackward" ? `${method} ${args[0] as string}` : method;
}

function record(key: string, onRef: boolean, nested: boolean, ms: number): void {
  const e = spent.get(key) ?? { ms: 0, calls: 0, onRef, nested };
  e.ms += ms;
  e.calls++;
  spent.set(key, e);
}

function timedFn<A extends unknown[], R>(
  fn: (...a: A) => R,
  key: (a: A) => string,
  onRef: (a: A) => boolean,
  nested: boolean,
) {
  return (...args: A): R => {
    if (!timing) return fn(...args);
    const t0 = performance.now();
    try {
      return fn(...args);
    } finally {
      record(key(args), onRef(args), nested, performance.now() - t0);
    }
  };
}

/**
 * A copy of r.backend (it is frozen) with every method timed, and nf4Gemm rebuilt from its
 * steps so that its inner dequantisation and products are timed too (nested rows).
 */
function timedBackend(r: Routing, dequantOnRef: boolean): Backend {
  const be = r.backend as unknown as Record<string, unknown>;
  const out = Object.fromEntries(
    Object.entries(be).map(([key, v]) => {
      if (typeof v !== "function") return [key, v];
      return [
        key,
        timedFn(
          v as (...a: unknown[]) => unknown,
          (a) => label(key, a),
          (a) => r.onRef(key, a),
          false,
        ),
      ];
    }),
  ) as unknown as Backend;
  const dequant = timedFn(
    dequantOnRef ? refBackend.nf4Dequant : r.backend.nf4Dequant,
    () => "  nf4Gemm › nf4Dequant",
    () => dequantOnRef,
    true,
  );
  const gemm = timedFn(
    r.backend.gemm,
    () => "  nf4Gemm › gemm",
    () => false,
    true,
  );
  out.nf4Gemm = timedFn(
    (p: Nf4GemmParams) => nf4GemmWith(gemm, p, dequant),
    () => "nf4Gemm",
    () => false,
    false,
  );
  return out;
}

const current: Routing = {
  name: "this branch",
  backend: wasm,
  onRef(method, args) {
    if (method === "unary") return !WASM_UNARY_OPS.includes(args[0] as UnaryOp);
    if (method === "unaryBackward") return !WASM_UNARY_BACKWARD_OPS.includes(args[0] as UnaryOp);
    const own = (wasm as unknown as Record<string, unknown>)[method];
    return own === (refBackend as unknown as Record<string, unknown>)[method];
  },
};
/** main's routing (06c4918): these calls on the reference, nf4Gemm's panels dequantised by it. */
const MAIN_REF = [
  "unaryBackward",
  "reduce",
  "broadcastTo",
  "permute",
  "copyAxis",
  "where",
  "nf4Dequant",
  "nf4Scales",
  "gather",
  "scatterAdd",
  "fill",
];
const mainRouting: Routing = {
  name: "main's routing",
  backend: {
    ...wasm,
    unary: (op, x, o, p) =>
      MAIN_WASM_UNARY.includes(op) ? wasm.unary(op, x, o, p) : refBackend.unary(op, x, o, p),
    ...Object.fromEntries(MAIN_REF.map((m) => [m, (refBackend as unknown as Record<string, unknown>)[m]])),
  } as Backend,
  onRef(method, args) {
    if (method === "unary") return !MAIN_WASM_UNARY.includes(args[0] as string);
    return MAIN_REF.includes(method);
  },
};

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
): { ms: number; cpuMs: number; loss: number } {
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
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let loss = Number.NaN;
  for (let i = 0; i < steps; i++) loss = one();
  const c = process.cpuUsage(c0);
  return { ms: performance.now() - t0, cpuMs: (c.user + c.system) / 1000, loss };
}

const here = dirname(fileURLToPath(import.meta.url));
const cfg = parseLlamaConfig(
  JSON.parse(readFileSync(join(here, "..", "..", "models/demo-base/config.json"), "utf8")),
);

/** One routing's table for one kind of step (the kernel rows of the last runSteps). */
function report(kind: string, r: Routing, total: number, cpu: number, loss: number): void {
  const perStep = (ms: number) => ms / steps;
  const rows = [...spent.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const top = rows.filter(([, e]) => !e.nested);
  // nf4Gemm's inner dequantisation counts as ref time when it ran there.
  const refMs = rows.filter(([, e]) => e.onRef).reduce((s, [, e]) => s + e.ms, 0);
  const kernelMs = top.reduce((s, [, e]) => s + e.ms, 0);
  if (json) {
    console.log(
      JSON.stringify({
        kind,
        routing: r.name,
        threads,
        batch: B,
        seq: T,
        step_ms: perStep(total),
        step_cpu_ms: perStep(cpu),
        kernel_ms: perStep(kernelMs),
        ref_ms: perStep(refMs),
        loss,
        kernels: Object.fromEntries(
          rows.map(([k, e]) => [k.trim(), { ms: perStep(e.ms), calls: e.calls / steps, ref: e.onRef }]),
        ),
      }),
    );
    return;
  }
  console.log(
    `\n${kind}, ${r.name}: demo model, r=16 all-linear, ${B}×${T}, wasm on ${threads} thread(s), ${steps} timed steps; ms per step`,
  );
  console.log(`${"kernel".padEnd(26)} | where |    ms | calls`);
  for (const [k, e] of rows)
    console.log(
      `${k.padEnd(26)} | ${(e.onRef ? "ref" : "wasm").padEnd(5)} | ${perStep(e.ms).toFixed(1).padStart(5)} | ${(e.calls / steps).toFixed(0).padStart(5)}`,
    );
  console.log(
    `step ${perStep(total).toFixed(1)} ms (${perStep(cpu).toFixed(1)} ms CPU), in kernels ${perStep(kernelMs).toFixed(1)} ms, on ref ${perStep(refMs).toFixed(1)} ms (${((100 * refMs) / total).toFixed(1)} % of the step); loss ${loss.toFixed(6)}`,
  );
}

const routings = compare ? [mainRouting, current] : [current];
const rounds = compare ? opt("rounds", 3) : 1;
for (const kind of ["lora", "qlora"] as const) {
  const cpuPerRound = routings.map((): number[] => []);
  for (let round = 0; round < rounds; round++)
    for (const [i, r] of routings.entries()) {
      spent.clear();
      timing = false;
      const res = runSteps(timedBackend(r, r === mainRouting), cfg, kind === "qlora", () => {
        timing = true;
      });
      timing = false;
      cpuPerRound[i].push(res.cpuMs / steps);
      if (round === rounds - 1) report(kind, r, res.ms, res.cpuMs, res.loss);
    }
  if (compare) {
    const med = (a: number[]) => a.slice().sort((p, q) => p - q)[Math.floor(a.length / 2)];
    const [m, c] = cpuPerRound.map(med);
    const line = `${kind}: CPU ms per step, ${rounds} interleaved rounds: main's routing ${cpuPerRound[0].map((v) => v.toFixed(0)).join(", ")} (median ${m.toFixed(0)}); this branch ${cpuPerRound[1].map((v) => v.toFixed(0)).join(", ")} (median ${c.toFixed(0)}); ratio ${(m / c).toFixed(2)}`;
    if (json)
      console.log(JSON.stringify({ kind, compare: { main: cpuPerRound[0], branch: cpuPerRound[1] } }));
    else console.log(`\n${line}`);
  }
}
r.handle.dispose();
