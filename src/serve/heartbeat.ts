// Whether the engine worker still makes progress, readable from the HTTP thread without the
// worker's help: the worker stamps the start of each unit of work (a step, an RPC) into shared
// memory and clears it when the unit ends. A unit that has run longer than the stall limit
// (a pathological adapter, a deadlocked kernel) makes /health answer 503 while the event loop
// of the HTTP thread itself is still free to answer.

/** One shared slot: the ms timestamp (Date.now()) when the current unit began, 0 when idle. */
export class Heartbeat {
  private readonly slot: BigInt64Array;

  /** `buffer`: a SharedArrayBuffer from `Heartbeat.create()`, passed to the worker in workerData. */
  constructor(readonly buffer: SharedArrayBuffer) {
    this.slot = new BigInt64Array(buffer, 0, 1);
  }

  static create(): Heartbeat {
    return new Heartbeat(new SharedArrayBuffer(8));
  }

  /** A unit of work begins (worker side). */
  begin(now = Date.now()): void {
    Atomics.store(this.slot, 0, BigInt(now));
  }

  /** The unit ended (worker side). */
  end(): void {
    Atomics.store(this.slot, 0, 0n);
  }

  /** Milliseconds the current unit has been running at `now`, 0 when idle (HTTP side). */
  busyFor(now = Date.now()): number {
    const since = Number(Atomics.load(this.slot, 0));
    return since === 0 ? 0 : Math.max(0, now - since);
  }

  /** Runs `fn` as one unit of work. */
  run<T>(fn: () => T): T {
    this.begin();
    try {
      return fn();
    } finally {
      this.end();
    }
  }
}

/** Why /health should answer 503, or null when the engine is alive and making progress. */
export function healthProblem(
  engine: { dead: { message: string } | null; busyFor(): number },
  stallSeconds: number,
): string | null {
  if (engine.dead) return `engine unavailable: ${engine.dead.message}`;
  const busy = engine.busyFor();
  if (busy > stallSeconds * 1000)
    return `engine stalled: one unit of work has run for ${Math.round(busy / 1000)} s, more than --stall-seconds ${stallSeconds}`;
  return null;
}
