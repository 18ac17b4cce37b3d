// Typed reads of one config.json's fields, each with its default and its check. A field that
// is absent, or null where null has no meaning, takes the default; a value of the wrong type
// or out of range is a ConfigError naming the field. Sizes are also held to
// config-limits.ts's bounds, so no later allocation is sized by a corrupt number.
import { fieldError } from "./config-error.js";
import { sizeLimitProblem } from "./config-limits.js";

export class ConfigFields {
  constructor(readonly json: Readonly<Record<string, unknown>>) {}

  /** The raw value. */
  get(k: string): unknown {
    return this.json[k];
  }

  /** The key is the object's own and not undefined (null counts as present). */
  has(k: string): boolean {
    return Object.hasOwn(this.json, k) && this.json[k] !== undefined;
  }

  /** Present and not null. */
  given(k: string): boolean {
    return this.has(k) && this.json[k] !== null;
  }

  /** A positive integer within its size bound; required when `def` is undefined or null. */
  posInt(k: string, def?: number | null): number {
    const v = this.given(k) ? this.json[k] : def;
    if (v === undefined || v === null)
      throw fieldError(k, this.json[k], "it is required: a positive integer");
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
      throw fieldError(k, v, "expected a positive integer");
    const tooLarge = sizeLimitProblem(k, v);
    if (tooLarge !== null) throw fieldError(k, v, tooLarge);
    return v;
  }

  /** An integer >= 0 (absent or null: `def`). */
  nonNegInt(k: string, def: number): number {
    const v = this.json[k] === undefined || this.json[k] === null ? def : this.json[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
      throw fieldError(k, v, "expected an integer >= 0");
    return v;
  }

  /** A finite positive number. */
  posNum(k: string, def: number): number {
    const v = this.given(k) ? this.json[k] : def;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0)
      throw fieldError(k, v, "expected a positive number");
    return v;
  }

  bool(k: string, def: boolean): boolean {
    const v = this.given(k) ? this.json[k] : def;
    if (typeof v !== "boolean") throw fieldError(k, v, "expected true or false");
    return v;
  }

  /** A token id or null; an explicit null stays null (absent: `def`). */
  tokenId(k: string, def: number | null): number | null {
    const v = this.has(k) ? this.json[k] : def;
    if (v === null) return null;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0)
      throw fieldError(k, v, "expected a token id (integer >= 0) or null");
    return v;
  }
}
