// The browser entry (loadWasmBackend) in a real headless Chromium, when one is installed
// (skipped otherwise): the package's compiled modules are served as they are, with and
// without cross-origin isolation. On an isolated page a module Worker gets threads (the
// worker file found through new URL("./worker.js", import.meta.url)) and the same bits as one
// thread; the page's main thread and a non-isolated page run on one thread with a notice.
// Chromium validates relaxed SIMD, so the relaxed build is the one loaded by default.
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { describe, test } from "node:test";
import { wasmThreadsModulePath } from "../../src/kernels/wasm/node/load.js";
import { repoRoot } from "../util/repo.js";

function findChromium(): string | null {
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    const r = spawnSync(name, ["--version"], { encoding: "utf8" });
    if (r.status === 0) return name;
  }
  return null;
}
const chromium = findChromium();
const skip =
  chromium === null
    ? "no Chromium here (apt-get install -y chromium)"
    : !existsSync(wasmThreadsModulePath())
      ? "wasm kernels not built"
      : false;

const PAGE = `<!doctype html><meta charset="utf-8"><script type="module">
const say = (s) => fetch("/log", { method: "POST", body: s });
const { loadWasmBackend } = await import("/dist/src/kernels/wasm/load.js");
const main = await loadWasmBackend({ threads: 2, install: false });
await say("main " + main.threads + " " + main.notice);
const w = new Worker("/page/worker.js", { type: "module" });
w.onmessage = (e) => say(e.data);
w.onerror = (e) => say("worker error " + e.message);
</script>`;

const WORKER = `import { loadWasmBackend } from "/dist/src/kernels/wasm/load.js";
try {
  const one = await loadWasmBackend({ threads: 1, install: false });
  const many = await loadWasmBackend({ threads: 3, install: false });
  const m = 97, n = 203, k = 300;
  const a = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i));
  const b = Float32Array.from({ length: k * n }, (_, i) => Math.cos(i));
  const run = (be) => {
    const c = new Float32Array(m * n);
    be.gemm({ a, b, c, m, n, k, batch: 1, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, alpha: 1, beta: 0 });
    return new Uint32Array(c.buffer);
  };
  const c1 = run(one.backend), c3 = run(many.backend);
  const same = c1.every((x, i) => x === c3[i]);
  const threads = many.threads;
  many.dispose();
  // Chromium has relaxed SIMD, so the default is the relaxed build; the plain one, asked for,
  // agrees with it to rounding (fused or not, the sums differ in the last bits only).
  const plain = await loadWasmBackend({ threads: 1, install: false, simd: "simd128" });
  const f1 = new Float32Array(c1.buffer), fp = new Float32Array(run(plain.backend).buffer);
  const close = f1.every((x, i) => Math.abs(x - fp[i]) <= 1e-4 * (1 + Math.abs(fp[i])));
  postMessage("worker " + threads + " " + many.notice + " identical " + same + ", after dispose " + many.threads +
    ", " + one.simd + "/" + many.simd + ", " + plain.simd + " close " + close);
} catch (e) { postMessage("worker error " + e.message); }`;

const TYPES: Record<string, string> = {
  ".js": "text/javascript",
  ".wasm": "application/wasm",
  ".html": "text/html",
};

/** Serves the repository (dist/) and the test page; resolves each POST /log line to `onLog`. */
function serve(isolated: boolean, onLog: (line: string) => void): Promise<Server> {
  const root = repoRoot();
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    if (path === "/log") {
      let body = "";
      req.on("data", (d) => {
        body += d;
      });
      req.on("end", () => {
        onLog(body);
        res.end();
      });
      return;
    }
    const headers: Record<string, string> = isolated
      ? { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" }
      : {};
    let body: string | Buffer | null = null;
    if (path === "/page/index.html") body = PAGE;
    else if (path === "/page/worker.js") body = WORKER;
    else if (path.startsWith("/dist/")) {
      const file = normalize(join(root, path));
      if (file.startsWith(join(root, "dist")) && existsSync(file)) body = readFileSync(file);
    }
    if (body === null) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, "content-type": TYPES[extname(path)] ?? "application/octet-stream" });
    res.end(body);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

/** Opens the page in headless Chromium and collects log lines until `done` says so (or 90 s). */
async function visit(isolated: boolean, done: (lines: string[]) => boolean): Promise<string[]> {
  const lines: string[] = [];
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const server = await serve(isolated, (line) => {
    lines.push(line);
    if (done(lines)) finish();
  });
  const profile = mkdtempSync(join(tmpdir(), "lorakit-chromium-"));
  const port = (server.address() as AddressInfo).port;
  let browser: ChildProcess | null = null;
  const timer = setTimeout(finish, 90_000);
  try {
    browser = spawn(
      chromium as string,
      [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        `--user-data-dir=${profile}`,
        `http://127.0.0.1:${port}/page/index.html`,
      ],
      // Its own process group, so cleanup can stop the helper processes it starts too.
      { stdio: "ignore", detached: true },
    );
    await finished;
  } finally {
    clearTimeout(timer);
    const b = browser;
    if (b !== null && b.exitCode === null && b.signalCode === null) {
      const exited = new Promise((resolve) => b.once("exit", resolve));
      b.kill();
      await exited;
    }
    // The helper processes (zygote, GPU, crashpad) outlive the browser for a moment and keep
    // writing to the profile: stop the whole group before removing it.
    if (b?.pid !== undefined)
      try {
        process.kill(-b.pid, "SIGKILL");
      } catch {
        // The group is already gone.
      }
    server.close();
    server.closeAllConnections();
    // Chromium's helper processes may still be closing files in the profile for a moment.
    rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  }
  return lines;
}

const complete = (lines: string[]) =>
  lines.some((l) => l.startsWith("main")) && lines.some((l) => l.startsWith("worker"));

describe("loadWasmBackend in headless Chromium", { skip }, () => {
  test("cross-origin isolated: threads in a Worker, bit-identical to one; one thread on the main thread", async () => {
    const lines = await visit(true, complete);
    assert.ok(
      lines.includes("worker 3 null identical true, after dispose 1, relaxed/relaxed, simd128 close true"),
      lines.join("\n"),
    );
    assert.ok(
      lines.some((l) =>
        /^main 1 lorakit: .*1 thread, not 2: Atomics\.wait is not allowed on a page's main thread/.test(l),
      ),
      lines.join("\n"),
    );
  });
  test("not isolated: one thread, and the notice names the headers", async () => {
    const lines = await visit(false, complete);
    assert.ok(
      lines.some((l) =>
        /^worker 1 lorakit: .*1 thread, not 3: .*not cross-origin isolated .*Cross-Origin-Embedder-Policy: require-corp.* identical true, after dispose 1, relaxed\/relaxed, simd128 close true$/.test(
          l,
        ),
      ),
      lines.join("\n"),
    );
    assert.ok(
      lines.some((l) => /^main 1 lorakit: .*not cross-origin isolated/.test(l)),
      lines.join("\n"),
    );
  });
});
