// The WebAssembly backend beyond the shared contract: its GEMM against a naive f64 product on
// shapes that cross every blocking edge (k > KC, m > MC, ragged n, f32 and bf16 B, shared and
// strided operands), the module in dist/ matching its C sources, loading errors, and
// selection (LORAKIT_BACKEND=wasm, selectBackend("wasm")).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, describe, test } from "node:test";
import { type Backend, BINARY_OPS, type GemmParams } from "../../src/core/backend.js";
import { backend as engineBackend } from "../../src/core/engine.js";
import { BackendError } from "../../src/core/errors.js";
import { refBackend } from "../../src/kernels/ref/index.js";
import { selectBackend } from "../../src/kernels/select.js";
import { instantiateWasmKernels } from "../../src/kernels/wasm/module.js";
import {
  loadNodeWasmBackend,
  wasmModulePath,
  wasmThreadsModulePath,
} from "../../src/kernels/wasm/node/load.js";
import { repoRoot } from "../util/repo.js";

const loaded = await loadNodeWasmBackend({ threads: 1 });
const wasm: Backend | null = "handle" in loaded ? loaded.handle.backend : null;
const skip =
  wasm === null ? `wasm kernels not built (${"error" in loaded ? loaded.error.message : ""})` : false;

let seed = 777;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
}
function randomF32(len: number): Float32Array {
  const x = new Float32Array(len);
  for (let i = 0; i < len; i++) x[i] = rand() * 2;
  return x;
}
function randomBf16(len: number): Uint16Array {
  const u = new Uint32Array(randomF32(len).buffer);
  return Uint16Array.from(u, (v) => v >>> 16);
}
function widen(b: Float32Array | Uint16Array): Float32Array {
  if (b instanceof Float32Array) return b;
  return new Float32Array(Uint32Array.from(b, (h) => h << 16).buffer);
}

interface Case {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  batch?: number;
  strideA?: number;
  strideB?: number;
  /** Elements between C matrices (≥ m·n); a gap must stay untouched. */
  strideC?: number;
  alpha?: number;
  beta?: number;
  bf16?: boolean;
}

/** Runs the case on the wasm backend and checks every C element against an f64 product. */
function check(be: Backend, cs: Case): void {
  const { transA, transB, m, n, k } = cs;
  const batch = cs.batch ?? 1;
  const sA = cs.strideA ?? m * k;
  const sB = cs.strideB ?? k * n;
  const sC = cs.strideC ?? m * n;
  const alpha = cs.alpha ?? 1;
  const beta = cs.beta ?? 0;
  const a = randomF32((batch - 1) * sA + m * k);
  const b = cs.bf16 ? randomBf16((batch - 1) * sB + k * n) : randomF32((batch - 1) * sB + k * n);
  const c0 = randomF32((batch - 1) * sC + m * n);
  // With beta 0 the old C must never be read: NaN there would show.
  if (beta === 0) for (let bi = 0; bi < batch; bi++) c0.fill(Number.NaN, bi * sC, bi * sC + m * n);
  const c = c0.slice();
  const p: GemmParams = {
    transA,
    transB,
    m,
    n,
    k,
    batch,
    a,
    strideA: sA,
    b,
    strideB: sB,
    c,
    strideC: sC,
    alpha,
    beta,
  };
  be.gemm(p);
  const bf = widen(b);
  for (let bi = 0; bi < batch; bi++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) {
          const av = transA ? a[bi * sA + q * m + i] : a[bi * sA + i * k + q];
          const bv = transB ? bf[bi * sB + j * k + q] : bf[bi * sB + q * n + j];
          s += av * bv;
        }
        const o = bi * sC + i * n + j;
        const want = alpha * s + (beta === 0 ? 0 : beta * c0[o]);
        const tol = 2e-6 * Math.sqrt(k) * (1 + Math.abs(want)) + 1e-5;
        assert.ok(Math.abs(c[o] - want) <= tol, `${JSON.stringify(cs)}: C[${o}] = ${c[o]}, want ${want}`);
      }
      // The gap after each matrix (when strideC > m·n) is left as it was.
    }
    if (bi < batch - 1)
      for (let g = bi * sC + m * n; g < (bi + 1) * sC; g++)
        assert.ok(Object.is(c[g], c0[g]), `gap C[${g}] written`);
  }
}

