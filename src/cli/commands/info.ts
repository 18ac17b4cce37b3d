import { defineCommand } from "citty";
import { BYTES_PER_ELEMENT } from "../../core/dtype.js";
import { SAFETENSORS_BITS } from "../../io/safetensors-dtype.js";
import { describeCheckpoint, residentDType } from "../../models/node/load.js";
import { countBaseParams } from "../../peft/params.js";
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
    // Headers only: no weight is read, so any size of checkpoint answers at once.
    const { config: c, tensors, quantized } = describeCheckpoint(dir);
    const byDtype: Record<string, { tensors: number; params: number; bytes: number }> = {};
    let total = 0;
    for (const t of tensors) {
      if (t.name.endsWith("rotary_emb.inv_freq")) continue;
      const n = t.shape.reduce((a, b) => a * b, 1);
      const e = (byDtype[t.dtype] ??= { tensors: 0, params: 0, bytes: 0 });
      e.tensors++;
      e.params += n;
      e.bytes += t.bytes;
      total += n;
    }
    // What `--dtype auto` keeps in memory (NF4 tensors stay as stored).
    let resident = 0;
    for (const t of tensors)
      resident +=
        quantized || t.dtype === "U8"
          ? t.bytes
          : (t.bytes / (SAFETENSORS_BITS[t.dtype] / 8)) *
            BYTES_PER_ELEMENT[residentDType(t.name, t.dtype, "auto")];
    // An NF4 weight is stored as bytes holding two codes each: count the weights it encodes.
    const parameters = quantized ? countBaseParams(c) : total;
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
      parameters,
      quantized,
      file: byDtype,
      resident_bytes: resident,
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
    out(`  parameters: ${fmtInt(parameters)}${quantized ? " (bitsandbytes NF4 checkpoint)" : ""}`);
    for (const [d, e] of Object.entries(byDtype))
      out(`  ${d}: ${fmtInt(e.params)} elements in ${e.tensors} tensors, ${fmtBytes(e.bytes)} on disk`);
    out(`  resident when loaded (--dtype auto): ${fmtBytes(resident)}`);
  },
});
