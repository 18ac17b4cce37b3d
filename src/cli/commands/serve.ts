import { defineCommand } from "citty";
import type { ServeLimits } from "../../serve/protocol.js";
import { DEFAULT_LIMITS } from "../../serve/protocol.js";
import { startServer } from "../../serve/server.js";
import {
  CliError,
  DTYPE_FLAG,
  dtypeArg,
  KV_DTYPE_FLAG,
  kvDtypeArg,
  log,
  numArg,
  out,
  printJson,
  requireArg,
} from "../output.js";
import { watchParent } from "../parent-watch.js";
import { threadsFlag } from "../setup.js";

/** Limit flags: flag name → ServeLimits key (defaults in serve/protocol.ts DEFAULT_LIMITS). */
const LIMIT_FLAGS = {
  "max-tokens": "maxTokens",
  "max-prompt-tokens": "maxPromptTokens",
  "max-body-bytes": "maxBodyBytes",
  "max-concurrent": "maxConcurrent",
  "max-batch": "maxBatch",
  "max-loaded-adapters": "maxLoadedAdapters",
  "max-adapter-bytes": "maxAdapterBytes",
  "adapter-idle-seconds": "adapterIdleSeconds",
  "request-timeout-seconds": "requestTimeoutSeconds",
  "stall-seconds": "stallSeconds",
} as const satisfies Record<string, keyof ServeLimits>;

const limitArgs = Object.fromEntries(
  Object.entries(LIMIT_FLAGS).map(([flag, key]) => [
    flag,
    { type: "string" as const, description: `default ${DEFAULT_LIMITS[key]}` },
  ]),
) as Record<keyof typeof LIMIT_FLAGS, { type: "string"; description: string }>;

function parseLoras(v: unknown): { name: string; path: string }[] {
  if (v === undefined) return [];
  const items = (Array.isArray(v) ? v : [v]).flatMap((s) => String(s).split(","));
  return items
    .filter((s) => s !== "")
    .map((s) => {
      const eq = s.indexOf("=");
      if (eq <= 0 || eq === s.length - 1)
        throw new CliError(`--lora takes name=path, got ${JSON.stringify(s)}`);
      return { name: s.slice(0, eq), path: s.slice(eq + 1) };
    });
}

export const serveCommand = defineCommand({
  meta: { name: "serve", description: "Serve the base model and its adapters with an OpenAI-compatible API" },
  args: {
    model: { type: "string", description: "base model folder", required: true },
    dtype: DTYPE_FLAG,
    "kv-dtype": KV_DTYPE_FLAG,
    adapters: {
      type: "string",
      description: "adapter root: each subfolder with a PEFT adapter is a model id",
    },
    lora: { type: "string", description: "extra adapter as name=path (repeatable, or comma-separated)" },
    host: { type: "string", description: "address to listen on (default 127.0.0.1)" },
    port: { type: "string", description: "port (default 8000; 0 = any free port)" },
    "served-model-name": {
      type: "string",
      description: "the base model's id (default: the model folder's name)",
    },
    ...limitArgs,
    threads: { type: "string", description: "kernel threads (default: all cores)" },
    json: { type: "boolean", description: "print one JSON object (url, models) on stdout once listening" },
  },
  async run({ args, rawArgs }) {
    const kvDtype = kvDtypeArg(args["kv-dtype"]);
    const limits: Partial<ServeLimits> = {};
    for (const [flag, key] of Object.entries(LIMIT_FLAGS)) {
      const v = (args as Record<string, unknown>)[flag];
      if (v !== undefined) limits[key] = numArg(flag, v, { min: key === "adapterIdleSeconds" ? 0 : 1 });
    }
    // citty keeps the last of repeated flags; read every --lora from the raw arguments.
    const loraRaw: string[] = [];
    rawArgs.forEach((a, i) => {
      if (a === "--lora" && rawArgs[i + 1] !== undefined) loraRaw.push(rawArgs[i + 1]);
      else if (a.startsWith("--lora=")) loraRaw.push(a.slice("--lora=".length));
    });
    const server = await startServer({
      modelDir: requireArg("model", args.model),
      adapterRoot: args.adapters ?? null,
      loras: parseLoras(loraRaw.length ? loraRaw : args.lora),
      host: args.host ?? "127.0.0.1",
      port: args.port === undefined ? 8000 : numArg("port", args.port, { int: true, min: 0, max: 65535 }),
      baseId: args["served-model-name"],
      limits,
      dtype: dtypeArg(args.dtype),
      kvDtype,
      threads:
        args.threads === undefined
          ? null
          : threadsFlag(numArg("threads", args.threads, { int: true, min: 1 })),
    });
    if (server.notice) log(server.notice);
    if (args.json)
      printJson({
        url: server.url,
        port: server.port,
        base_model: server.baseId,
        adapters: server.adapters.map((a) => a.id),
        backend: server.backend,
      });
    else {
      out(`lorakit: listening on ${server.url} (kernels: ${server.backend})`);
      out(`  base model: ${server.baseId}`);
      out(
        `  adapters (${server.adapters.length}): ${server.adapters.map((a) => a.id).join(", ") || "none"}${args.adapters ? `  [root ${args.adapters}]` : ""}`,
      );
      out(`  try: curl ${server.url}/v1/models`);
    }
    let stopping = false;
    const stop = (why: string) => {
      if (stopping) return;
      stopping = true;
      log(`lorakit: shutting down (${why})`);
      server.close().then(() => process.exit(0));
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGHUP", () => stop("SIGHUP"));
    watchParent(() => stop("the parent process exited"));
  },
});
