// Everything the CLI prints goes through here: with --json, stdout carries exactly one
// JSON object and every log line goes to stderr.

import { LorakitError } from "../core/errors.js";
import { KV_DTYPES, type KVDType } from "../models/llama/kv-cache.js";
import type { WeightDType } from "../models/node/load.js";

export class CliError extends LorakitError {}

export function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** A line of a command's human-readable result (stdout). */
export function out(msg: string): void {
  process.stdout.write(`${msg}\n`);
}

export function printJson(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

export function fmtInt(n: number): string {
  return n.toLocaleString("en-US");
}

export function fmtBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 2)} ${units[i]}`;
}

/** Parses a numeric flag, naming it in the error. */
export function numArg(
  name: string,
  v: unknown,
  opts: { int?: boolean; min?: number; max?: number } = {},
): number {
  const n = typeof v === "number" ? v : Number(v);
  if (v === undefined || v === "" || !Number.isFinite(n) || (opts.int && !Number.isInteger(n)))
    throw new CliError(`--${name} must be ${opts.int ? "an integer" : "a number"}, got ${JSON.stringify(v)}`);
  if (opts.min !== undefined && n < opts.min) throw new CliError(`--${name} must be ≥ ${opts.min}, got ${n}`);
  if (opts.max !== undefined && n > opts.max) throw new CliError(`--${name} must be ≤ ${opts.max}, got ${n}`);
  return n;
}

export function requireArg(name: string, v: unknown): string {
  if (typeof v !== "string" || v === "") throw new CliError(`--${name} is required`);
  return v;
}

/** The `--dtype` flag of every command that loads a model. */
export const DTYPE_FLAG = {
  type: "string",
  description:
    "dtype the weights live in: auto (default: a bf16 checkpoint stays bf16, anything else f32) | f32 | bf16; compute is f32",
} as const;

export const KV_DTYPE_FLAG = {
  type: "string",
  description:
    "dtype the KV cache is stored in: f32 (default) | bf16 (half the memory; attention reads it widened)",
} as const;

/** Parses `--kv-dtype` (f32 when absent). */
export function kvDtypeArg(v: unknown): KVDType {
  if (v === undefined) return "f32";
  if ((KV_DTYPES as readonly unknown[]).includes(v)) return v as KVDType;
  throw new CliError(`--kv-dtype must be ${KV_DTYPES.join(" or ")}, got ${JSON.stringify(v)}`);
}

/** Parses `--dtype` (auto when absent). */
export function dtypeArg(v: unknown): WeightDType {
  if (v === undefined) return "auto";
  if (v === "auto" || v === "f32" || v === "bf16") return v;
  throw new CliError(`--dtype must be auto, f32 or bf16, got ${JSON.stringify(v)}`);
}
