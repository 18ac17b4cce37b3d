// Issue 17, the server under abuse: a catastrophic target_modules regex in a loaded adapter
// does not wedge the engine, /health reports an engine that stopped making progress, and a
// client that sends its body a byte at a time is cut off with a 408.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { EngineClient } from "../../src/serve/client.js";
import { Heartbeat, healthProblem } from "../../src/serve/heartbeat.js";
import { createApp } from "../../src/serve/http.js";
import { DEFAULT_LIMITS } from "../../src/serve/protocol.js";
import type { RunningServer } from "../../src/serve/server.js";
import { startServer } from "../../src/serve/server.js";
import { buildFixture, type Fixture } from "../serve/fixture.js";

let fx: Fixture;
let server: RunningServer;

before(async () => {
  fx = buildFixture({ adapters: ["alpha"] });
  fx.writeAdapter(join(fx.adapterRoot, "evil"), 7);
  const cfgPath = join(fx.adapterRoot, "evil", "adapter_config.json");
  const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
  cfg.target_modules = "(.*)*(.*)*(.*)*x$";
  writeFileSync(cfgPath, JSON.stringify(cfg));
  server = await startServer({
    modelDir: fx.modelDir,
    adapterRoot: fx.adapterRoot,
    port: 0,
    threads: 1,
    limits: { maxTokens: 8, requestTimeoutSeconds: 1 },
  });
});
after(async () => {
  await server?.close();
  fx?.cleanup();
});

const post = (path: string, body: unknown) =>
  fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

describe("the server under abuse", { timeout: 30_000 }, () => {
  test("an adapter with a catastrophic target_modules regex is refused without wedging the engine", async () => {
    const loaded = await post("/v1/load_lora_adapter", { lora_name: "evil2", lora_path: "evil" });
    const r =
      loaded.status === 200
        ? await post("/v1/completions", { model: "evil", prompt: "Call me", max_tokens: 2 })
        : loaded;
    assert.ok(r.status >= 400 && r.status < 500, `${r.status} ${await r.text()}`);
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    const ok = await post("/v1/completions", { model: "alpha", prompt: "Call me", max_tokens: 2 });
    assert.equal(ok.status, 200, await ok.text());
  });

  test("/v1/models: root, parent and max_model_len as vLLM returns them", async () => {
    const list = (await (await fetch(`${server.url}/v1/models`)).json()) as {
      data: { id: string; root: string; parent: string | null; max_model_len: number | null }[];
    };
    const base = list.data.find((m) => m.id === "tiny-base")!;
    assert.deepEqual([base.root, base.parent, base.max_model_len], [fx.modelDir, null, 512]);
    const alpha = list.data.find((m) => m.id === "alpha")!;
    assert.deepEqual(
      [alpha.root, alpha.parent, alpha.max_model_len],
      [join(fx.adapterRoot, "alpha"), "tiny-base", null],
    );
  });

  test("a client that trickles its body is answered 408 and disconnected", async () => {
    const { port } = server;
    const answer = await new Promise<string>((resolve, reject) => {
      const sock = connect(port, "127.0.0.1", () => {
        sock.write(
          "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{",
        );
      });
      let got = "";
      sock.setEncoding("utf8").on("data", (s: string) => {
        got += s;
      });
      sock.on("error", reject);
      sock.on("close", () => resolve(got));
    });
    assert.match(answer, /^HTTP\/1\.1 408/);
  });
});

describe("/health", () => {
  test("answers 503 when one engine step has run past --stall-seconds, 200 otherwise", async () => {
    const hb = Heartbeat.create();
    const fake = { dead: null, busyFor: () => hb.busyFor() } as unknown as EngineClient;
    const app = createApp({ client: fake, baseId: "base", limits: { ...DEFAULT_LIMITS, stallSeconds: 5 } });
    assert.equal((await app.request("/health")).status, 200);
    hb.begin(Date.now() - 60_000);
    const r = await app.request("/health");
    assert.equal(r.status, 503);
    assert.match(await r.text(), /engine stalled: .* 60 s/);
    hb.end();
    assert.equal((await app.request("/health")).status, 200);
  });

  test("the heartbeat measures the running unit and is idle after it", () => {
    const hb = Heartbeat.create();
    assert.equal(hb.busyFor(), 0);
    hb.begin(1000);
    assert.equal(hb.busyFor(4000), 3000);
    assert.equal(
      healthProblem({ dead: null, busyFor: () => hb.busyFor(4000) }, 2),
      "engine stalled: one unit of work has run for 3 s, more than --stall-seconds 2",
    );
    assert.throws(() =>
      hb.run(() => {
        throw new Error("x");
      }),
    );
    assert.equal(hb.busyFor(), 0);
  });
});
