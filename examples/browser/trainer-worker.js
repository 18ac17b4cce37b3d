// The page's training Worker: lorakit's trainer protocol (runTrainerWorker) on the kernels the
// page asked for in this script's URL (?kernels=wasm|wasm-simd128|ref&threads=N; wasm takes the
// relaxed-SIMD build where the browser has relaxed SIMD, wasm-simd128 the plain one always). The WebAssembly kernels
// start their own threads from here: Atomics.wait, which they need, is not allowed on a page's
// main thread. What the hook returns (threads, notice) comes back to the page in load()'s
// `kernels`.
import { loadWasmBackend, runTrainerWorker } from "lorakit";

const params = new URL(self.location.href).searchParams;

runTrainerWorker(self, {
  backend: async () => {
    // The engine starts on the TypeScript reference kernels.
    if (params.get("kernels") === "ref") return { threads: 1, notice: null };
    const { threads, notice } = await loadWasmBackend({
      threads: Number(params.get("threads")) || undefined,
      simd: params.get("kernels") === "wasm-simd128" ? "simd128" : undefined,
    });
    return { threads, notice };
  },
});
