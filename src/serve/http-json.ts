// JSON in and out of the HTTP handlers: a request body that is not JSON is a 400, and every
// error leaves as OpenAI's error JSON with its 4xx/5xx status.
import type { Context } from "hono";
import { errorBody, ServeError } from "./errors.js";

/** The request body parsed as JSON, or a 400 invalid_json. */
export async function readJson(c: Context): Promise<unknown> {
  try {
    return await c.req.json();
  } catch (e) {
    throw new ServeError(400, "the request body is not valid JSON", "invalid_json", null, { cause: e });
  }
}

/** Any thrown value as OpenAI's error JSON with the status it maps to. */
export function sendError(c: Context, e: unknown): Response {
  const err = ServeError.from(e);
  return c.json(errorBody(err), err.status as 400);
}
