// The op kernels' 16-lane code paths (the AVX-512 instance of native/src/ops_kernels_impl.h)
// on any host: native/src/ops_simd_emu16.cc emulates the AVX-512 vector in plain C++, with
// the same lane semantics. Here: that table is selectable by name only and reported by
// opsIsa, its element-wise semantics (partial stores, exp's gradual underflow, exp equal
// bit for bit to the hardware path's in the normal range), and then the kernel contract,
// attentionRows, decode-mode and bf16 KV cache suites in a child process under
// LORAKIT_CPU=emu16, where the native backend runs on the emulated table.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { GemmAddon } from "../../src/kernels/native/gemm.js";
import { loadAddon } from "../../src/kernels/native/loader.js";
import type { OpsAddon } from "../../src/kernels/native/ops.js";

const loaded = loadAddon();
const addon = "addon" in loaded ? (loaded.addon as unknown as OpsAddon & GemmAddon) : null;
const skip = addon === null ? "native addon not built (npm run build:native)" : false;
const here = dirname(fileURLToPath(import.meta.url));

/** Runs `fn` on the given op table, then puts the one in use before back. */
function onTable<T>(isa: string, fn: () => T): T {
  const before = addon!.opsIsa();
  try {
    assert.equal(addon!.setOpsIsa(isa), isa);
    return fn();
  } finally {
    addon!.setOpsIsa(before);
  }
}

function expOf(x: Float32Array): Float32Array {
  const y = new Float32Array(x.length);
  addon!.unary(addon!.unaryOpNames.indexOf("exp"), x, y, 0);
  return y;
}

test("emu16 is chosen by name only, on any CPU", { skip }, () => {
  const best = addon!.cpuFeatures().best;
  const gemmPath = addon!.cpuFeatures().path;
  if (!process.env.LORAKIT_CPU) assert.equal(addon!.opsIsa(), best, "detection never picks emu16");
  onTable("emu16", () => {
    assert.equal(addon!.opsIsa(), "emu16");
    assert.equal(addon!.cpuFeatures().path, gemmPath, "the GEMM keeps its own path");
  });
  // "best" and unknown names mean the best real table, never the emulation.
  assert.equal(
    onTable("emu16", () => addon!.setOpsIsa("best")),
    best,
  );
  assert.equal(
    onTable("emu16", () => addon!.setOpsIsa("avx1024")),
    best,
  );
});

test("emu16: partial stores write only the tail's lanes", { skip }, () => {
  onTable("emu16", () => {
    for (const n of [1, 15, 17, 21, 31, 33]) {
      const buf = new Float32Array(n + 16).fill(-7);
      const x = Float32Array.from({ length: n }, (_, i) => (i - 10) / 4);
      const y = buf.subarray(0, n);
      addon!.unary(addon!.unaryOpNames.indexOf("sigmoid"), x, y, 0);
      for (let i = 0; i < n; i++)
        assert.ok(Math.abs(y[i] - 1 / (1 + Math.exp(-x[i]))) < 1e-6, `n=${n} i=${i}`);
      for (let i = n; i < buf.length; i++) assert.equal(buf[i], -7, `n=${n}: lane ${i} past the end written`);
    }
  });
});

test("emu16: exp has AVX-512's range (vscalefps: gradual underflow, inf, NaN)", { skip }, () => {
  const x = Float32Array.from([-100, -95, -88, 0, 1, 88.5, 89.5, Number.NaN, -Infinity, Infinity, -200]);
  const y = onTable("emu16", () => expOf(x));
  // Subnormal results within one subnormal step (2^-149) of the true value, where the
  // AVX2 path flushes below −87.34 to 0.
  for (const i of [0, 1, 2])
    assert.ok(y[i] > 0 && Math.abs(y[i] - Math.exp(x[i])) <= 2 ** -149, `exp(${x[i]}) = ${y[i]}`);
  assert.equal(y[3], 1);
  assert.ok(Math.abs(y[4] - Math.E) / Math.E < 3e-7);
  assert.ok(Number.isFinite(y[5]) && Math.abs(y[5] - Math.exp(88.5)) / Math.exp(88.5) < 3e-7);
  assert.equal(y[6], Infinity);
  assert.ok(Number.isNaN(y[7]));
  assert.equal(y[8], 0);
  assert.equal(y[9], Infinity);
  assert.equal(y[10], 0);
});

// The AVX2 and AVX-512 exps are the same arithmetic (fused multiply-adds, round to nearest
// even, then an exact scaling by 2^n) where 2^n and the result are normal, so the
// emulation's per-lane fma, rounding and scaling must give the hardware's bits there.
// (Below x ≈ −87 the AVX2 exp builds 2^(n−1) = 2^−127, a zero exponent field, and gives 0.)
test("emu16: exp equals the hardware path's bit for bit over the normal range", { skip }, () => {
  const best = addon!.cpuFeatures().best;
  if (best === "portable") return; // no SIMD exp on this CPU to compare with
  const n = 20011;
  const x = Float32Array.from({ length: n }, (_, i) => -86.5 + (175 * i) / n);
  const want = onTable(best, () => expOf(x));
  const got = onTable("emu16", () => expOf(x));
  for (let i = 0; i < n; i++)
    if (got[i] !== want[i]) assert.fail(`exp(${x[i]}): emu16 ${got[i]}, ${best} ${want[i]}`);
});

// The suites that cover the op kernels, in one child process with the emulated table.
const suites = [
  "kernels/contract.test.js",
  "kernels/attention-rows.test.js",
  "models/decode-mode.test.js",
  "models/kv-cache-dtype.test.js",
];
test("the kernel contract, attentionRows, decode-mode and bf16 KV cache suites pass on the 16-lane emulation", {
  skip: skip || (process.env.LORAKIT_CPU ? "LORAKIT_CPU is set" : false),
}, () => {
  const env: NodeJS.ProcessEnv = { ...process.env, LORAKIT_CPU: "emu16" };
  delete env.NODE_TEST_CONTEXT; // run as fresh test processes, not as a runner's child
  const files = suites.map((f) => join(here, "..", f));
  const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", ...files], {
    env,
    encoding: "utf8",
  });
  assert.equal(r.status, 0, `emu16 suites failed:\n${r.stdout.slice(-20000)}\n${r.stderr}`);
  assert.match(r.stdout, /kernel contract: native \(emu16, 1 thread\)/, "the contract ran on emu16");
  assert.match(r.stdout, /kernel contract: native \(emu16, 2 threads\)/);
  assert.match(r.stdout, /attentionRows \(native backend\)/);
  assert.match(r.stdout, /decode mode \(native backend\)/);
  assert.match(r.stdout, /# pass [1-9]/);
  assert.match(r.stdout, /# fail 0/);
  // The native backend of the other suites really ran on the emulated table.
  const loader = pathToFileURL(join(here, "..", "..", "src", "kernels", "native", "loader.js")).href;
  const script = `const { loadAddon } = await import(${JSON.stringify(loader)});
      const { addon } = loadAddon(); console.log(addon.opsIsa(), addon.cpuFeatures().path);`;
  const probe = spawnSync(process.execPath, ["--input-type=module", "-e", script], { env, encoding: "utf8" });
  assert.equal(probe.status, 0, probe.stderr);
  assert.equal(probe.stdout.trim(), `emu16 ${addon!.cpuFeatures().best}`);
});
