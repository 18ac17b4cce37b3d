// Training checkpoints on disk (node only). A checkpoint is a folder
//   checkpoint-<step>/trainable.safetensors   every trainable tensor by name
//   checkpoint-<step>/optimizer.safetensors   optimizer buffers (state.<i>.<key>)
//   checkpoint-<step>/trainer_state.json      step, scheduler, data position, RNG, losses
// written into a temporary folder and renamed into place, so a crash mid-save never
// leaves a folder that looks complete; `latestCheckpoint` only sees renamed ones.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FloatArray } from "../../core/backend.js";
import { LorakitError } from "../../core/errors.js";
import type { Tensor } from "../../core/tensor.js";
import { fromArray } from "../../core/tensor.js";
import { openSafetensors, saveSafetensors } from "../../io/node/index.js";
import { removeStaleTemps } from "../../io/node/stale-temps.js";
import type { OptimizerStateDict, ParamStateDict } from "../../optim/optimizer.js";
import type { TrainerState } from "../trainer.js";

export class CheckpointError extends LorakitError {}

const STATE = "trainer_state.json";

export function checkpointName(step: number): string {
  return `checkpoint-${step}`;
}

/**
 * Writes a checkpoint of `params` (name → tensor) and the trainer state; returns its folder.
 * With `keep` (Hugging Face Trainer's save_total_limit), only the `keep` latest checkpoints
 * stay; temporaries of killed runs are removed.
 */
export function saveCheckpoint(
  root: string,
  params: ReadonlyMap<string, Tensor>,
  state: TrainerState,
  opts: { keep?: number | null } = {},
): string {
  mkdirSync(root, { recursive: true });
  removeStaleTemps(root);
  const final = join(root, checkpointName(state.step));
  const tmp = join(root, `.tmp-${checkpointName(state.step)}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  saveSafetensors(join(tmp, "trainable.safetensors"), params, {});
  const buffers = new Map<string, Tensor>();
  const jsonState: Record<number, Record<string, number>> = {};
  for (const [idx, ps] of Object.entries(state.optimizer.state)) {
    jsonState[Number(idx)] = {};
    for (const [k, v] of Object.entries(ps)) {
      if (typeof v === "number") jsonState[Number(idx)][k] = v;
      else buffers.set(`state.${idx}.${k}`, fromArray(v as Float32Array, [v.length]));
    }
  }
  saveSafetensors(join(tmp, "optimizer.safetensors"), buffers, {});
  const json = { ...state, optimizer: { paramGroups: state.optimizer.paramGroups, state: jsonState } };
  writeFileSync(join(tmp, STATE), JSON.stringify(json));
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  if (opts.keep != null) pruneCheckpoints(root, opts.keep);
  return final;
}

/** Removes all but the `keep` checkpoints of highest step under root; returns the removed folders. */
export function pruneCheckpoints(root: string, keep: number): string[] {
  if (!Number.isInteger(keep) || keep < 1)
    throw new CheckpointError(`save_total_limit must be a positive integer, got ${keep}`);
  const steps = readdirSync(root)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
  const removed: string[] = [];
  for (const s of steps.slice(keep)) {
    const dir = join(root, checkpointName(s));
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/** The checkpoint folder with the highest step under root, or null. */
export function latestCheckpoint(root: string): string | null {
  if (!existsSync(root)) return null;
  let best: [number, string] | null = null;
  for (const n of readdirSync(root)) {
    const m = /^checkpoint-(\d+)$/.exec(n);
    if (m && existsSync(join(root, n, STATE)) && (!best || Number(m[1]) > best[0]))
      best = [Number(m[1]), join(root, n)];
  }
  return best ? best[1] : null;
}

/** Reads a checkpoint: the trainable tensors by name and the trainer state. */
export function loadCheckpoint(dir: string): { params: Map<string, Tensor>; state: TrainerState } {
  const sp = join(dir, STATE);
  if (!existsSync(sp)) throw new CheckpointError(`${dir}: not a lorakit checkpoint (no ${STATE})`);
  let json: TrainerState & { optimizer: { state: Record<number, Record<string, number>> } };
  try {
    json = JSON.parse(readFileSync(sp, "utf8"));
  } catch (e) {
    throw new CheckpointError(`${sp}: unreadable`, { cause: e });
  }
  const params = new Map<string, Tensor>();
  const pf = openSafetensors(join(dir, "trainable.safetensors"));
  try {
    for (const n of pf.names()) params.set(n, pf.tensor(n));
  } finally {
    pf.close();
  }
  const state: Record<number, ParamStateDict> = {};
  for (const [idx, nums] of Object.entries(json.optimizer.state)) state[Number(idx)] = { ...nums };
  const of = openSafetensors(join(dir, "optimizer.safetensors"));
  try {
    for (const n of of.names()) {
      const m = /^state\.(\d+)\.(.+)$/.exec(n);
      if (!m) throw new CheckpointError(`${dir}: unexpected optimizer tensor ${n}`);
      state[Number(m[1])] ??= {};
      state[Number(m[1])][m[2]] = of.tensor(n).data as FloatArray;
    }
  } finally {
    of.close();
  }
  const optimizer: OptimizerStateDict = { paramGroups: json.optimizer.paramGroups, state };
  return { params, state: { ...json, optimizer } };
}

/** Copies checkpoint tensors into the live parameters (same names and shapes required). */
export function restoreParams(
  live: ReadonlyMap<string, Tensor>,
  saved: ReadonlyMap<string, Tensor>,
  where: string,
): void {
  for (const [name, t] of live) {
    const s = saved.get(name);
    if (!s)
      throw new CheckpointError(
        `${where}: no saved value for ${name}; was the checkpoint made with other options?`,
      );
    if (s.size !== t.size)
      throw new CheckpointError(`${where}: ${name} has ${s.size} values saved but ${t.size} live`);
    (t.data as Float32Array).set(s.data as Float32Array);
  }
  for (const name of saved.keys())
    if (!live.has(name))
      throw new CheckpointError(`${where}: saved tensor ${name} matches no trainable parameter`);
}
