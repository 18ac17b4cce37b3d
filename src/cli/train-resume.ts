// `lorakit train --resume [DIR]`: the checkpoint to continue from (DIR, or the latest under
// OUT/checkpoints), its parameter values put back into the live tensors and the trainer's
// state restored, so the run goes on to the losses an uninterrupted run reaches.
import { existsSync } from "node:fs";
import type { Tensor } from "../core/tensor.js";
import { latestCheckpoint, loadCheckpoint, restoreParams } from "../train/node/checkpoint.js";
import type { Trainer } from "../train/trainer.js";
import { CliError, log } from "./output.js";

/**
 * Restores `trainer` and `liveParams` from the checkpoint `resume` names (true: the latest
 * under `ckptRoot`) and returns its folder. `say` reports progress; the warning about a
 * changed step count is always printed.
 */
export function resumeTraining(
  resume: string | true,
  ckptRoot: string,
  steps: number,
  trainer: Trainer,
  liveParams: Map<string, Tensor>,
  say: (line: string) => void,
): string {
  const dir = typeof resume === "string" ? resume : latestCheckpoint(ckptRoot);
  if (!dir || !existsSync(dir))
    throw new CliError(
      `--resume: no checkpoint found${typeof resume === "string" ? ` at ${resume}` : ` under ${ckptRoot}`}`,
    );
  const ck = loadCheckpoint(dir);
  if (ck.state.totalSteps !== undefined && ck.state.totalSteps !== steps)
    log(
      `lorakit: warning: the checkpoint's run planned ${ck.state.totalSteps} steps and this one ${steps}; the learning-rate schedule changes, so the result will differ from an uninterrupted ${steps}-step run`,
    );
  restoreParams(liveParams, ck.params, dir);
  trainer.restore(ck.state);
  say(`resumed from ${dir} at step ${ck.state.step}`);
  return dir;
}
