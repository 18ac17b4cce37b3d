// RoPE from config.json: transformers 4 writes rope_theta + rope_scaling; transformers 5
// writes rope_parameters {rope_type, rope_theta, ...scaling fields}, which wins when present.
// Supported scalings: none ("default"), "linear" (position interpolation) and "llama3"
// (Llama 3.1); anything else is refused rather than silently computed as plain RoPE.
import type { RopeScaling } from "./config.js";
import { fieldError, showValue } from "./config-error.js";
import type { ConfigFields } from "./config-fields.js";

/** `defaultTheta`: the model type's rope_theta default. */
export function readRope(
  f: ConfigFields,
  defaultTheta: number,
): { ropeTheta: number; ropeScaling: RopeScaling | null } {
  let source: unknown = f.has("rope_scaling") ? f.get("rope_scaling") : null;
  let field = "rope_scaling";
  let ropeTheta = f.posNum("rope_theta", defaultTheta);
  if (f.given("rope_parameters")) {
    const rp = f.get("rope_parameters");
    if (typeof rp !== "object" || Array.isArray(rp))
      throw fieldError("rope_parameters", rp, "expected an object");
    const r = rp as Record<string, unknown>;
    if ("full_attention" in r || "sliding_attention" in r)
      throw fieldError(
        "rope_parameters",
        rp,
        "per-layer-type RoPE parameters are not supported; give one set",
      );
    if (r.rope_theta !== undefined) {
      if (typeof r.rope_theta !== "number" || !(r.rope_theta > 0))
        throw fieldError("rope_parameters.rope_theta", r.rope_theta, "expected a positive number");
      ropeTheta = r.rope_theta;
    }
    source = rp;
    field = "rope_parameters";
  }
  return { ropeTheta, ropeScaling: parseRopeScaling(source, field) };
}

const SUPPORTED_ROPE = 'null, "default", "linear" and "llama3"';

/** A rope_scaling / rope_parameters object (`field` names it in errors); null for none. */
function parseRopeScaling(v: unknown, field: string): RopeScaling | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== "object" || Array.isArray(v))
    throw fieldError(field, v, `expected an object or null (supported: ${SUPPORTED_ROPE})`);
  const r = v as Record<string, unknown>;
  const type = r.rope_type ?? r.type ?? "default";
  const num = (k: string, check: (x: number) => boolean, want: string): number => {
    const x = r[k];
    if (typeof x !== "number" || !Number.isFinite(x) || !check(x))
      throw fieldError(`${field}.${k}`, x, `${type} RoPE scaling needs ${want}`);
    return x;
  };
  switch (type) {
    case "default":
      return null;
    case "linear":
      return Object.freeze({ type: "linear", factor: num("factor", (x) => x > 0, "a positive factor") });
    case "llama3": {
      const factor = num("factor", (x) => x > 0, "a positive factor");
      const lowFreqFactor = num("low_freq_factor", (x) => x > 0, "a positive low_freq_factor");
      const highFreqFactor = num(
        "high_freq_factor",
        (x) => x > lowFreqFactor,
        `high_freq_factor greater than low_freq_factor (${lowFreqFactor})`,
      );
      const originalMaxPositionEmbeddings = num(
        "original_max_position_embeddings",
        (x) => Number.isInteger(x) && x > 0,
        "original_max_position_embeddings, a positive integer",
      );
      return Object.freeze({
        type: "llama3",
        factor,
        lowFreqFactor,
        highFreqFactor,
        originalMaxPositionEmbeddings,
      });
    }
    default:
      throw fieldError(
        `${field}.rope_type`,
        type,
        `RoPE scaling ${showValue(type)} is not supported; lorakit supports ${SUPPORTED_ROPE}`,
      );
  }
}
