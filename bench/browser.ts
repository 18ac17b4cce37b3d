// LoRA training in a real browser page: headless Chromium (Debian's, driven by
// playwright-core) opens the browser example (examples/browser/), loads the demo model, and
// trains the same steps on the same text in the same page: on the WebAssembly kernels with
// --threads threads (default: the page's default, the cores the browser reports, at most 8),
// on the WebAssembly kernels on one thread, and on the TypeScript reference kernels, in turn,
// --rounds times (default 2). The WebAssembly kernels are the relaxed-SIMD build where
// Chromium has relaxed SIMD (it does); --simd128 adds the plain SIMD128 build on --threads
// threads to each round, to see what the fused multiply-add gives. Prints tokens/s of each
// (the median step time after the first step, measured in the page's Worker), the ratios to
// the reference kernels, and how far the losses of the steps all ran apart (the kernels must
// agree on them). Each round also prints the host's 1-minute load average when it began (the
// host may be shared: a busy second core is what two threads need).
//
//   npm run build && node dist/bench/browser.js [--steps 10] [--ref-steps 4] [--threads N] [--rounds 2] [--batch 8] [--seq 128] [--simd128] [--json]
import { loadavg } from "node:os";
import { type Browser, chromium, type Page } from "playwright-core";
import { sotuText } from "../src/data/corpora.js";
import { CHROMIUM, chromiumArgs, startExampleServer } from "../test/browser/example-server.js";

const argv = process.argv.slice(2);
const opt = (n: string, d: number) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const steps = opt("steps", 10);
const refSteps = opt("ref-steps", 4);
const B = opt("batch", 8);
const T = opt("seq", 128);
const json = argv.includes("--json");
const threadsArg = opt("threads", 0);
const roundsArg = opt("rounds", 2);

interface Run {
  backend: string;
  threads: number;
  steps: number;
  medianStepSeconds: number;
  tokensPerSecond: number;
  losses: number[];
}

type Kernels = "wasm" | "wasm-simd128" | "ref";

async function train(page: Page, backend: Kernels, n: number, threads = 1): Promise<Run> {
  await page.fill("#steps", String(n));
  await page.fill("#threads", String(threads));
  await page.fill("#batch", String(B));
  await page.fill("#seq", String(T));
  await page.selectOption("#backend", backend);
  await page.click("#train");
  await page.waitForFunction(
    () => ["done", "error"].includes(document.getElementById("train-status")!.dataset.state!),
    null,
    { timeout: 0 },
  );
  const error = await page.textContent("#error");
  if (error) throw new Error(`the page reported: ${error}`);
  const rows = await page.$$eval("#loss-table tr", (trs) =>
    trs.map((r) => ({
      elapsed: Number((r as HTMLElement).dataset.elapsed),
      loss: Number((r as HTMLElement).dataset.loss),
    })),
  );
  const used = Number(await page.getAttribute("#train-status", "data-threads"));
  // Each step's own time; the first carries one-time costs (kernel warm-up, buffer growth).
  const times = rows.slice(1).map((r, i) => r.elapsed - rows[i].elapsed);
  times.sort((a, b) => a - b);
  const median = times.length ? times[Math.floor(times.length / 2)] : rows[0].elapsed;
  return {
    backend,
    threads: used,
    steps: n,
    medianStepSeconds: median,
    tokensPerSecond: (B * T) / median,
    losses: rows.map((r) => r.loss),
  };
}

const server = await startExampleServer();
let browser: Browser | null = null;
try {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: chromiumArgs() });
  const page = await browser.newPage();
  await page.goto(server.url);
  await page.waitForSelector("html[data-ready=true]");
  const isolated = await page.evaluate(() => crossOriginIsolated);
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  // Whether "wasm" runs the relaxed-SIMD build here (what loadWasmBackend checks).
  const relaxedSimd = await page.evaluate(async () => {
    const path = "/dist/src/kernels/wasm/module.js";
    return ((await import(path)) as { relaxedSimdSupported(): boolean }).relaxedSimdSupported();
  });
  await page.click("#load-demo");
  await page.waitForSelector('#model-status[data-state="ready"]');
  await page.fill("#text", sotuText({ years: [2020, 2021] }));
  const threads = threadsArg || Number(await page.inputValue("#threads"));
  // The machine is shared: the kinds run in turn, `rounds` times, so a load spike hits all of
  // them, and each round's ratios compare runs minutes apart at most.
  const kinds: [Kernels, number, number][] = [["wasm", threads, steps]];
  if (argv.includes("--simd128")) kinds.push(["wasm-simd128", threads, steps]);
  if (threads > 1) kinds.push(["wasm", 1, steps]);
  kinds.push(["ref", 1, refSteps]);
  const rounds: Run[][] = [];
  const loads: number[] = [];
  for (let i = 0; i < roundsArg; i++) {
    loads.push(loadavg()[0]);
    const round: Run[] = [];
    for (const [backend, n, k] of kinds) round.push(await train(page, backend, k, n));
    rounds.push(round);
  }
  const ref = rounds[0][kinds.length - 1];
  const all = rounds.flat();
  const shared = Math.min(...all.map((r) => r.losses.length));
  const maxRelDiff = Math.max(
    ...all.flatMap((r) =>
      r.losses.slice(0, shared).map((l, i) => Math.abs(l - ref.losses[i]) / Math.abs(ref.losses[i])),
    ),
  );
  const result = {
    browser: `Chromium ${browser.version()}`,
    crossOriginIsolated: isolated,
    hardwareConcurrency: cores,
    wasmBuild: relaxedSimd ? "relaxed" : "simd128",
    shape: { batch: B, seq: T, r: 16, targetModules: "all-linear", model: "models/demo-base" },
    rounds: rounds.map((round) =>
      round.map((r) => ({ ...r, overRef: r.tokensPerSecond / round[round.length - 1].tokensPerSecond })),
    ),
    loadAverageAtRoundStart: loads,
    loadAverageAtEnd: loadavg()[0],
    lossMaxRelDiff: maxRelDiff,
  };
  if (json) console.log(JSON.stringify(result, null, 2));
  else {
    console.log(
      `${result.browser}, crossOriginIsolated ${isolated}, ${cores} logical cores, wasm = the ${result.wasmBuild} build`,
    );
    console.log(`demo model, r=16 all-linear, ${B}×${T}, median step after the first:`);
    result.rounds.forEach((round, i) => {
      console.log(` round ${i + 1} (load average ${result.loadAverageAtRoundStart[i].toFixed(2)})`);
      for (const r of round)
        console.log(
          `  ${r.backend.padEnd(12)} ${String(r.threads).padStart(2)} thread${r.threads === 1 ? " " : "s"} ${r.tokensPerSecond.toFixed(0).padStart(6)} tokens/s  ${(r.medianStepSeconds * 1000).toFixed(0).padStart(5)} ms/step  ${r.overRef.toFixed(1).padStart(5)}× ref  (${r.steps} steps)`,
        );
    });
    console.log(`  losses of the ${shared} steps all ran agree to ${maxRelDiff.toExponential(1)} (relative)`);
    console.log(`  load average at the end ${result.loadAverageAtEnd.toFixed(2)}`);
  }
} finally {
  await browser?.close();
  server.close();
}
