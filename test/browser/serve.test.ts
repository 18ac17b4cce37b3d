// The browser example's server: what a page needs from it (MIME types, the headers that
// make the page cross-origin isolated, bare imports resolved for the Worker) and what it
// must refuse (paths outside the repository).
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { type ExampleServer, startExampleServer } from "./example-server.js";

let server: ExampleServer;
before(async () => {
  server = await startExampleServer();
});
after(() => server?.close());

/** A raw GET (fetch would normalise "/../" away before sending). */
function get(path: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.origin}${path}`, { path }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("examples/browser/serve.mjs", () => {
  it("prints the page's URL on 127.0.0.1 and serves the page with COOP/COEP", async () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/examples\/browser\/$/);
    const r = await get("/examples/browser/");
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "text/html; charset=utf-8");
    assert.equal(r.headers["cross-origin-opener-policy"], "same-origin");
    assert.equal(r.headers["cross-origin-embedder-policy"], "require-corp");
    assert.match(r.body, /<script type="importmap">/);
  });

  it("serves the kernels as application/wasm", async (t) => {
    const r = await get("/dist/src/kernels/wasm/lorakit_kernels.wasm");
    if (r.status === 404) return t.skip("the wasm kernels are not built");
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "application/wasm");
  });

  it("resolves the import map's bare specifiers in the JavaScript it serves, and only those", async () => {
    const r = await get("/dist/src/tokenizer/tokenizer.js");
    assert.equal(r.status, 200);
    assert.match(r.body, /from "\/node_modules\/@huggingface\/tokenizers\/dist\/tokenizers\.mjs"/);
    assert.doesNotMatch(r.body, /from "@huggingface\/tokenizers"/);
    const w = await get("/examples/browser/trainer-worker.js");
    assert.match(w.body, /from "\/dist\/src\/index\.js"/);
    assert.doesNotMatch(w.body, /from "lorakit"/);
  });

  it("refuses paths outside the repository and answers 404 for missing files", async () => {
    for (const p of [
      "/../../etc/passwd",
      "/%2e%2e/%2e%2e/etc/passwd",
      "/..%2f..%2f..%2f..%2fetc%2fpasswd",
      "/examples/..%2f..%2f..%2f..%2fetc/hostname",
    ]) {
      const r = await get(p);
      assert.equal(r.status, 404, p);
      assert.doesNotMatch(r.body, /root:/);
    }
    assert.equal((await get("/no/such/file.js")).status, 404);
  });
});
