// Issue 17: patterns in an adapter config are untrusted input. A catastrophic regular
// expression must not hang matching (V8's backtracking engine needs hours for the one below
// on a single module name); patterns outside the linear-time subset are refused by name.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { loraConfig } from "../../src/peft/config.js";
import { PeftError } from "../../src/peft/errors.js";
import { findTargets, matchesTarget, patternKey } from "../../src/peft/targets.js";
import { tinyModel } from "../util/tiny-model.js";

const EVIL = "(.*)*(.*)*(.*)*x$";
const noLayers = { excludeModules: null, layersToTransform: null, layersPattern: null } as const;

describe("target matching in linear time (ReDoS)", { timeout: 30_000 }, () => {
  test("a catastrophic target_modules regex answers at once", () => {
    const key = "model.layers.0.self_attn.q_proj.and.a.long.tail.of.more.segments.to.backtrack.over";
    assert.equal(matchesTarget({ targetModules: EVIL, ...noLayers }, EVIL, key), false);
    assert.equal(matchesTarget({ targetModules: EVIL, ...noLayers }, EVIL, `${key}x`), true);
    assert.throws(
      () => findTargets(loraConfig({ targetModules: EVIL }), tinyModel()),
      (e: Error) => e instanceof PeftError && /not found in the base model/.test(e.message),
    );
  });

  test("catastrophic exclude_modules and rank_pattern keys answer at once", () => {
    const cfg = {
      targetModules: ["q_proj"],
      excludeModules: EVIL,
      layersToTransform: null,
      layersPattern: null,
    };
    assert.equal(matchesTarget(cfg, ["q_proj"], "model.layers.0.self_attn.q_proj"), true);
    assert.equal(patternKey({ "(a*)*b": 4 }, `model.layers.0.${"a".repeat(64)}`), null);
  });

  test("PEFT's ordinary patterns keep Python's fullmatch meaning", () => {
    const re = String.raw`.*\.(q_proj|v_proj)`;
    assert.equal(
      matchesTarget({ targetModules: re, ...noLayers }, re, "model.layers.1.self_attn.v_proj"),
      true,
    );
    assert.equal(
      matchesTarget({ targetModules: re, ...noLayers }, re, "model.layers.1.self_attn.k_proj"),
      false,
    );
    // fullmatch: a pattern matching a prefix only does not count
    assert.equal(matchesTarget({ targetModules: "model", ...noLayers }, "model", "model.layers"), false);
    const layered = {
      targetModules: ["q_proj"],
      excludeModules: null,
      layersToTransform: [1],
      layersPattern: "layers",
    };
    assert.equal(matchesTarget(layered, ["q_proj"], "model.layers.1.self_attn.q_proj"), true);
    assert.equal(matchesTarget(layered, ["q_proj"], "model.layers.0.self_attn.q_proj"), false);
    assert.equal(
      patternKey({ "layers\\.1\\.self_attn\\.q_proj": 4 }, "model.layers.1.self_attn.q_proj") !== null,
      true,
    );
  });

  test("backreferences and lookarounds are refused, naming the field", () => {
    for (const p of [String.raw`(q)\1_proj`, "(?=q).*"])
      assert.throws(
        () => matchesTarget({ targetModules: p, ...noLayers }, p, "model.layers.0.self_attn.q_proj"),
        (e: Error) => e instanceof PeftError && /target_modules: invalid regular expression/.test(e.message),
      );
  });
});
