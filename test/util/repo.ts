// The repository root, found from a compiled test file (dist/test/...) by walking up to
// the nearest package.json: fixtures are read from the source tree, not from dist/.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error("tests: no package.json above the compiled test files");
    dir = up;
  }
}

/** ‖got − want‖ / ‖want‖ over a whole tensor, and the worst absolute difference. */
export function normErrors(got: ArrayLike<number>, want: ArrayLike<number>): { rel: number; maxAbs: number } {
  if (got.length !== want.length)
    throw new Error(`normErrors: ${got.length} values vs ${want.length} expected`);
  let num = 0;
  let den = 0;
  let maxAbs = 0;
  for (let i = 0; i < want.length; i++) {
    const d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
    maxAbs = Math.max(maxAbs, Math.abs(d));
  }
  return { rel: Math.sqrt(num / den), maxAbs };
}
