// A small static server for the browser example (`npm run example:browser`). It serves the
// repository (the page, the compiled package in dist/, the demo model in models/, and the
// dependencies in node_modules/) on 127.0.0.1 with:
//   - the right MIME types (application/wasm lets the page compile the kernels while they stream);
//   - COOP/COEP headers, which make the page cross-origin isolated: only then does a browser
//     give it SharedArrayBuffer, which WebAssembly threads need;
//   - bare import specifiers ("lorakit", "@huggingface/tokenizers", ...) resolved in the
//     JavaScript it serves, with the page's own import map (read from index.html). A page
//     applies its import map to its own modules, but Chromium applies none inside a Worker,
//     and the training runs in a Worker; any bundler does the same resolution at build time.
//
// Usage: node examples/browser/serve.mjs [--port N]   (PORT=N works too; 0 picks a free port)
import { readFile, stat } from "node:fs/promises";
import { createServer } from "node:http";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(HERE, "..", "..");
export const PAGE_PATH = "/examples/browser/";

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".csv": "text/csv; charset=utf-8",
  ".safetensors": "application/octet-stream",
};

/** The import map of index.html: the one place that says where "lorakit" and its dependencies live. */
export async function pageImportMap() {
  const html = await readFile(join(HERE, "index.html"), "utf8");
  const m = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html);
  if (m === null) throw new Error(`${join(HERE, "index.html")}: no <script type="importmap">`);
  return JSON.parse(m[1]).imports;
}

/** Replaces each bare specifier the map names, in static imports, re-exports and import(). */
export function resolveBareImports(source, imports) {
  return source.replace(
    /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])([^"'./][^"']*)\2/g,
    (whole, lead, quote, spec) => (spec in imports ? `${lead}${quote}${imports[spec]}${quote}` : whole),
  );
}

/**
 * Starts the server; resolves once it listens. `port` 0 picks a free one.
 * @returns {Promise<{ server: import("node:http").Server, url: string }>}
 */
export async function startServer({ port = 8080, host = "127.0.0.1" } = {}) {
  const imports = await pageImportMap();
  const server = createServer((req, res) => {
    handle(req, res, imports).catch((e) => {
      if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain; charset=utf-8" });
      res.end(`server error: ${e.message}\n`);
    });
  });
  await new Promise((ok, fail) => {
    server.once("error", fail);
    server.listen(port, host, ok);
  });
  const addr = server.address();
  return { server, url: `http://${host}:${addr.port}${PAGE_PATH}` };
}

async function handle(req, res, imports) {
  const headers = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
  };
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { ...headers, Allow: "GET, HEAD" });
    return res.end();
  }
  const url = new URL(req.url ?? "/", "http://localhost");
  if (url.pathname === "/") {
    res.writeHead(302, { ...headers, Location: PAGE_PATH });
    return res.end();
  }
  let path = resolve(REPO_ROOT, `.${decodeURIComponent(url.pathname)}`);
  // Only files under the repository, never a path that climbs out of it.
  if (path !== REPO_ROOT && !path.startsWith(REPO_ROOT + sep)) return notFound(res, headers, url.pathname);
  let info = await stat(path).catch(() => null);
  if (info?.isDirectory()) {
    path = join(path, "index.html");
    info = await stat(path).catch(() => null);
  }
  if (!info?.isFile()) return notFound(res, headers, url.pathname);
  const type = MIME[extname(path)] ?? "application/octet-stream";
  let body = await readFile(path);
  if (extname(path) === ".js" || extname(path) === ".mjs")
    body = Buffer.from(resolveBareImports(body.toString("utf8"), imports));
  res.writeHead(200, { ...headers, "Content-Type": type, "Content-Length": body.length });
  res.end(req.method === "HEAD" ? undefined : body);
}

function notFound(res, headers, pathname) {
  res.writeHead(404, { ...headers, "Content-Type": "text/plain; charset=utf-8" });
  res.end(`not found: ${pathname}\n`);
}

function portArg(argv) {
  const i = argv.indexOf("--port");
  const raw = i >= 0 ? argv[i + 1] : process.env.PORT;
  if (raw === undefined) return 8080;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--port must be 0–65535, got ${raw}`);
  return n;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { url } = await startServer({ port: portArg(process.argv.slice(2)) });
  console.log(`lorakit browser example: ${url}`);
  console.log("(serving the repository read-only on 127.0.0.1; Ctrl-C stops it)");
}
