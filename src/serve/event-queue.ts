// The engine's events for one generation as an async queue: the engine pushes from its
// callback, the HTTP handler awaits them one by one (a disconnect pushes a final error).
import type { EngineEvent } from "./protocol.js";

export class EventQueue {
  private readonly items: EngineEvent[] = [];
  private wake: (() => void) | null = null;
  push = (ev: EngineEvent): void => {
    this.items.push(ev);
    this.wake?.();
  };
  async next(): Promise<EngineEvent> {
    while (this.items.length === 0) await new Promise<void>((r) => (this.wake = r));
    this.wake = null;
    return this.items.shift()!;
  }
}
