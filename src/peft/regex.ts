// Regular expressions from adapter configs (target_modules, exclude_modules, rank_pattern,
// alpha_pattern, layers_pattern) run through a linear-time engine (re2js, a port of RE2), never
// through V8's backtracking one: an adapter file is untrusted input, and a pattern such as
// "(.*)*(.*)*x$" would otherwise hold the thread for hours on one module name (ReDoS; a served
// adapter would wedge every client). RE2 accepts the syntax PEFT's patterns use (Python's `re`
// without backreferences and lookarounds); a pattern outside it is refused by name.
import { RE2JS, RE2JSException } from "re2js";
import { PeftError } from "./errors.js";

/** Patterns longer than this are refused: no module-name pattern needs it, and compiling one costs time. */
export const MAX_PATTERN_LENGTH = 4096;

const cache = new Map<string, RE2JS>();
const CACHE_LIMIT = 256;

/** Compiles `pattern` (cached); `what` names the config field in errors. */
export function compilePattern(pattern: string, what: string): RE2JS {
  let re = cache.get(pattern);
  if (re !== undefined) return re;
  if (pattern.length > MAX_PATTERN_LENGTH)
    throw new PeftError(
      `${what}: the regular expression is ${pattern.length} characters long, more than the ${MAX_PATTERN_LENGTH} lorakit accepts`,
    );
  try {
    re = RE2JS.compile(pattern);
  } catch (e) {
    const msg = e instanceof RE2JSException ? e.message : String(e);
    throw new PeftError(
      `${what}: invalid regular expression ${JSON.stringify(pattern)}: ${msg} (lorakit matches module names in linear time with RE2 syntax: Python's re without backreferences or lookarounds)`,
      { cause: e },
    );
  }
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
  cache.set(pattern, re);
  return re;
}

/** Python's re.fullmatch(pattern, s), in linear time. */
export function fullmatch(pattern: string, s: string, what: string): boolean {
  return compilePattern(pattern, what).matches(s);
}

/** The first capture group of the first match of `pattern` in `s` (Python's re.match(...).group(1)), or null. */
export function firstGroup(pattern: string, s: string, what: string): string | null {
  const m = compilePattern(pattern, what).matcher(s);
  return m.lookingAt() ? m.group(1) : null;
}
