// Confining adapter names and paths to the configured root: a name is one plain folder
// name; a path is relative, has no "..", and its real path (symlinks resolved) lies inside
// the root's real path, as do the files read from it.
import { existsSync, realpathSync, statSync } from "node:fs";
import { isAbsolute, join, sep } from "node:path";
import { ServeError } from "./errors.js";

/** Model ids: a letter or digit, then letters, digits, ".", "_", "-" (at most 128 characters). */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isValidAdapterName(name: string): boolean {
  return NAME_RE.test(name) && !name.includes("..");
}

export function checkAdapterName(name: unknown, param = "lora_name"): string {
  if (typeof name !== "string" || !isValidAdapterName(name))
    throw new ServeError(
      400,
      `${param} ${JSON.stringify(name)} is not a valid adapter name: use letters, digits, ".", "_" and "-" (starting with a letter or digit, no "..", at most 128 characters)`,
      "invalid_adapter_name",
      param,
    );
  return name;
}

/** True when `p` is `root` or lies under it (both real paths). */
export function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Resolves a client-given adapter path against the root and returns its real path;
 * refuses absolute paths, "..", and anything whose real path leaves the root.
 */
export function resolveInsideRoot(root: string | null, rel: unknown, param = "lora_path"): string {
  if (root === null)
    throw new ServeError(
      400,
      "this server has no adapter root (--adapters), so it loads no adapters at run time",
      "no_adapter_root",
      param,
    );
  if (typeof rel !== "string" || rel === "")
    throw new ServeError(400, `${param} must be a non-empty string`, "invalid_path", param);
  if (isAbsolute(rel) || rel.startsWith("/") || rel.startsWith("\\") || /^[A-Za-z]:/.test(rel))
    throw new ServeError(
      400,
      `${param} ${JSON.stringify(rel)} is absolute; give a folder relative to the adapter root`,
      "path_outside_root",
      param,
    );
  if (rel.split(/[\\/]/).includes("..") || rel.includes("\0"))
    throw new ServeError(
      400,
      `${param} ${JSON.stringify(rel)} contains ".."; adapters must lie inside the adapter root`,
      "path_outside_root",
      param,
    );
  const realRoot = realpathSync(root);
  const joined = join(realRoot, rel);
  if (!existsSync(joined))
    throw new ServeError(
      404,
      `${param} ${JSON.stringify(rel)}: no such folder under the adapter root`,
      "adapter_not_found",
      param,
    );
  const real = realpathSync(joined);
  if (!isInside(realRoot, real) || real === realRoot)
    throw new ServeError(
      400,
      `${param} ${JSON.stringify(rel)} resolves outside the adapter root (a symlink out?)`,
      "path_outside_root",
      param,
    );
  if (!statSync(real).isDirectory())
    throw new ServeError(400, `${param} ${JSON.stringify(rel)} is not a folder`, "invalid_path", param);
  return real;
}

/** The real path of `file` in `dir`, refused when a symlink takes it outside `root`. */
export function fileInside(root: string | null, dir: string, file: string): string | null {
  const p = join(dir, file);
  if (!existsSync(p)) return null;
  const real = realpathSync(p);
  if (root !== null && !isInside(realpathSync(root), real))
    throw new ServeError(400, `${p} resolves outside the adapter root (a symlink out?)`, "path_outside_root");
  return real;
}
