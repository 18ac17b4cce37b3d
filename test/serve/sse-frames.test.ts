// The streamed response's bytes: text chunks formatted from a per-response template equal
// JSON.stringify of the whole chunk object, and the SSE body frames each event as hono's
// writeSSE did, holds a writer back while the client does not read, and lets it go on cancel.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import type { ResponseHead } from "../../src/serve/openai-responses.js";
import { completionChunk, textChunkJson } from "../../src/serve/openai-responses.js";
import { SseBody } from "../../src/serve/sse-body.js";

const TEXTS = ["Call", " me", 'a "quote"', "line\nbreak\t\\", "ünï©ødé 🐋", "\u0000\u001f", ""];

describe("stream frames", () => {
  for (const kind of ["completion", "chat"] as const)
    for (const ids of [false, true])
      test(`${kind} text chunks equal the chunk object's JSON${ids ? " (with token_ids)" : ""}`, () => {
        const h: ResponseHead = { kind, id: "cmpl-abc", created: 1765000000, model: 'ad-"0"' };
        const chunk = textChunkJson(h, ids);
        for (const [i, text] of TEXTS.entries())
          assert.equal(
            chunk(text, i + 7),
            JSON.stringify(completionChunk(h, text, null, ids ? { token_ids: [i + 7] } : {})),
          );
      });

  test("the body frames events as `data: …` blocks, in order, and ends", async () => {
    const body = new SseBody();
    await body.write('{"a":1}');
    await body.write("[DONE]");
    body.end();
    const text = await new Response(body.stream).text();
    assert.equal(text, 'data: {"a":1}\n\ndata: [DONE]\n\n');
  });

  test("a writer waits while the client reads nothing, and goes on when it reads or cancels", async () => {
    const body = new SseBody();
    let written = 0;
    const writer = (async () => {
      for (let i = 0; i < 20; i++) {
        await body.write(String(i));
        written++;
      }
    })();
    await tick();
    const held = written;
    assert.ok(held < 20, "the writer went on although nothing was read");
    const reader = body.stream.getReader();
    await reader.read();
    await tick();
    assert.ok(written > held, "reading let the writer go on");
    await reader.cancel();
    await writer;
    assert.equal(body.closed, true);
    body.end(); // after a cancel: nothing, no throw
  });
});
