import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LorakitError } from "../../src/core/errors.js";
import { mobyDickText, sotuText } from "../../src/data/corpora.js";

describe("corpora", () => {
  it("mobyDickText is the whole book", () => {
    const t = mobyDickText();
    assert.ok(t.length > 1_200_000, `${t.length} chars`);
    assert.ok(t.startsWith("CONTENTS"));
    assert.ok(t.includes("Call me Ishmael."));
    assert.equal(mobyDickText(), t);
  });

  it("sotuText selects years, in order", () => {
    const one = sotuText({ years: [1863] });
    assert.ok(one.length > 1000);
    const two = sotuText({ years: [1941, 1863] });
    assert.ok(two.startsWith(one));
    assert.equal(sotuText({ years: [] }), "");
    assert.ok(sotuText().length > 10_000_000);
  });

  it("sotuText names a year it does not have", () => {
    assert.throws(
      () => sotuText({ years: [1700] }),
      (e: unknown) => e instanceof LorakitError && /1700.*1790–2021/.test(e.message),
    );
  });
});
