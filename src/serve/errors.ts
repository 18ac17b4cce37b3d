// Errors the server answers with: an HTTP status and OpenAI's error body
// ({"error": {"message", "type", "param", "code"}}), carried across the worker boundary as JSON.
import { LorakitError } from "../core/errors.js";

export type ServeErrorType =
  | "invalid_request_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error";

export interface ServeErrorJson {
  status: number;
  message: string;
  type: ServeErrorType;
  code: string | null;
  param: string | null;
}

export class ServeError extends LorakitError {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get type(): ServeErrorType {
    if (this.status === 404) return "not_found_error";
    if (this.status === 429) return "rate_limit_error";
    if (this.status >= 500) return "server_error";
    return "invalid_request_error";
  }

  toJSON(): ServeErrorJson {
    return {
      status: this.status,
      message: this.message,
      type: this.type,
      code: this.code,
      param: this.param,
    };
  }

  static fromJSON(j: ServeErrorJson): ServeError {
    return new ServeError(j.status, j.message, j.code, j.param);
  }

  /** Any thrown value as a ServeError: ours as they are, lorakit's as 400, others as 500. */
  static from(e: unknown, fallbackStatus = 500): ServeError {
    if (e instanceof ServeError) return e;
    const msg = e instanceof Error ? e.message : String(e);
    if (e instanceof LorakitError) return new ServeError(400, msg, null, null, { cause: e });
    return new ServeError(fallbackStatus, `internal error: ${msg}`, "internal_error", null, { cause: e });
  }
}

/** OpenAI's error body for a ServeError. */
export function errorBody(e: ServeError | ServeErrorJson): {
  error: { message: string; type: string; param: string | null; code: string | null };
} {
  const j = e instanceof ServeError ? e.toJSON() : e;
  return { error: { message: j.message, type: j.type, param: j.param, code: j.code } };
}
