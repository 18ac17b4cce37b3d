// Starts the browser example's server (examples/browser/serve.mjs, what `npm run
// example:browser` runs) as a child process on a free port, and finds a Chromium to drive.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../util/repo.js";

export interface ExampleServer {
  /** The page's URL, as the server printed it. */
  url: string;
  /** The server's origin (http://127.0.0.1:PORT). */
  origin: string;
  close(): void;
}

export async function startExampleServer(): Promise<ExampleServer> {
  const child: ChildProcess = spawn(
    process.execPath,
    [join(repoRoot(), "examples/browser/serve.mjs"), "--port", "0"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(
      () => reject(new Error(`serve.mjs printed no URL in 20 s:\n${out}${err}`)),
      20_000,
    );
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /(http:\/\/127\.0\.0\.1:\d+\/\S*)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.stderr!.on("data", (d) => (err += d));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve.mjs exited with ${code} before listening:\n${out}${err}`));
    });
  });
  return { url, origin: new URL(url).origin, close: () => child.kill() };
}

/** Debian's chromium (LORAKIT_CHROMIUM overrides the path). */
export const CHROMIUM = process.env.LORAKIT_CHROMIUM ?? "/usr/bin/chromium";

/**
 * Why the browser tests cannot run here, or null when they can. Said loudly: a skipped
 * browser test must not pass for a green one unnoticed.
 */
export function chromiumMissing(): string | null {
  if (existsSync(CHROMIUM)) return null;
  const msg = `Chromium not found at ${CHROMIUM}: the in-browser tests are SKIPPED. Install it with \`apt-get install -y chromium\` (or set LORAKIT_CHROMIUM to a Chromium binary); .ci/run installs it.`;
  console.error(`\n*** ${msg}\n`);
  return msg;
}

/** Chromium's flags for a headless run here: as root the sandbox cannot start. */
export function chromiumArgs(): string[] {
  return process.getuid?.() === 0 ? ["--no-sandbox"] : [];
}
