// eos_token_id from config.json: one id, a list of ids (Llama 3 instruct models stop on
// several), or null. bos_token_id and pad_token_id are single ids (ConfigFields.tokenId).
import { fieldError } from "./config-error.js";
import type { ConfigFields } from "./config-fields.js";

/** `def`: the model type's default when the key is absent. */
export function readEosTokenId(f: ConfigFields, def: number | null): number | readonly number[] | null {
  const raw = f.has("eos_token_id") ? f.get("eos_token_id") : def;
  if (Array.isArray(raw)) {
    if (!raw.every((v) => typeof v === "number" && Number.isInteger(v) && v >= 0))
      throw fieldError("eos_token_id", raw, "expected a token id, a list of token ids, or null");
    return Object.freeze([...(raw as number[])]);
  }
  if (raw === null || raw === undefined) return null;
  if (typeof raw !== "number" || !Number.isInteger(raw) || raw < 0)
    throw fieldError("eos_token_id", raw, "expected a token id (integer >= 0) or null");
  return raw;
}