describe("wasm GEMM against an f64 product", { skip }, () => {
  const be = wasm as Backend;
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      test(`transA=${transA} transB=${transB}: k across slabs, m across blocks, ragged n, f32 and bf16 B`, () => {
        check(be, { transA, transB, m: 131, n: 37, k: 600 });
        check(be, { transA, transB, m: 65, n: 65, k: 300, bf16: true });
        check(be, { transA, transB, m: 200, n: 16, k: 100, bf16: true, beta: 1, alpha: 0.25 });
        check(be, { transA, transB, m: 1, n: 9, k: 1 });
      });
    }
  }
  test("batched: shared A or B (stride 0), gaps between C matrices, beta 1", () => {
    check(be, { transA: true, transB: false, m: 40, n: 70, k: 129, batch: 3, strideA: 0, bf16: true });
    check(be, {
      transA: false,
      transB: true,
      m: 33,
      n: 24,
      k: 70,
      batch: 2,
      strideB: 0,
      strideC: 33 * 24 + 5,
    });
    check(be, { transA: false, transB: false, m: 9, n: 11, k: 13, batch: 3, strideC: 9 * 11 + 3, beta: 1 });
  });
  test("k = 0: C = beta·C (zeros for beta 0)", () => {
    check(be, { transA: false, transB: false, m: 5, n: 6, k: 0 });
    check(be, { transA: false, transB: false, m: 5, n: 6, k: 0, beta: 1 });
  });
  test("a product larger than the module's memory grows it, and later calls still agree", () => {
    check(be, { transA: false, transB: true, m: 512, n: 300, k: 700 });
    check(be, { transA: false, transB: false, m: 3, n: 5, k: 7 });
  });
});

describe("wasm SiLU·mul at the ends of the exponential's range", { skip }, () => {
  test("gates far beyond ±88 give the reference's values (σ saturates to 0 and 1, no NaN)", () => {
    const be = wasm as Backend;
    const gate = Float32Array.from([-1e4, -120, -88, -87.5, -30, -1e-3, 0, 1e-3, 30, 87.5, 88, 120, 1e4]);
    const up = new Float32Array(gate.length).fill(0.75);
    const dy = new Float32Array(gate.length).fill(-1.25);
    const got = [new Float32Array(gate.length), new Float32Array(gate.length), new Float32Array(gate.length)];
    const want = got.map((a) => new Float32Array(a.length));
    be.siluMul(gate, up, got[0]);
    refBackend.siluMul(gate, up, want[0]);
    be.siluMulBackward(gate, up, dy, got[1], got[2], false);
    refBackend.siluMulBackward(gate, up, dy, want[1], want[2], false);
    for (let j = 0; j < 3; j++)
      for (let i = 0; i < gate.length; i++)
        assert.ok(
          Math.abs(got[j][i] - want[j][i]) <= 1e-6 * (1 + Math.abs(want[j][i])),
          `output ${j}, gate ${gate[i]}: ${got[j][i]}, reference ${want[j][i]}`,
        );
  });
});

describe("wasm AdamW", { skip }, () => {
  test("50 steps agree bit for bit with the native kernel's portable level (same f32 operations, same order)", async (t) => {
    const { loadAddon } = await import("../../src/kernels/native/loader.js");
    const r = loadAddon();
    if ("error" in r) {
      t.skip("native addon not built");
      return;
    }
    const { createNativeBackend } = await import("../../src/kernels/native/backend.js");
    const addon = r.addon as unknown as { setOpsIsa(isa: string): string; opsIsa(): string };
    const isa = addon.opsIsa();
    addon.setOpsIsa("portable");
    try {
      const native = createNativeBackend(r.addon);
      const n = 1003;
      const p0 = randomF32(n);
      const state = [wasm, native].map(() => ({
        param: p0.slice(),
        m: new Float32Array(n),
        v: new Float32Array(n),
      }));
      for (let step = 1; step <= 50; step++) {
        const grad = randomF32(n);
        const hyper = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step };
        (wasm as Backend).adamw({ ...state[0], grad, ...hyper });
        native.adamw({ ...state[1], grad, ...hyper });
      }
      for (const key of ["param", "m", "v"] as const)
        assert.deepEqual(state[0][key], state[1][key], `${key} differs from native's`);
    } finally {
      addon.setOpsIsa(isa);
    }
  });

  test("a step count below 1 is the reference's RangeError; Float64Array parameters go to the reference", () => {
    const be = wasm as Backend;
    const f = () => new Float32Array(4);
    const base = { lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0 };
    assert.throws(
      () => be.adamw({ param: f(), grad: f(), m: f(), v: f(), ...base, step: 0 }),
      /1-based count/,
    );
    const param = Float64Array.of(1, 2);
    const want = Float64Array.of(1, 2);
    const grad = Float64Array.of(0.5, -0.25);
    be.adamw({ param, grad, m: new Float64Array(2), v: new Float64Array(2), ...base, step: 1 });
    refBackend.adamw({ param: want, grad, m: new Float64Array(2), v: new Float64Array(2), ...base, step: 1 });
    assert.deepEqual(param, want);
  });
});

