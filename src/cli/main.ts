#!/usr/bin/env node
// The lorakit command line. Commands are loaded lazily so `lorakit --help` stays fast.
// Errors lorakit understands print as one clear message (no stack); anything else is a
// bug and prints in full.
import { defineCommand, runMain } from "citty";
import { LorakitError } from "../core/errors.js";

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
  },
});

function explain(e: unknown): string {
  let msg = e instanceof Error ? e.message : String(e);
  let c = e instanceof Error ? e.cause : undefined;
  while (c instanceof Error) {
    msg += `\n  caused by: ${c.message}`;
    c = c.cause;
  }
  return msg;
}

process.on("uncaughtException", (e) => {
  if (e instanceof LorakitError) {
    process.stderr.write(`lorakit: ${explain(e)}\n`);
    process.exit(1);
  }
  throw e;
});

// citty prints a stack for every non-usage error; route ours through `explain` instead.
const origError = console.error;
console.error = (...xs: unknown[]) => {
  if (xs[0] instanceof LorakitError) return origError(`lorakit: ${explain(xs[0])}`);
  origError(...xs);
};

runMain(main);
