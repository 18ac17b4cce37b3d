// A strict JSON reader for safetensors headers. JSON.parse is not enough here: it keeps the
// last of two equal keys (a duplicated tensor name would silently drop one tensor), it turns
// integers past 2^53 into other integers (a lying offset would become a plausible one), and
// it builds plain objects, where a key "__proto__" is special. This reader rejects duplicate
// keys, keeps integer literals exact or rejects them, returns objects as Maps, and limits
// nesting like serde_json (128) so a deep "[[[[" header cannot overflow the stack.
import { SafetensorsError } from "./errors.js";

/** A number written with a fraction or an exponent (never a valid shape or offset). */
export class JsonFloat {
  constructor(readonly value: number) {}
  toString(): string {
    return String(this.value);
  }
}

export type JsonValue = null | boolean | number | JsonFloat | string | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

const MAX_DEPTH = 128;

function fail(msg: string, pos: number): never {
  throw new SafetensorsError(
    "header_not_json",
    `safetensors header is not valid JSON: ${msg} at character ${pos}`,
  );
}

/**
 * Parses `text` as one JSON value followed only by whitespace. Integers are exact
 * (safe integers only); objects become Maps with unique keys.
 */
export function parseStrictJson(text: string): JsonValue {
  let i = 0;
  const n = text.length;

  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };

  const str = (): string => {
    // at the opening quote
    i++;
    let out = "";
    let start = i;
    while (true) {
      if (i >= n) fail("unterminated string", i);
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail(`raw control character 0x${c.toString(16)} in a string`, i);
      if (c >= 0xd800 && c <= 0xdfff) {
        // TextDecoder never yields lone surrogates, but a caller might hand one in.
        const ok = c <= 0xdbff && i + 1 < n && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
        if (!ok) fail("lone surrogate in a string", i);
        i += 2;
        continue;
      }
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(start, i);
      i++;
      if (i >= n) fail("unterminated escape", i);
      const e = text[i++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case "\\":
          out += "\\";
          break;
        case "/":
          out += "/";
          break;
        case "b":
          out += "\b";
          break;
        case "f":
          out += "\f";
          break;
        case "n":
          out += "\n";
          break;
        case "r":
          out += "\r";
          break;
        case "t":
          out += "\t";
          break;
        case "u": {
          const hex = (): number => {
            const h = text.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("bad \\u escape", i);
            i += 4;
            return Number.parseInt(h, 16);
          };
          const u = hex();
          if (u >= 0xdc00 && u <= 0xdfff) fail("lone trailing surrogate in a \\u escape", i - 6);
          if (u >= 0xd800 && u <= 0xdbff) {
            if (text[i] !== "\\" || text[i + 1] !== "u")
              fail("lone leading surrogate in a \\u escape", i - 6);
            i += 2;
            const lo = hex();
            if (lo < 0xdc00 || lo > 0xdfff) fail("lone leading surrogate in a \\u escape", i - 12);
            out += String.fromCharCode(u, lo);
          } else out += String.fromCharCode(u);
          break;
        }
        default:
          fail(`bad escape \\${e}`, i - 1);
      }
      start = i;
    }
  };

  const num = (): number | JsonFloat => {
    const m = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    m.lastIndex = i;
    const r = m.exec(text);
    if (!r) fail("bad number", i);
    const lexeme = r[0];
    i += lexeme.length;
    const v = Number(lexeme);
    if (r[1] !== undefined || r[2] !== undefined) return new JsonFloat(v);
    if (!Number.isSafeInteger(v))
      fail(`integer ${lexeme} is beyond 2^53 (no such file can exist)`, i - lexeme.length);
    return v;
  };

  const lit = (word: string, v: JsonValue): JsonValue => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return v;
    }
    return fail(`unexpected character ${JSON.stringify(text[i])}`, i);
  };

  const value = (depth: number): JsonValue => {
    ws();
    if (i >= n) fail("unexpected end", i);
    const c = text[i];
    if (c === "{") {
      if (depth >= MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`, i);
      i++;
      const obj: JsonObject = new Map();
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      while (true) {
        ws();
        if (text[i] !== '"') fail("expected a string key", i);
        const keyAt = i;
        const key = str();
        ws();
        if (text[i] !== ":") fail("expected ':'", i);
        i++;
        const v = value(depth + 1);
        if (obj.has(key))
          throw new SafetensorsError(
            "duplicate_name",
            `safetensors header has the key ${JSON.stringify(key)} twice (at character ${keyAt}); tensor names and fields must be unique`,
          );
        obj.set(key, v);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'", i);
      }
    }
    if (c === "[") {
      if (depth >= MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`, i);
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      while (true) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'", i);
      }
    }
    if (c === '"') return str();
    if (c === "-" || (c >= "0" && c <= "9")) return num();
    if (c === "t") return lit("true", true);
    if (c === "f") return lit("false", false);
    if (c === "n") return lit("null", null);
    return fail(`unexpected character ${JSON.stringify(c)}`, i);
  };

  const v = value(0);
  ws();
  if (i < n) fail(`trailing characters after the JSON value (only spaces may pad a header)`, i);
  return v;
}
