// The page's training Worker: lorakit's trainer protocol (runTrainerWorker) on the kernels the
// page asked for in this script's URL (?kernels=wasm|ref&threads=N). The WebAssembly kernels
// start their own threads from here: Atomics.wait, which they need, is not allowed on a page's
// main thread.
import { loadWasmBackend, runTrainerWorker } from "lorakit";

const params = new URL(self.location.href).searchParams;

runTrainerWorker(self, {
  backend: async () => {
    // The engine starts on the TypeScript reference kernels.
    if (params.get("kernels") === "ref") return report({ name: "ref", threads: 1, notice: null });
    const { threads, notice } = await loadWasmBackend({
      threads: Number(params.get("threads")) || undefined,
    });
    report({ name: "wasm", threads, notice });
  },
});

/** Tells the page which kernels run (a message outside the trainer protocol, which WorkerTrainer ignores). */
function report(kernels) {
  self.postMessage({ type: "kernels", ...kernels });
}
