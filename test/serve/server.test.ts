// The server end to end on a loopback port, spoken to with the official `openai` client:
// models, completions and chat (streamed and not) for the base and two adapters, run-time
// load/unload, errors (404 unknown adapter, a path outside the root, oversize requests),
// greedy outputs equal `lorakit generate`, and a mixed batch equals each request alone.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { symlinkSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import OpenAI from "openai";
import type { RunningServer } from "../../src/serve/server.js";
import { startServer } from "../../src/serve/server.js";
import { buildFixture, type Fixture } from "./fixture.js";

const run = promisify(execFile);
const CLI = join(process.cwd(), "dist/src/cli/main.js");

let fx: Fixture;
let server: RunningServer;
let client: OpenAI;

before(async () => {
  fx = buildFixture();
  fx.writeAdapter(join(fx.adapterRoot, "runtime", "gamma"), 5, { r: 2 });
  fx.writeAdapter(join(fx.dir, "outside", "evil"), 6);
  symlinkSync(join(fx.dir, "outside", "evil"), join(fx.adapterRoot, "evil-link"));
  server = await startServer({
    modelDir: fx.modelDir,
    adapterRoot: fx.adapterRoot,
    port: 0,
    threads: 1,
    limits: { maxTokens: 48, maxPromptTokens: 64, maxBodyBytes: 16 * 1024, maxConcurrent: 16 },
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
after(async () => {
  await server?.close();
  fx?.cleanup();
});

// vLLM's extensions (ignore_eos, return_token_ids) ride along in the body.
type Extra = { ignore_eos?: boolean; return_token_ids?: boolean };
async function complete(
  model: string,
  prompt: string,
  max = 8,
  extra: Extra = { ignore_eos: true, return_token_ids: true },
) {
  const r = await client.completions.create({
    model,
    prompt,
    max_tokens: max,
    temperature: 0,
    ...extra,
  } as OpenAI.CompletionCreateParamsNonStreaming);
  return r;
}
const tokenIds = (r: OpenAI.Completion) => (r.choices[0] as unknown as { token_ids: number[] }).token_ids;

const MODELS = ["tiny-base", "alpha", "beta"];

describe("lorakit serve over HTTP", () => {
  test("GET /health answers 200 and /v1/models lists the base and every adapter folder", async () => {
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids.sort(), ["alpha", "beta", "tiny-base"]);
  });

  test("the engine's native kernels run on the threads asked for", () => {
    // The worker's process.env is its own copy, which the addon never reads: set by call.
    assert.equal(server.threads, server.backend === "native" ? 1 : null);
  });

  test("greedy completions equal `lorakit generate` for the base and both adapters", async () => {
    const prompt = "Call me Ishmael";
    const cli = await Promise.all(
      MODELS.map((m) =>
        run(process.execPath, [
          CLI,
          "generate",
          "--model",
          fx.modelDir,
          ...(m === "tiny-base" ? [] : ["--adapter", join(fx.adapterRoot, m)]),
          "--prompt",
          prompt,
          "--max-new-tokens",
          "12",
          "--temperature",
          "0",
          "--threads",
          "1",
          "--json",
        ]).then((o) => JSON.parse(o.stdout) as { tokens: number[] }),
      ),
    );
    const served = await Promise.all(MODELS.map((m) => complete(m, prompt, 12)));
    served.forEach((r, i) => {
      assert.deepEqual(tokenIds(r), cli[i].tokens, MODELS[i]);
      assert.equal(r.choices[0].finish_reason, "length");
      assert.equal(r.usage?.completion_tokens, 12);
      assert.equal(r.model, MODELS[i]);
    });
    assert.notDeepEqual(tokenIds(served[0]), tokenIds(served[1]));
    assert.notDeepEqual(tokenIds(served[1]), tokenIds(served[2]));
  });

  test("a mixed batch of concurrent requests gives each the tokens it gets alone", async () => {
    const cases = MODELS.flatMap((m) =>
      ["Call me", "the watery part of", "It is a way"].map((p) => [m, p] as const),
    );
    const alone = [];
    for (const [m, p] of cases) alone.push(tokenIds(await complete(m, p, 16)));
    const together = await Promise.all(cases.map(([m, p]) => complete(m, p, 16)));
    assert.deepEqual(together.map(tokenIds), alone);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const le1 = Number(/lorakit_batch_size_bucket\{le="1"\} (\d+)/.exec(metrics)?.[1]);
    const count = Number(/lorakit_batch_size_count (\d+)/.exec(metrics)?.[1]);
    assert.ok(le1 < count, "some decode step batched several sequences");
  });

  test("streamed completions and chat give the same text as non-streamed, per adapter", async () => {
    for (const model of MODELS) {
      const plain = await client.completions.create({
        model,
        prompt: "Call me",
        max_tokens: 10,
        temperature: 0,
      });
      let streamed = "";
      let finish: string | null = null;
      for await (const ch of await client.completions.create({
        model,
        prompt: "Call me",
        max_tokens: 10,
        temperature: 0,
        stream: true,
      })) {
        streamed += ch.choices[0]?.text ?? "";
        finish = ch.choices[0]?.finish_reason ?? finish;
      }
      assert.equal(streamed, plain.choices[0].text, model);
      assert.equal(finish, plain.choices[0].finish_reason);

      const messages = [{ role: "user" as const, content: "Call me Ishmael." }];
      const chat = await client.chat.completions.create({ model, messages, max_tokens: 10, temperature: 0 });
      assert.equal(chat.object, "chat.completion");
      assert.equal(chat.choices[0].message.role, "assistant");
      let content = "";
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const ch of await client.chat.completions.create({
        model,
        messages,
        max_tokens: 10,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      })) {
        content += ch.choices[0]?.delta?.content ?? "";
        usage = ch.usage ?? usage;
      }
      assert.equal(content, chat.choices[0].message.content, model);
      assert.equal(usage?.completion_tokens, chat.usage?.completion_tokens);
    }
  });

  test("adapters load and unload at run time (vLLM's endpoints)", async () => {
    const post = (path: string, body: unknown) =>
      fetch(`${server.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const r = await post("/v1/load_lora_adapter", { lora_name: "gamma", lora_path: "runtime/gamma" });
    assert.equal(r.status, 200, await r.text());
    const ids = (await client.models.list()).data.map((m) => m.id);
    assert.ok(ids.includes("gamma"));
    const g = await complete("gamma", "Call me", 8);
    assert.equal(tokenIds(g).length, 8);
    assert.equal(
      (await post("/v1/load_lora_adapter", { lora_name: "gamma", lora_path: "runtime/gamma" })).status,
      400,
    );
    assert.equal((await post("/v1/unload_lora_adapter", { lora_name: "gamma" })).status, 200);
    assert.ok(!(await client.models.list()).data.some((m) => m.id === "gamma"));
    await assert.rejects(complete("gamma", "Call me"), (e: unknown) => e instanceof OpenAI.NotFoundError);
    assert.equal((await post("/v1/unload_lora_adapter", { lora_name: "gamma" })).status, 404);
  });

  test("errors: unknown adapter 404, paths outside the root 400, oversize requests 4xx, in OpenAI's format", async () => {
    await assert.rejects(complete("no-such-adapter", "Call me"), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.code, "model_not_found");
      return true;
    });
    await assert.rejects(
      client.completions.create({ model: "no-such-adapter", prompt: "x", stream: true }),
      (e: unknown) => e instanceof OpenAI.NotFoundError,
    );
    for (const lora_path of ["../outside/evil", join(fx.dir, "outside", "evil"), "evil-link"]) {
      const r = await fetch(`${server.url}/v1/load_lora_adapter`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ lora_name: "evil", lora_path }),
      });
      assert.equal(r.status, 400, lora_path);
      const body = (await r.json()) as { error: { code: string; message: string; type: string } };
      assert.equal(body.error.code, "path_outside_root");
      assert.equal(body.error.type, "invalid_request_error");
    }
    assert.ok(!(await client.models.list()).data.some((m) => m.id === "evil-link"));
    await assert.rejects(
      client.completions.create({ model: "alpha", prompt: "Call me", max_tokens: 49 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && /max_tokens/.test(e.message),
    );
    await assert.rejects(
      client.completions.create({ model: "alpha", prompt: "Call me Ishmael. ".repeat(30), max_tokens: 4 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.code === "prompt_too_long",
    );
    await assert.rejects(
      client.completions.create({ model: "alpha", prompt: "x".repeat(20_000), max_tokens: 4 }),
      (e: unknown) => e instanceof OpenAI.APIError && e.status === 413,
    );
    const badJson = await fetch(`${server.url}/v1/completions`, { method: "POST", body: "{not json" });
    assert.equal(badJson.status, 400);
    await assert.rejects(
      client.completions.create({ model: "alpha", prompt: "x", temperature: 7 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError,
    );
    // The server is still up after all of that.
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
  });

  test("a client that disconnects mid-stream leaves the server serving; beyond --max-concurrent is 429", async () => {
    // Whether the disconnect cancels the generation is tested without timing in
    // test/hostile/serve-cancel.test.ts; here a real disconnect must leave nothing stuck.
    const ac = new AbortController();
    const stream = await client.completions.create(
      {
        model: "beta",
        prompt: "Call me",
        max_tokens: 48,
        temperature: 0,
        stream: true,
        ignore_eos: true,
      } as OpenAI.CompletionCreateParamsStreaming,
      { signal: ac.signal },
    );
    try {
      for await (const _ of stream) ac.abort();
    } catch {
      // aborted
    }
    // Flood past the concurrency limit of 16.
    const rs = await Promise.allSettled(Array.from({ length: 40 }, () => complete("alpha", "Call me", 48)));
    const statuses = rs.map((r) =>
      r.status === "fulfilled" ? 200 : (r.reason as { status?: number }).status,
    );
    assert.ok(statuses.includes(429), `expected some 429s, got ${statuses.join(",")}`);
    assert.ok(
      statuses.every((s) => s === 200 || s === 429),
      statuses.join(","),
    );
    const m = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(m, /lorakit_requests_running 0/);
    assert.match(m, /lorakit_adapter_loads_total [1-9]/);
    assert.match(m, /lorakit_request_duration_seconds_count [1-9]/);
    assert.match(m, /lorakit_requests_rejected_total\{reason="too_many_requests"\} [1-9]/);
  });
});
