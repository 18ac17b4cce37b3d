// adapter_config.json fields of PEFT's LoraConfig that change what the adapter computes and
// that lorakit does not implement. Reading such a file as plain LoRA would give silently
// wrong outputs, so each is refused by name when it holds anything but PEFT's default.
// Fields that only steered how an adapter was initialised (eva_config, corda_config,
// loftq_config, lora_ga_config) do not matter once it is trained, and are read past.

const isSet = (v: unknown): boolean =>
  v !== undefined &&
  v !== null &&
  v !== false &&
  !(Array.isArray(v) && v.length === 0) &&
  !(typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0);

/** field → what it does, for the message. */
const UNSUPPORTED: Readonly<Record<string, string>> = Object.freeze({
  trainable_token_indices: "trains selected rows of the embedding matrix",
  target_parameters: "adapts nn.Parameter weights (MoE experts) rather than modules",
  alora_invocation_tokens: "activates the adapter only after its invocation tokens (aLoRA)",
  use_qalora: "pools the input in groups before lora_A (QA-LoRA)",
  use_bdlora: "uses block-diagonal lora_A / lora_B (BD-LoRA)",
  monteclora_config: "samples the adapter (MonteCLoRA)",
  arrow_config: "routes between several LoRA modules per token (Arrow)",
  ensure_weight_tying: "ties adapters on tied layers",
  layer_replication: "builds a new layer stack by replicating layers",
  megatron_config: "uses Megatron's parallel linear layers",
});

/** Init methods that produce plain LoRA factors once trained (what matters when loading). */
export const INITS_LOADED_AS_LORA: ReadonlySet<string> = new Set([
  "eva",
  "olora",
  "corda",
  "loftq",
  "orthogonal",
  "mica",
  "lora_ga",
]);

/** The first unsupported field set in `o`, as an error message, or null. */
export function unsupportedField(o: Record<string, unknown>): string | null {
  for (const [k, what] of Object.entries(UNSUPPORTED))
    if (isSet(o[k]))
      return `${k} (${what}) is set to ${JSON.stringify(o[k])?.slice(0, 60)}, and lorakit does not implement it; loading the adapter without it would compute something else`;
  return null;
}
