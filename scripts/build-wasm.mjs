// Builds lorakit's WebAssembly kernels (src/kernels/wasm/c/*.c) with clang and lld into four
// modules beside the compiled modules that load them (dist/src/kernels/wasm/):
//   lorakit_kernels.wasm          its own memory, one thread (pages without cross-origin
//                                 isolation, where shared memory does not exist)
//   lorakit_kernels_threads.wasm  the same code on an imported shared memory, instantiated
//                                 once per thread (kernels/wasm/pool.ts)
//   lorakit_kernels{,_threads}_relaxed.wasm
//                                 the same two with relaxed SIMD (c/madd.h: the GEMM's and
//                                 attention's a·b + c as f32x4.relaxed_madd, fused where the
//                                 CPU has FMA); the loader takes them where the engine
//                                 validates relaxed SIMD (module.ts, relaxedSimdSupported)
// Nothing is downloaded: the toolchain is Debian's. The relaxed modules need clang ≥ 16
// (apt-get install -y clang-16 lld-16); the newest clang-N installed is used.
//
//   node scripts/build-wasm.mjs            what `npm test` runs: builds when the sources are
//                                          newer than the module; without clang it says so
//                                          and exits 0 (the wasm tests then skip, as the
//                                          native ones do without the addon)
//   node scripts/build-wasm.mjs --require  fail without clang (npm run build:wasm, prepack)
//   --force                                rebuild even when up to date
//   --out <dir>                            write both elsewhere (the test that rebuilds and compares)
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const argv = process.argv.slice(2);
const requireBuild = argv.includes("--require");
const force = argv.includes("--force");
const outIdx = argv.indexOf("--out");
const outDir = outIdx >= 0 ? resolve(argv[outIdx + 1]) : join(root, "dist/src/kernels/wasm");
const srcDir = join(root, "src/kernels/wasm/c");
const sources = readdirSync(srcDir)
  .filter((f) => f.endsWith(".c"))
  .sort()
  .map((f) => join(srcDir, f));
const headers = readdirSync(srcDir)
  .filter((f) => f.endsWith(".h"))
  .map((f) => join(srcDir, f));

// -msimd128: the kernels' f32x4 arithmetic; -mbulk-memory: struct copies and zeroing become
// memory.copy / memory.fill (there is no libc to provide memcpy / memset). The maximum memory
// is wasm32's 4 GiB so large products can grow into it; __heap_base tells the host where its
// arena may start.
const FLAGS = [
  "--target=wasm32",
  "-msimd128",
  "-mbulk-memory",
  "-O3",
  "-ffp-contract=off",
  "-nostdlib",
  "-Wall",
  "-Werror",
  "-Wl,--no-entry",
  "-Wl,--export=__heap_base",
  "-Wl,--max-memory=4294967296",
  "-Wl,--strip-all",
];
// The threaded module: the memory is imported and shared (atomics are required for that;
// lld makes the data segments passive and initialises them once, from the first instance).
// Every instance gets its own stack: the host sets the exported __stack_pointer of each
// worker's instance to a region of its own (mutable-globals lets lld export it).
const THREAD_FLAGS = [
  ...FLAGS,
  "-matomics",
  "-mmutable-globals",
  "-Wl,--shared-memory",
  "-Wl,--import-memory",
  "-Wl,--export=__stack_pointer",
];
// -mrelaxed-simd defines __wasm_relaxed_simd__, which turns c/madd.h's MADD into
// f32x4.relaxed_madd; nothing else changes.
const MODULES = [
  { file: "lorakit_kernels.wasm", flags: FLAGS },
  { file: "lorakit_kernels_threads.wasm", flags: THREAD_FLAGS },
  { file: "lorakit_kernels_relaxed.wasm", flags: [...FLAGS, "-mrelaxed-simd"] },
  { file: "lorakit_kernels_threads_relaxed.wasm", flags: [...THREAD_FLAGS, "-mrelaxed-simd"] },
];

function say(line) {
  console.error(`lorakit: ${line}`);
}

/** The newest clang-N installed (Debian installs them side by side), else plain `clang`. */
function findClang() {
  for (const name of ["clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14", "clang"]) {
    const r = spawnSync(name, ["--version"], { encoding: "utf8" });
    if (r.status === 0) return name;
  }
  return null;
}

function upToDate() {
  if (force) return false;
  const inputs = [...sources, ...headers, fileURLToPath(import.meta.url)];
  return MODULES.every(({ file }) => {
    const out = join(outDir, file);
    if (!existsSync(out)) return false;
    const built = statSync(out).mtimeMs;
    return inputs.every((f) => statSync(f).mtimeMs <= built);
  });
}

if (upToDate()) process.exit(0);
const clang = findClang();
if (clang === null) {
  const msg =
    "clang was not found, so the WebAssembly kernels were not built (apt-get install -y clang-16 lld-16, then npm run build:wasm)";
  if (requireBuild) {
    say(msg);
    process.exit(1);
  }
  say(`${msg}; the wasm backend is unavailable until then`);
  process.exit(0);
}
/** Whether this clang compiles c/madd.h's relaxed multiply-add (clang ≥ 16). */
function hasRelaxedSimd(cc) {
  const probe =
    "typedef float f4 __attribute__((__vector_size__(16)));\nf4 f(f4 a, f4 b, f4 c) { return __builtin_wasm_relaxed_madd_f32x4(a, b, c); }\n";
  const r = spawnSync(
    cc,
    ["--target=wasm32", "-msimd128", "-mrelaxed-simd", "-fsyntax-only", "-x", "c", "-"],
    {
      input: probe,
      encoding: "utf8",
    },
  );
  return r.status === 0;
}

let modules = MODULES;
if (!hasRelaxedSimd(clang)) {
  const msg = `${clang} cannot compile relaxed SIMD, so the relaxed-SIMD kernels (fused multiply-add, faster in browsers that have it) were not built; apt-get install -y clang-16 lld-16, then npm run build:wasm`;
  if (requireBuild) {
    say(msg);
    process.exit(1);
  }
  say(`${msg}; the plain SIMD128 modules are built and used everywhere until then`);
  modules = MODULES.filter(({ flags }) => !flags.includes("-mrelaxed-simd"));
  // A relaxed module left from older sources must not be loaded instead of the new plain one.
  for (const { file } of MODULES)
    if (!modules.some((m) => m.file === file)) rmSync(join(outDir, file), { force: true });
}
mkdirSync(outDir, { recursive: true });
for (const { file, flags } of modules) {
  const out = join(outDir, file);
  // Written to a temporary name and renamed, so a failed build never leaves half a module.
  const tmp = `${out}.tmp-${process.pid}`;
  const r = spawnSync(clang, [...flags, "-o", tmp, ...sources], { encoding: "utf8" });
  if (r.status !== 0) {
    say(`the WebAssembly kernel build failed (${clang}, ${file}):`);
    process.stderr.write(r.stderr || r.stdout || String(r.error ?? ""));
    process.exit(1);
  }
  renameSync(tmp, out);
  say(
    `built ${out.startsWith(root) ? out.slice(root.length + 1) : out} (${statSync(out).size} bytes, ${clang})`,
  );
}
