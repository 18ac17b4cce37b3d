import { defineCommand } from "citty";
import type { DType } from "../../core/dtype.js";
import { BYTES_PER_ELEMENT } from "../../core/dtype.js";
import { loadModel } from "../../models/node/load.js";
import { fmtBytes, fmtInt, out, printJson, requireArg } from "../output.js";

export const infoCommand = defineCommand({
  meta: {
    name: "info",
    description: "Architecture, parameter count and memory of a Hugging Face model folder",
  },
  args: {
    model: { type: "string", description: "model folder (config.json + safetensors)", required: true },
    json: { type: "boolean", description: "print one JSON object" },
  },
  run({ args }) {
    const dir = requireArg("model", args.model);
    const { model } = loadModel(dir);
    const c = model.config;
    const byDtype: Partial<Record<DType, { tensors: number; params: number; bytes: number }>> = {};
    let total = 0;
    for (const [, t] of model.namedParameters()) {
      const e = (byDtype[t.dtype] ??= { tensors: 0, params: 0, bytes: 0 });
      e.tensors++;
      e.params += t.size;
      e.bytes += t.size * BYTES_PER_ELEMENT[t.dtype];
      total += t.size;
    }
    const info = {
      model_type: c.modelType,
      layers: c.numHiddenLayers,
      hidden_size: c.hiddenSize,
      intermediate_size: c.intermediateSize,
      heads: c.numAttentionHeads,
      kv_heads: c.numKeyValueHeads,
      head_dim: c.headDim,
      vocab_size: c.vocabSize,
      tie_word_embeddings: c.tieWordEmbeddings,
      rope_theta: c.ropeTheta,
      rope_scaling: c.ropeScaling,
      max_position_embeddings: c.maxPositionEmbeddings,
      parameters: total,
      memory: byDtype,
    };
    if (args.json) return printJson(info);
    out(
      `${dir}: ${c.modelType}, ${c.numHiddenLayers} layers, hidden ${c.hiddenSize}, intermediate ${c.intermediateSize}`,
    );
    out(
      `  heads ${c.numAttentionHeads} (kv ${c.numKeyValueHeads}, head dim ${c.headDim}), vocab ${c.vocabSize}, tied embeddings: ${c.tieWordEmbeddings}`,
    );
    out(
      `  rope theta ${c.ropeTheta}${c.ropeScaling ? `, scaling ${JSON.stringify(c.ropeScaling)}` : ""}, max positions ${c.maxPositionEmbeddings}`,
    );
    out(`  parameters: ${fmtInt(total)}`);
    for (const [d, e] of Object.entries(byDtype))
      out(`  ${d}: ${fmtInt(e.params)} params in ${e.tensors} tensors, ${fmtBytes(e.bytes)}`);
  },
});
