// The error of a config.json lorakit cannot use, and the one message shape every field check
// shares: `config.json: "<field>" is <value>; <what is wanted>`.
import { LorakitError } from "../../core/errors.js";

/** A config.json lorakit cannot use: the message names the field, the value and what is supported. */
export class ConfigError extends LorakitError {}

/** A value as JSON, cut to 80 characters (a corrupt config may hold megabytes in one field). */
export function showValue(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export function fieldError(field: string, value: unknown, want: string): ConfigError {
  return new ConfigError(`config.json: "${field}" is ${showValue(value)}; ${want}`);
}
