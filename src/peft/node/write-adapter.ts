// An adapter folder written as a unit. A run killed while saving must never leave a new
// adapter_config.json beside old weights (or the reverse): that folder would load as a valid
// adapter that no one trained. A new folder is built under a temporary name and renamed into
// place in one step. An existing folder (train's --out also holds checkpoints/ and the loss
// files) gets both files written beside their final names first; then the old config goes, the
// new weights and last the new config are renamed in. At every instant the folder holds the old
// pair, the new pair, or no config at all (which fails to load, loudly).
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { Tensor } from "../../core/tensor.js";
import { saveSafetensors } from "../../io/node/index.js";
import {
  renameIntoPlace,
  saveSafetensorsBeside,
  writeFully,
  writeTempBeside,
} from "../../io/node/safetensors-file.js";
import { removeStaleTemps } from "../../io/node/stale-temps.js";
import { ADAPTER_METADATA, CONFIG_NAME, WEIGHTS_NAME } from "../adapter-folder.js";

export { CONFIG_NAME, WEIGHTS_NAME };

/** Writes `configText` and `tensors` as OUT/adapter_config.json and OUT/adapter_model.safetensors, atomically as a pair. */
export function writeAdapterFolder(
  out: string,
  configText: string,
  tensors: ReadonlyMap<string, Tensor>,
): void {
  const bytes = new TextEncoder().encode(configText);
  if (!existsSync(out)) {
    const parent = dirname(resolve(out));
    mkdirSync(parent, { recursive: true });
    removeStaleTemps(parent);
    const tmp = join(parent, `.${basename(out)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
    mkdirSync(tmp);
    try {
      saveSafetensors(join(tmp, WEIGHTS_NAME), tensors, ADAPTER_METADATA);
      renameIntoPlace(
        writeTempBeside(join(tmp, CONFIG_NAME), (fd) => writeFully(fd, bytes)),
        join(tmp, CONFIG_NAME),
      );
      renameSync(tmp, out);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    return;
  }
  removeStaleTemps(out);
  const cfgPath = join(out, CONFIG_NAME);
  const wPath = join(out, WEIGHTS_NAME);
  const wTmp = saveSafetensorsBeside(wPath, tensors, ADAPTER_METADATA);
  let cfgTmp: string;
  try {
    cfgTmp = writeTempBeside(cfgPath, (fd) => writeFully(fd, bytes));
  } catch (e) {
    rmSync(wTmp, { force: true });
    throw e;
  }
  rmSync(cfgPath, { force: true });
  renameIntoPlace(wTmp, wPath);
  renameIntoPlace(cfgTmp, cfgPath);
}
