// A server-sent-events response body that the handler pushes whole frames into: one byte
// chunk per frame straight into the ReadableStream the HTTP server reads, with backpressure
// (a write waits while the client is behind). hono's streamSSE puts a TransformStream and a
// second ReadableStream between the two, three stream hops per token event; this is one.

const encoder = new TextEncoder();

/** Frames buffered before a write waits for the client to read. */
const HIGH_WATER_FRAMES = 8;

export class SseBody {
  readonly stream: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private wake: (() => void) | null = null;
  /** The body ended, or the reader (the client's connection) went away. */
  closed = false;

  constructor() {
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          this.controller = c;
        },
        pull: () => this.resume(),
        cancel: () => {
          this.closed = true;
          this.resume();
        },
      },
      { highWaterMark: HIGH_WATER_FRAMES },
    );
  }

  private resume(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Sends one event whose data is `data` (a single line, such as JSON). */
  async write(data: string): Promise<void> {
    if (this.closed) return;
    this.controller.enqueue(encoder.encode(`data: ${data}\n\n`));
    while (!this.closed && (this.controller.desiredSize ?? 1) <= 0)
      await new Promise<void>((r) => {
        this.wake = r;
      });
  }

  /** Ends the body (once; nothing after a cancel). */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.controller.close();
  }
}

/** The headers hono's streamSSE sends, which the SSE responses keep. */
export const SSE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Transfer-Encoding": "chunked",
  "Content-Type": "text/event-stream",
  "Cache-Control": "no-cache",
  Connection: "keep-alive",
});