/** Equal values, bit for bit except NaN's payload and sign (x86 makes −NaN, JavaScript stores +NaN). */
function assertSameValues(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++)
    if (!Object.is(got[i], want[i])) assert.fail(`${what}[${i}] = ${got[i]}, reference ${want[i]}`);
}

const special = [Number.NaN, 0, -0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e-40, 3e38, -2.5];
/** Random values with every seventh one special (NaN, ±0, ±∞, a subnormal, a huge one, a negative). */
function values(n: number): Float32Array {
  const x = randomF32(n);
  for (let i = 0; i < n; i += 7) x[i] = special[(i / 7) % special.length];
  return x;
}

describe("wasm binary, unary, axpy and dropout", { skip }, () => {
  test("bit for bit the reference's on random values, NaN, ±0 and ±∞, broadcast both ways", () => {
    const be = wasm as Backend;
    const shapes: [number[], number[], number[]][] = [
      [
        [5, 131],
        [5, 131],
        [5, 131],
      ],
      [
        [5, 1],
        [1, 131],
        [5, 131],
      ],
      [
        [1, 131],
        [5, 131],
        [5, 131],
      ],
      [
        [3, 1, 9],
        [3, 4, 1],
        [3, 4, 9],
      ],
    ];
    for (const op of BINARY_OPS)
      for (const [as, bs, os] of shapes) {
        const a = values(as.reduce((p, d) => p * d, 1));
        const b = values(bs.reduce((p, d) => p * d, 1));
        const n = os.reduce((p, d) => p * d, 1);
        const [got, want] = [new Float32Array(n), new Float32Array(n)];
        be.binary(op, a, as, b, bs, got, os);
        refBackend.binary(op, a, as, b, bs, want, os);
        assertSameValues(got, want, `${op} [${as}]∘[${bs}]`);
      }
    const x = values(1001);
    const y0 = values(1001);
    const [got, want] = [y0.slice(), y0.slice()];
    be.axpy(-0.3719, x, got);
    refBackend.axpy(-0.3719, x, want);
    assertSameValues(got, want, "axpy");
  });

  test("the unary ops it computes are the reference's, bit for bit, on random and special values", () => {
    const be = wasm as Backend;
    const x = values(2051);
    for (const [op, param] of [
      ["neg", 0],
      ["abs", 0],
      ["square", 0],
      ["sqrt", 0],
      ["rsqrt", 0],
      ["scale", -0.3719],
      ["relu", 0],
    ] as const) {
      const [got, want] = [new Float32Array(x.length), new Float32Array(x.length)];
      be.unary(op, x, got, param);
      refBackend.unary(op, x, want, param);
      assertSameValues(got, want, op);
    }
  });

  test("dropout's masks and values are the reference's at the edges of p, seed and offset", () => {
    const be = wasm as Backend;
    const x = randomF32(4099);
    x[5] = Number.NaN;
    // p·2²⁴ an integer, just above and below one, p ≤ 0, p ≥ 1, NaN; offsets across 2³¹ and 2³².
    const ps = [0.25, 0.3, 0.25 + 2 ** -30, 0.25 - 2 ** -30, 0, -0.5, 1, 1.5, Number.NaN];
    const at: [number, number][] = [
      [0, 0],
      [-1, 2 ** 31 - 2000],
      [0x7fffffff, 2 ** 32 - 1000],
      [12345, 2 ** 40 + 17],
    ];
    for (const p of ps)
      for (const [seed, offset] of at) {
        const [got, want] = [new Float32Array(x.length), new Float32Array(x.length)];
        be.dropout(x, got, p, seed, offset);
        refBackend.dropout(x, want, p, seed, offset);
        assertSameValues(got, want, `dropout p=${p} seed=${seed} offset=${offset}`);
      }
  });
});

