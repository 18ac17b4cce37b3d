// Builds lorakit's WebAssembly kernels (src/kernels/wasm/c/*.c) with clang and lld into two
// modules beside the compiled modules that load them (dist/src/kernels/wasm/):
//   lorakit_kernels.wasm          its own memory, one thread (pages without cross-origin
//                                 isolation, where shared memory does not exist)
//   lorakit_kernels_threads.wasm  the same code on an imported shared memory, instantiated
//                                 once per thread (kernels/wasm/pool.ts)
// Nothing is downloaded: the toolchain is Debian's (apt-get install -y clang lld).
//
//   node scripts/build-wasm.mjs            what `npm test` runs: builds when the sources are
//                                          newer than the module; without clang it says so
//                                          and exits 0 (the wasm tests then skip, as the
//                                          native ones do without the addon)
//   node scripts/build-wasm.mjs --require  fail without clang (npm run build:wasm, prepack)
//   --force                                rebuild even when up to date
//   --out <dir>                            write both elsewhere (the test that rebuilds and compares)
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from "node:fs";
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
const MODULES = [
  { file: "lorakit_kernels.wasm", flags: FLAGS },
  { file: "lorakit_kernels_threads.wasm", flags: THREAD_FLAGS },
];

function say(line) {
  console.error(`lorakit: ${line}`);
}

function findClang() {
  for (const name of ["clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14"]) {
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
    "clang was not found, so the WebAssembly kernels were not built (apt-get install -y clang lld, then npm run build:wasm)";
  if (requireBuild) {
    say(msg);
    process.exit(1);
  }
  say(`${msg}; the wasm backend is unavailable until then`);
  process.exit(0);
}
mkdirSync(outDir, { recursive: true });
for (const { file, flags } of MODULES) {
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
