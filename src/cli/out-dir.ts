// Output paths checked before the work that fills them: a run that trains for an hour and
// then cannot write its result has lost the hour.
import { accessSync, constants, existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { CliError } from "./output.js";

/** `--<flag> DIR` will be a folder lorakit writes into: it is one (or can be made) and is writable. */
export function prepareOutDir(flag: string, dir: string): void {
  if (existsSync(dir) && !statSync(dir).isDirectory())
    throw new CliError(
      `--${flag} ${dir} is a file, not a folder; name a folder (new or existing) to write into`,
    );
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    const why =
      code === "ENOTDIR"
        ? "a part of the path is a file"
        : code === "EACCES" || code === "EPERM" || code === "EROFS"
          ? "no permission to write there"
          : (e as Error).message;
    throw new CliError(`--${flag} ${dir}: cannot write there (${why})`, { cause: e });
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
