// The optimizer update on the wasm module (c/optim.c) for Float32Array operands; a
// Float64Array operand sends the call to the reference. The step's constants are formed in
// f64 and rounded to f32 once, as the native backend does (native/src/ops_optim.cc), so the
// wasm update agrees bit for bit with native's portable level (its AVX levels differ in
// the last bits; test/kernels/wasm.test.ts checks the portable one).
import type { AdamWParams } from "../../core/backend.js";
import { refBackend } from "../ref/index.js";
import type { WasmArena } from "./arena.js";
import type { KernelCalls } from "./calls.js";
import { allF32, needLength } from "./ops.js";

export function wasmAdamw(ex: KernelCalls, arena: WasmArena, p: AdamWParams): void {
  const { param, grad, m, v, lr, beta1, beta2, eps, weightDecay, step } = p;
  if (!allF32([param, grad, m, v])) {
    refBackend.adamw(p);
    return;
  }
  if (!(step >= 1)) throw new RangeError(`adamw: step must be a 1-based count, got ${step}`);
  const n = param.length;
  needLength("adamw", { grad, m, v }, { grad: n, m: n, v: n });
  const stepSize = lr / (1 - beta1 ** step);
  const sqrtBc2 = Math.sqrt(1 - beta2 ** step);
  const decay = 1 - lr * weightDecay;
  arena.reset();
  try {
    const pa = arena.copyIn(param as Float32Array, 0, n);
    const ga = arena.copyIn(grad as Float32Array, 0, n);
    const ma = arena.copyIn(m as Float32Array, 0, n);
    const va = arena.copyIn(v as Float32Array, 0, n);
    ex.wasm_adamw(pa, ga, ma, va, n, beta1, beta2, stepSize, sqrtBc2, eps, decay);
    param.set(arena.view(param as Float32Array, pa, n));
    m.set(arena.view(m as Float32Array, ma, n));
    v.set(arena.view(v as Float32Array, va, n));
  } finally {
    arena.reset();
  }
}
