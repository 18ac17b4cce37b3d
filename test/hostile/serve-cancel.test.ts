// Issue 17: "a client that disconnects mid-stream cancels its generation" failed one run in
// five on a fast machine, where all 48 tokens were generated before the disconnect landed. Here
// the engine is a stand-in that produces one token and then waits for ever, so the only way
// the test ends is the server calling cancel on the client's disconnect: no timing involved.
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { serve } from "@hono/node-server";
import type { EngineClient } from "../../src/serve/client.js";
import { createApp } from "../../src/serve/http.js";
import type { EngineEvent } from "../../src/serve/protocol.js";
import { DEFAULT_LIMITS } from "../../src/serve/protocol.js";

test("a client that disconnects mid-stream cancels its generation", { timeout: 30_000 }, async () => {
  let cancelled!: () => void;
  const cancelCalled = new Promise<void>((r) => {
    cancelled = r;
  });
  let submitted = 0;
  const engine = {
    dead: null,
    busyFor: () => 0,
    generate(_req: unknown, onEvent: (ev: EngineEvent) => void) {
      submitted++;
      onEvent({ kind: "token", token: 7, text: "Call" });
      return () => cancelled();
    },
    call: async () => [],
  } as unknown as EngineClient;
  const app = createApp({ client: engine, baseId: "base", limits: { ...DEFAULT_LIMITS } });
  const server = await new Promise<ReturnType<typeof serve>>((res) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => res(s));
  });
  try {
    const { port } = server.address() as AddressInfo;
    const ac = new AbortController();
    const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "base", prompt: "Call me", max_tokens: 48, stream: true }),
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /"text":"Call"/);
    ac.abort();
    await cancelCalled;
    assert.equal(submitted, 1);
  } finally {
    await new Promise<void>((r) => {
      server.close(() => r());
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    });
  }
});
