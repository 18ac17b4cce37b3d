// Which layers attend fully and which over a sliding window. llama: every layer fully.
// mistral: every layer over sliding_window when it is set. qwen2 (Qwen2Config):
// sliding_window applies only with use_sliding_window, and then to the layers from
// max_window_layers on. An explicit layer_types list (transformers 5) overrides the rule.
import type { LayerType, LlamaConfig, LlamaModelType } from "./config.js";
import { fieldError } from "./config-error.js";
import type { ConfigFields } from "./config-fields.js";

/** Qwen2Config: sliding layers start at this index when use_sliding_window. */
export const QWEN2_MAX_WINDOW_LAYERS = 28;

export interface AttentionLayout {
  slidingWindow: number | null;
  maxWindowLayers: number | null;
  layerTypes: LayerType[];
}

/** `defaultWindow`: the model type's sliding_window default. */
export function readAttentionLayout(
  f: ConfigFields,
  mt: LlamaModelType,
  defaultWindow: number | null,
  numHiddenLayers: number,
): AttentionLayout {
  let slidingWindow: number | null = null;
  let maxWindowLayers: number | null = null;
  let layerTypes: LayerType[];
  if (mt === "llama") {
    layerTypes = Array(numHiddenLayers).fill("full_attention");
  } else {
    const sw = f.has("sliding_window") ? f.get("sliding_window") : defaultWindow;
    if (sw !== null && (typeof sw !== "number" || !Number.isInteger(sw) || sw <= 0))
      throw fieldError("sliding_window", sw, "expected a positive integer or null");
    if (mt === "mistral") {
      slidingWindow = sw as number | null;
      layerTypes = Array(numHiddenLayers).fill(
        slidingWindow === null ? "full_attention" : "sliding_attention",
      );
    } else {
      // Qwen2Config: sliding_window = sliding_window if use_sliding_window else None.
      const use = f.bool("use_sliding_window", false);
      const fromLayer = f.nonNegInt("max_window_layers", QWEN2_MAX_WINDOW_LAYERS);
      maxWindowLayers = fromLayer;
      slidingWindow = use ? (sw as number | null) : null;
      layerTypes = Array.from({ length: numHiddenLayers }, (_, i) =>
        slidingWindow !== null && i >= fromLayer ? "sliding_attention" : "full_attention",
      );
    }
  }
  if (f.given("layer_types")) {
    const lt = f.get("layer_types");
    if (
      !Array.isArray(lt) ||
      lt.length !== numHiddenLayers ||
      !lt.every((t) => t === "full_attention" || t === "sliding_attention")
    )
      throw fieldError(
        "layer_types",
        lt,
        `expected ${numHiddenLayers} entries of "full_attention" / "sliding_attention"`,
      );
    if (lt.includes("sliding_attention") && slidingWindow === null)
      throw fieldError(
        "layer_types",
        lt,
        "sliding layers need a sliding_window (and use_sliding_window for qwen2)",
      );
    layerTypes = lt as LayerType[];
  }
  return { slidingWindow, maxWindowLayers, layerTypes };
}

/** Layer i's type by the model type's rule alone (llamaConfigToJson writes layer_types only where they differ). */
export function defaultLayerType(cfg: LlamaConfig, i: number): LayerType {
  if (cfg.slidingWindow === null) return "full_attention";
  if (cfg.modelType === "qwen2")
    return i >= (cfg.maxWindowLayers ?? QWEN2_MAX_WINDOW_LAYERS) ? "sliding_attention" : "full_attention";
  return "sliding_attention";
}
