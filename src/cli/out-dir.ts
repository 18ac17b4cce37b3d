// Output paths checked before the work that fills them: a run that trains for an hour and
// then cannot write its result has lost the hour.
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { CliError } from "./output.js";

/**
 * `--<flag> DIR` will be a folder lorakit writes into: it is one, or it can be made (its
 * nearest existing ancestor is a writable folder). Nothing is created here, so a run refused
 * later (a memory plan that does not fit) still leaves nothing behind.
 */
export function prepareOutDir(flag: string, dir: string): void {
  let p = resolve(dir);
  if (existsSync(p) && !statSync(p).isDirectory())
    throw new CliError(
      `--${flag} ${dir} is a file, not a folder; name a folder (new or existing) to write into`,
    );
  while (!existsSync(p)) {
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  if (!statSync(p).isDirectory())
    throw new CliError(`--${flag} ${dir}: cannot write there (${p} is a file, not a folder)`);
  try {
    accessSync(p, constants.W_OK);
  } catch (e) {
    throw new CliError(`--${flag} ${dir}: cannot write there (no permission to write in ${p})`, { cause: e });
  }
}

/** `--<flag> FILE` will be written: its folder exists and FILE is not a folder. */
export function checkOutFile(flag: string, file: string): void {
  const dir = dirname(resolve(file));
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new CliError(`--${flag} ${file}: the folder ${dirname(file)} does not exist; create it first`);
  if (existsSync(file) && statSync(file).isDirectory())
    throw new CliError(`--${flag} ${file} is a folder; name a file`);
}
