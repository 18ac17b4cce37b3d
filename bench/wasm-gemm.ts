// The wasm GEMM kernel alone, single-threaded, timed in CPU time (process.cpuUsage: best of
// --rounds rounds of 40 ms each), so the other work on a shared host does not enter: each
// build's module (plain SIMD128, and relaxed SIMD when this Node validates it: run it with
// --experimental-wasm-relaxed-simd) of each folder given, on the LoRA training step's shapes.
// Folders default to the build beside the compiled kernels (dist/src/kernels/wasm); give an
// older build's folder (node scripts/build-wasm.mjs --out <dir> at that commit) to compare.
//
//   node --experimental-wasm-relaxed-simd dist/bench/wasm-gemm.js [--rounds 5] [dir ...]
import { readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { relaxedSimdSupported, type WasmExports, wasmFileName } from "../src/kernels/wasm/module.js";

const argv = process.argv.slice(2);
const ri = argv.indexOf("--rounds");
const rounds = ri >= 0 ? Number(argv[ri + 1]) : 5;
const dirs = argv.filter((a, i) => !a.startsWith("--") && (ri < 0 || i !== ri + 1));
if (dirs.length === 0) dirs.push(join(dirname(fileURLToPath(import.meta.url)), "../src/kernels/wasm"));

/** [transA, transB, m, n, k, what]: the demo model's products in a LoRA step (r = 16). */
const SHAPES: [number, number, number, number, number, string][] = [
  [0, 1, 1024, 352, 128, "X·Wᵀ"],
  [0, 0, 1024, 128, 352, "dY·W (gate, up)"],
  [0, 1, 1024, 1024, 128, "X·Eᵀ (logits)"],
  [0, 0, 1024, 128, 1024, "dLogits·E"],
  [1, 0, 352, 128, 1024, "Xᵀ·dY"],
  [0, 0, 1024, 16, 128, "X·Aᵀ (A packed plain)"],
  [0, 1, 1024, 128, 16, "(X·Aᵀ)·Bᵀ"],
  [1, 0, 16, 128, 1024, "dA"],
];

const modules: { name: string; ex: WasmExports }[] = [];
for (const dir of dirs)
  for (const simd of relaxedSimdSupported() ? (["simd128", "relaxed"] as const) : (["simd128"] as const)) {
    const bytes = readFileSync(join(dir, wasmFileName(false, simd)));
    const { instance } = await WebAssembly.instantiate(bytes, {});
    modules.push({ name: `${basename(dir)}/${simd}`, ex: instance.exports as unknown as WasmExports });
  }

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

console.log(`GEMM GFLOP/s, one thread, CPU time, best of ${rounds}`);
console.log(["shape".padEnd(34), ...modules.map((m) => m.name.padStart(22))].join(" "));
for (const [ta, tb, m, n, k, what] of SHAPES) {
  const best = modules.map(() => 0);
  for (let round = 0; round < rounds; round++)
    modules.forEach(({ ex }, i) => {
      const base = Math.ceil((ex.__heap_base.value as number) / 16) * 16;
      const a = base;
      const b = a + m * k * 4;
      const c = b + k * n * 4;
      const s = c + m * n * 4;
      const need = s + ex.wasm_gemm_scratch_bytes(m, n, k, 1, 1);
      const have = ex.memory.buffer.byteLength;
      if (need > have) ex.memory.grow(Math.ceil((need - have) / 65536));
      const f = new Float32Array(ex.memory.buffer, a, m * k + k * n);
      for (let j = 0; j < f.length; j++) f[j] = Math.sin(j);
      const run = () => ex.wasm_gemm(ta, tb, m, n, k, 1, a, 0, b, 0, 0, c, 0, 1, 0, s, 0, 1);
      run();
      const t0 = cpuMs();
      let iters = 0;
      while (cpuMs() - t0 < 40) {
        run();
        iters++;
      }
      best[i] = Math.max(best[i], (2 * m * n * k * iters) / (cpuMs() - t0) / 1e6);
    });
  const label = `${what} ${m}×${n}×${k}${ta ? " Aᵀ" : ""}${tb ? " Bᵀ" : ""}`;
  console.log([label.padEnd(34), ...best.map((g) => g.toFixed(1).padStart(22))].join(" "));
}
