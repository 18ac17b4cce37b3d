// The job board the caller and the workers share, in the shared wasm memory at `ctl` (see
// pool.ts for the caller's side, worker-loop.ts for a worker's). One job at a time: the caller
// writes the kernel, its arguments and how many parts it is cut into, bumps GEN and wakes the
// workers; then every thread, the caller included, claims parts one at a time from TICKET
// (claimPart) and runs them, adding one to DONE per part; the caller returns when DONE counts
// every part. Parts are claimed, not assigned: a thread the OS deschedules (a shared machine,
// a browser's busy tab) leaves its parts to the others instead of holding up the call. Every
// kernel computes each element the same way whatever the part count and whoever runs the
// part, so results stay bit-identical. Browser-safe, no imports.

/** Int32 slots. */
export const GEN = 0; // bumped once per job (and once to quit)
export const DONE = 1; // parts of the current job finished
export const KERNEL = 2; // index into THREADED_KERNELS
export const NARGS = 3; // arguments in ARGS (tid and nth excluded)
export const NTH = 4; // parts the job is cut into: the kernels' nth, each part's number its tid
export const FAILED = 5; // 0, or 1 + the tid of the first worker whose part threw
export const QUIT = 6; // 1: workers leave their loop
export const ERR_LEN = 7; // characters of the failure message in ERR_TEXT
export const STOPPED = 8; // 0, or 1 + the tid of a worker whose loop ended for good
export const TICKET = 9; // the job's GEN (low bits) above the next unclaimed part (see claimPart)

/** Byte offsets inside the board. */
export const ARGS_AT = 64; // Float64 arguments (exact for every i32 and f32)
export const MAX_ARGS = 32;
export const ERR_AT = ARGS_AT + MAX_ARGS * 8; // UTF-16 failure message
export const ERR_CHARS = 256;

/** Parts a job may be cut into: the part number takes the low PART_BITS bits of TICKET. */
const PART_BITS = 11;
export const MAX_PARTS = 1 << (PART_BITS - 1);

/**
 * Int32 per part: the GEN of the last job whose part of that number finished (stored before
 * DONE counts it), so the caller can use a part's output while others still run (pool.ts).
 */
export const PART_DONE_AT = ERR_AT + ERR_CHARS * 2;
/** Bytes the board occupies. */
export const BOARD_BYTES = PART_DONE_AT + MAX_PARTS * 4;

/** The board's per-part done marks (PART_DONE_AT). */
export function partDoneMarks(memory: WebAssembly.Memory, ctl: number): Int32Array {
  return new Int32Array(memory.buffer, ctl + PART_DONE_AT, MAX_PARTS);
}

/** TICKET's value when job `gen` is posted: its generation above part 0 (stays below 2³¹). */
export function ticketBase(gen: number): number {
  return (gen & 0x7ffff) << PART_BITS;
}

/**
 * Claims the next part of job `gen` (cut into `parts`), or −1 when every part is taken or
 * that job is no longer the current one. The generation in TICKET makes a thread that read
 * job `gen`'s arguments and then slept through it claim nothing of the next job.
 */
export function claimPart(board: Int32Array, gen: number, parts: number): number {
  const base = ticketBase(gen);
  for (;;) {
    const t = Atomics.load(board, TICKET);
    const part = t - base;
    if (part < 0 || part >= parts) return -1;
    if (Atomics.compareExchange(board, TICKET, t, t + 1) === t) return part;
  }
}

/** Writes `message` (cut to ERR_CHARS) as the failure of worker `tid`, unless one is already there. */
export function reportFailure(memory: WebAssembly.Memory, ctl: number, tid: number, message: string): void {
  const board = new Int32Array(memory.buffer, ctl, 16);
  if (Atomics.compareExchange(board, FAILED, 0, tid + 1) !== 0) return;
  const text = message.slice(0, ERR_CHARS);
  const chars = new Uint16Array(memory.buffer, ctl + ERR_AT, ERR_CHARS);
  for (let i = 0; i < text.length; i++) chars[i] = text.charCodeAt(i);
  Atomics.store(board, ERR_LEN, text.length);
}

/** The failure message a worker left on the board. */
export function readFailure(memory: WebAssembly.Memory, ctl: number): string {
  const board = new Int32Array(memory.buffer, ctl, 16);
  const n = Atomics.load(board, ERR_LEN);
  return String.fromCharCode(...new Uint16Array(memory.buffer, ctl + ERR_AT, n));
}

/**
 * How long a worker that finished a job (or a caller waiting for workers) watches the board
 * before it sleeps in Atomics.wait: a training step issues hundreds of calls back to back, and
 * a futex wake-up costs more than this spin (the native pool does the same, native/src/threadpool.cc).
 */
export const SPIN_MS = 0.06;

/** Watches slot `at` for up to `ms` while it holds `seen`; returns the value it holds then. */
export function spinWhile(board: Int32Array, at: number, seen: number, ms: number): number {
  let v = Atomics.load(board, at);
  if (v !== seen) return v;
  const until = performance.now() + ms;
  do {
    for (let i = 0; i < 64; i++) {
      v = Atomics.load(board, at);
      if (v !== seen) return v;
    }
  } while (performance.now() < until);
  return v;
}
