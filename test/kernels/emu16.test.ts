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
  // Subnormal results within one subnormal step (2^-149) of the true value.
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
// even, then a scaling by 2^n rounded once: vscalefps on AVX-512, two normal power-of-two
// factors on AVX2), so the emulation's per-lane fma, rounding and scaling must give the
// hardware's bits everywhere: the normal range, the band just above −87.34 where the
// result is still normal (AVX2 once built 2^n as one factor there and gave 0), gradual
// underflow, overflow to +inf, and the specials.
test("emu16: exp equals the hardware path's bit for bit over the whole range", { skip }, () => {
  const best = addon!.cpuFeatures().best;
  if (best === "portable") return; // no SIMD exp on this CPU to compare with
  const n = 30011;
  const x = Float32Array.from({ length: n }, (_, i) => -110 + (200 * i) / n);
  x.set([Number.NaN, -Infinity, Infinity, -0, 0, -87.2, -87.0, -86.99, 88.72, 88.73], n - 10);
  const want = onTable(best, () => expOf(x));
  const got = onTable("emu16", () => expOf(x));
  for (let i = 0; i < n; i++)
    if (!Object.is(got[i], want[i])) assert.fail(`exp(${x[i]}): emu16 ${got[i]}, ${best} ${want[i]}`);
});

test("exp near the bottom of the normal range is not flushed to 0", { skip }, () => {
  // exp(x) for x in (−87.34, −86.99) is 1.2e−38…1.7e−38, a normal float: 1 ulp from Math.exp.
  const x = Float32Array.from({ length: 64 }, (_, i) => -87.33 + (0.34 * i) / 63);
  const y = expOf(x);
  for (let i = 0; i < x.length; i++) {
    const want = Math.exp(x[i]);
    assert.ok(Math.abs(y[i] - want) / want < 3e-7, `exp(${x[i]}) = ${y[i]}, want ${want}`);
  }
});

// On an AVX-512 host the emulation must be the real table: the same outputs, bit for bit,
// for every kind of kernel (element-wise with tails, row reductions, AdamW, attention
// forward over f32 and bf16 caches with wide heads, and its backward).
let seed = 4242;
function rnd(n: number, scale = 2): Float32Array {
  return Float32Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return (seed / 4294967296 - 0.5) * scale;
  });
}
function opsOutputs(): Float32Array[] {
  seed = 4242;
  const a = addon!;
  const outs: Float32Array[] = [];
  const x = rnd(1000, 40);
  for (const op of ["exp", "sigmoid", "silu"]) {
    const y = new Float32Array(997);
    a.unary(a.unaryOpNames.indexOf(op), x.subarray(0, 997), y, 0);
    outs.push(y);
  }
  const [N, C] = [7, 203];
  const logits = rnd(N * C, 20);
  const sm = new Float32Array(N * C);
  a.softmax(logits, N, C, sm);
  const lsm = new Float32Array(N * C);
  a.logSoftmax(logits, N, C, lsm);
  const dy = rnd(N * C);
  const dsm = new Float32Array(N * C);
  a.softmaxBackward(sm, dy, N, C, dsm, false);
  const dlsm = new Float32Array(N * C);
  a.logSoftmaxBackward(lsm, dy, N, C, dlsm, false);
  const tg = Int32Array.from({ length: N }, (_, i) => (i * 37) % C);
  const [loss, lse, dl] = [new Float32Array(N), new Float32Array(N), new Float32Array(N * C)];
  a.crossEntropy(logits, tg, N, C, -100, loss, lse);
  a.crossEntropyBackward(
    logits,
    tg,
    lse,
    Float32Array.from({ length: N }, () => 0.5),
    N,
    C,
    -100,
    dl,
    false,
  );
  outs.push(sm, lsm, dsm, dlsm, loss, lse, dl);
  const [p, g, m, v] = [rnd(531), rnd(531), new Float32Array(531), new Float32Array(531)];
  for (let step = 1; step <= 3; step++) a.adamw(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, step);
  outs.push(p, m, v);
  for (const [T, S, H, Hkv, D, offset] of [
    [40, 150, 4, 2, 128, 110],
    [70, 70, 2, 1, 200, 0],
    [1, 300, 6, 2, 64, 299],
    [19, 19, 3, 3, 19, 0],
  ]) {
    const q = rnd(T * H * D);
    const k = rnd(S * Hkv * D);
    const vv = rnd(S * Hkv * D);
    const o = new Float32Array(T * H * D);
    const l = new Float32Array(H * T);
    a.attention(q, k, vv, 1, T, S, H, Hkv, D, S, 1 / Math.sqrt(D), offset, true, o, l);
    const bf = (f: Float32Array) => Uint16Array.from(new Uint32Array(f.buffer), (b) => b >>> 16);
    const o16 = new Float32Array(T * H * D);
    const l16 = new Float32Array(H * T);
    a.attention(q, bf(k), bf(vv), 1, T, S, H, Hkv, D, S, 1 / Math.sqrt(D), offset, true, o16, l16);
    const dout = rnd(o.length);
    const [dq, dk, dv] = [
      new Float32Array(q.length),
      new Float32Array(k.length),
      new Float32Array(vv.length),
    ];
    a.attentionBackward(
      q,
      k,
      vv,
      1,
      T,
      S,
      H,
      Hkv,
      D,
      S,
      1 / Math.sqrt(D),
      offset,
      true,
      o,
      l,
      dout,
      dq,
      dk,
      dv,
    );
    outs.push(o, l, o16, l16, dq, dk, dv);
  }
  return outs;
}
const avx512 = addon !== null && addon.cpuFeatures().best === "avx512";
test("emu16 gives the AVX-512 table's results bit for bit", {
  skip: skip || (avx512 ? false : "no AVX-512 on this CPU"),
}, () => {
  const want = onTable("avx512", opsOutputs);
  const got = onTable("emu16", opsOutputs);
  assert.equal(got.length, want.length);
  want.forEach((w, i) => {
    const [gb, wb] = [new Uint32Array(got[i].buffer), new Uint32Array(w.buffer)];
    for (let j = 0; j < wb.length; j++)
      if (gb[j] !== wb[j] && !(Number.isNaN(got[i][j]) && Number.isNaN(w[j])))
        assert.fail(`output ${i}[${j}]: emu16 ${got[i][j]}, avx512 ${w[j]}`);
  });
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
  const r = spawnSync(process.execPath, ["--test", "--test-concurrency=1", "--test-reporter=tap", ...files], {
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
