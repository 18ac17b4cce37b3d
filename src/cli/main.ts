#!/usr/bin/env node
// The lorakit command line. Commands are loaded lazily so `lorakit --help` stays fast.
// Errors lorakit understands print as one clear message (no stack); anything else is a
// bug and prints in full. With --json, every failure also leaves one error object on stdout.
import { LorakitError } from "../core/errors.js";

// citty decides on colours when it loads and looks only at NO_COLOR / TERM / CI: without a
// terminal on both streams (piped, redirected, a test), no escape codes. FORCE_COLOR keeps them.
if (!(process.stdout.isTTY && process.stderr.isTTY) && !process.env.FORCE_COLOR) process.env.NO_COLOR = "1";
const { defineCommand, runMain, showUsage } = await import("citty");

const main = defineCommand({
  meta: {
    name: "lorakit",
    version: "0.1.0",
    description: "LoRA and its family for TypeScript: train, evaluate, merge and serve adapters",
  },
  subCommands: {
    info: () => import("./commands/info.js").then((m) => m.infoCommand),
    eval: () => import("./commands/eval.js").then((m) => m.evalCommand),
    generate: () => import("./commands/generate.js").then((m) => m.generateCommand),
    train: () => import("./commands/train.js").then((m) => m.trainCommand),
    demo: () => import("./commands/demo.js").then((m) => m.demoCommand),
    "build-demo-base": () => import("./commands/build-demo-base.js").then((m) => m.buildDemoBaseCommand),
    merge: () => import("./commands/merge.js").then((m) => m.mergeCommand),
    inspect: () => import("./commands/inspect.js").then((m) => m.inspectCommand),
    params: () => import("./commands/params.js").then((m) => m.paramsCommand),
    quantize: () => import("./commands/quantize.js").then((m) => m.quantizeCommand),
    "export-gguf": () => import("./commands/export-gguf.js").then((m) => m.exportGgufCommand),
    memory: () => import("./commands/memory.js").then((m) => m.memoryCommand),
    serve: () => import("./commands/serve.js").then((m) => m.serveCommand),
  },
});

/** The message and its causes, without repeating what the message already says. */
function explain(e: unknown): string {
  let msg = e instanceof Error ? e.message : String(e);
  let c = e instanceof Error ? e.cause : undefined;
  while (c instanceof Error) {
    const first = c.message.split("\n")[0];
    if (!msg.includes(first)) msg += `\n  caused by: ${first}`;
    c = c.cause;
  }
  return msg;
}

const rawArgs = process.argv.slice(2);
const jsonWanted = rawArgs.includes("--json");
let jsonErrorPrinted = false;

/**
 * The one way a failure is reported: `lorakit: MESSAGE` on stderr and, with --json, the
 * error as an object on stdout (OpenAI's shape), so a caller parsing stdout never gets nothing.
 */
function reportError(message: string, type: string): void {
  process.stderr.write(`lorakit: ${message}\n`);
  if (jsonWanted && !jsonErrorPrinted) {
    jsonErrorPrinted = true;
    process.stdout.write(`${JSON.stringify({ error: { message, type } })}\n`);
  }
}

process.on("uncaughtException", (e) => {
  if (e instanceof LorakitError) {
    reportError(explain(e), e.name);
    process.exit(1);
  }
  if (jsonWanted && !jsonErrorPrinted) {
    jsonErrorPrinted = true;
    process.stdout.write(`${JSON.stringify({ error: { message: explain(e), type: "InternalError" } })}\n`);
  }
  throw e;
});

// `lorakit inspect DIR | head`: the reader went away; stop quietly instead of a stack.
for (const stream of [process.stdout, process.stderr])
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    throw e;
  });

// citty prints a stack for every non-usage error; route ours through `explain` instead.
// On a usage error (missing or unknown argument) citty prints the whole usage on stdout and
// then the message; print the message alone, as one line on stderr, so that stdout stays
// clean for --json. The usage still shows for --help and for a bare `lorakit`.
const helpWanted = rawArgs.length === 0 || rawArgs.some((a) => a === "--help" || a === "-h");
const subs = main.subCommands as Record<string, () => Promise<{ args?: unknown }>>;
const subName = rawArgs[0] !== undefined && Object.hasOwn(subs, rawArgs[0]) ? rawArgs[0] : null;
let usageError = false;
const origError = console.error;
console.error = (...xs: unknown[]) => {
  if (xs[0] instanceof LorakitError) return reportError(explain(xs[0]), xs[0].name);
  if (usageError && typeof xs[0] === "string") {
    usageError = false;
    // biome-ignore lint/suspicious/noControlCharactersInRegex: strips citty's colour codes
    const msg = xs[0].replace(/\x1b\[[0-9;]*m/g, "");
    return reportError(`${msg} (see: lorakit ${subName ? `${subName} ` : ""}--help)`, "UsageError");
  }
  if (xs[0] instanceof Error && jsonWanted && !jsonErrorPrinted) {
    jsonErrorPrinted = true;
    process.stdout.write(
      `${JSON.stringify({ error: { message: explain(xs[0]), type: "InternalError" } })}\n`,
    );
  }
  origError(...xs);
};

const camel = (s: string) => s.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/**
 * citty ignores flags a command does not define, so a typo (`--max-new-token 5`) would run
 * silently with the default; refuse it instead, with the closest known flag.
 */
async function unknownFlag(): Promise<string | null> {
  if (subName === null || helpWanted) return null;
  const cmd = await subs[subName]();
  const defs = (typeof cmd.args === "function" ? await cmd.args() : (cmd.args ?? {})) as Record<
    string,
    { type?: string; alias?: string | string[] }
  >;
  const known = new Set(["help", "version"]);
  const names: string[] = [];
  for (const [name, d] of Object.entries(defs)) {
    if (d.type === "positional") continue;
    names.push(name);
    for (const n of [name, camel(name), kebab(name), ...[d.alias ?? []].flat()]) known.add(n);
    if (d.type === "boolean") known.add(`no-${name}`);
  }
  for (const a of rawArgs.slice(1)) {
    if (a === "--") break;
    if (!a.startsWith("--")) continue;
    const flag = a.slice(2).split("=", 1)[0];
    if (known.has(flag)) continue;
    const near = names
      .map((n) => [n, editDistance(flag, n)] as const)
      .filter(([, d]) => d <= Math.max(2, Math.floor(flag.length / 4)))
      .sort((x, y) => x[1] - y[1])[0];
    return `unknown option --${flag} for \`lorakit ${subName}\`${near ? `; did you mean --${near[0]}?` : ""} (see: lorakit ${subName} --help)`;
  }
  return null;
}

const bad = await unknownFlag();
if (bad !== null) {
  reportError(bad, "UsageError");
  process.exit(1);
}

runMain(main, {
  rawArgs,
  showUsage: async (cmd, parent) => {
    if (helpWanted) return showUsage(cmd, parent);
    usageError = true;
  },
});
