// `npx lorakit serve` runs the server as a grandchild of npx; when npx itself is killed
// (kill -9, a closed terminal, a supervisor's timeout) the server is re-parented and would
// run on, holding its port, with nobody left to stop it. The server checks its parent.

/** Calls `onOrphaned` once when this process's parent changes (it died); checks every `everyMs`. */
export function watchParent(onOrphaned: () => void, everyMs = 1000): () => void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      onOrphaned();
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
