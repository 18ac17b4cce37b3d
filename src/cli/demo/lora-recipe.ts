// The LoRA recipe `npm start` (lorakit demo) trains with on the shipped demo base model. The
// `train` defaults are PEFT's and suit large models (r 8 on q,v, lr 2e-4); on a model this
// small they barely move the loss, so `train --help` shows this recipe too.
export const DEMO_LORA_RECIPE = Object.freeze({
  batchSize: 8,
  seqLen: 128,
  lr: 2e-3,
  warmupSteps: 10,
  r: 16,
  loraAlpha: 32,
  targetModules: "all-linear" as const,
});

/** The recipe as command-line flags. */
export function demoLoraFlags(): string {
  const R = DEMO_LORA_RECIPE;
  return `--r ${R.r} --lora-alpha ${R.loraAlpha} --target-modules ${R.targetModules} --lr ${R.lr} --batch-size ${R.batchSize} --seq-len ${R.seqLen} --warmup-steps ${R.warmupSteps}`;
}
