// Prometheus text exposition (format 0.0.4): counters, gauges and histograms with labels,
// enough for the server's own numbers; no client library needed.

type Labels = Readonly<Record<string, string>>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys
    .map((k) => `${k}="${String(labels[k]).replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`))}"`)
    .join(",");
}

function fmt(v: number): string {
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  return Number.isInteger(v) ? String(v) : v.toPrecision(6);
}

abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  abstract readonly kind: "counter" | "gauge" | "histogram";
  protected abstract lines(): string[];
  render(): string {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.kind}`, ...this.lines()].join(
      "\n",
    );
  }
}

export class Counter extends Metric {
  readonly kind = "counter";
  private readonly values = new Map<string, number>();
  inc(labels: Labels = {}, v = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + v);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  protected lines(): string[] {
    if (this.values.size === 0) return [`${this.name} 0`];
    return [...this.values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ""} ${fmt(v)}`);
  }
}

export class Gauge extends Metric {
  readonly kind = "gauge";
  private read: () => number = () => 0;
  /** The gauge reads its value when rendered. */
  bind(read: () => number): this {
    this.read = read;
    return this;
  }
  protected lines(): string[] {
    return [`${this.name} ${fmt(this.read())}`];
  }
}

export class Histogram extends Metric {
  readonly kind = "histogram";
  private readonly counts: number[];
  private sum = 0;
  private n = 0;
  constructor(
    name: string,
    help: string,
    readonly buckets: readonly number[],
  ) {
    super(name, help);
    this.counts = new Array(buckets.length).fill(0);
  }
  observe(v: number): void {
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) this.counts[i]++;
    this.sum += v;
    this.n++;
  }
  get count(): number {
    return this.n;
  }
  protected lines(): string[] {
    const out = this.buckets.map((b, i) => `${this.name}_bucket{le="${fmt(b)}"} ${this.counts[i]}`);
    out.push(
      `${this.name}_bucket{le="+Inf"} ${this.n}`,
      `${this.name}_sum ${fmt(this.sum)}`,
      `${this.name}_count ${this.n}`,
    );
    return out;
  }
}

/** Latency buckets in seconds (5 ms … 60 s). */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
/** Batch-size buckets (powers of two). */
export const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256] as const;

export class MetricsRegistry {
  private readonly metrics: Metric[] = [];
  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }
  gauge(name: string, help: string): Gauge {
    return this.add(new Gauge(name, help));
  }
  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, buckets));
  }
  private add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  render(): string {
    return `${this.metrics.map((m) => m.render()).join("\n")}\n`;
  }
}