describe("wasm loraGrouped", { skip }, () => {
  test("a row's result alone is bit for bit its result inside a batch (serving relies on it)", () => {
    const be = wasm as Backend;
    const [N, inF, outF, r] = [13, 300, 200, 16];
    const x = randomF32(N * inF);
    const y0 = randomF32(N * outF);
    const A = [randomF32(r * inF)];
    const B = [randomF32(outF * r)];
    const group = {
      inFeatures: inF,
      outFeatures: outF,
      A,
      B,
      ranks: Int32Array.of(r),
      scales: Float64Array.of(2),
    };
    const y = y0.slice();
    const rows = Int32Array.from({ length: N }, (_, i) => N - 1 - i); // gathered, not in place
    be.loraGrouped({ ...group, x, y, rows, starts: Int32Array.of(0, N) });
    for (let i = 0; i < N; i++) {
      const yi = y0.slice(i * outF, (i + 1) * outF);
      const xi = x.slice(i * inF, (i + 1) * inF);
      be.loraGrouped({ ...group, x: xi, y: yi, rows: Int32Array.of(0), starts: Int32Array.of(0, 1) });
      assert.deepEqual(yi, y.subarray(i * outF, (i + 1) * outF), `row ${i}`);
    }
  });
});

describe("the wasm module", { skip }, () => {
  const scratch = mkdtempSync(join(tmpdir(), "lorakit-wasm-"));
  after(() => rmSync(scratch, { recursive: true, force: true }));
  test("the modules beside the compiled loader are what the C sources build to now", () => {
    const out = join(scratch, "rebuilt");
    const r = spawnSync(process.execPath, ["scripts/build-wasm.mjs", "--require", "--force", "--out", out], {
      cwd: repoRoot(),
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    for (const built of [
      wasmModulePath(),
      wasmThreadsModulePath(),
      wasmModulePath("relaxed"),
      wasmThreadsModulePath("relaxed"),
    ])
      assert.ok(
        readFileSync(join(out, basename(built))).equals(readFileSync(built)),
        `dist's ${basename(built)} is stale: npm run build:wasm`,
      );
  });
  test("a missing module is an error naming the build command, also when threads are asked for", async () => {
    for (const threads of [1, 2]) {
      const r = await loadNodeWasmBackend({ threads, path: join(scratch, "nothing-here.wasm") });
      assert.ok("error" in r);
      assert.ok(r.error instanceof BackendError);
      assert.match(r.error.message, /not built .*npm run build:wasm/);
    }
  });
  test("a missing threaded module leaves one thread, with a notice naming the build command", async () => {
    const r = await loadNodeWasmBackend({ threads: 2, threadsPath: join(scratch, "nothing-here.wasm") });
    assert.ok("handle" in r);
    assert.equal(r.handle.threads, 1);
    assert.match(
      r.handle.notice ?? "",
      /run on 1 thread, not 2: the WebAssembly kernels are not built .*npm run build:wasm/,
    );
  });
  test("bytes that are not a module, or a module without the kernels, are a BackendError", async () => {
    await assert.rejects(instantiateWasmKernels(new Uint8Array([1, 2, 3, 4])), BackendError);
    // The smallest valid module: magic and version, no exports.
    const empty = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
    await assert.rejects(
      instantiateWasmKernels(empty),
      /lacks __heap_base, wasm_gemm_scratch_bytes, wasm_gemm,/,
    );
  });
});

describe("selecting the wasm backend", { skip }, () => {
  const saved = process.env.LORAKIT_BACKEND;
  after(() => {
    if (saved === undefined) delete process.env.LORAKIT_BACKEND;
    else process.env.LORAKIT_BACKEND = saved;
  });
  test('selectBackend("wasm") makes it the engine\'s backend, without a notice', async () => {
    const { backend, notice } = await selectBackend("wasm");
    assert.equal(backend.name, "wasm");
    assert.equal(notice, null);
    assert.equal(engineBackend(), backend);
  });
  test("LORAKIT_BACKEND=wasm selects it; an unknown name lists wasm among the accepted", async () => {
    process.env.LORAKIT_BACKEND = "wasm";
    assert.equal((await selectBackend()).backend.name, "wasm");
    process.env.LORAKIT_BACKEND = "wasmm";
    await assert.rejects(
      selectBackend(),
      /unknown backend "wasmm" \(from LORAKIT_BACKEND\); accepted: auto, ref, native, wasm/,
    );
  });
});
