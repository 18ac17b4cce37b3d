// The serving engine (no HTTP, no threads): requests wait in a queue and are admitted up to
// the batch limit, each with its own KV cache. Every step is one model call for all admitted
// sequences, whatever adapter each uses: the decoding ones feed one token, the prefilling ones
// a chunk of their prompt (chunked prefill, as vLLM does, up to PREFILL_TOKENS_PER_STEP prompt
// tokens per step), so long prompts neither wait for each other nor stall the decoding
// (continuous batching: sequences join and leave between steps). Each request samples with
// its own settings and seeded generator. step() is synchronous; the worker calls it in a loop
// and lets messages (new requests, cancellations) in between steps.
import { ShapeError } from "../core/errors.js";
import { Rng } from "../core/rng.js";
import { nextToken } from "../models/generate.js";
import { KVCache, type KVDType } from "../models/llama/kv-cache.js";
import type { LlamaForCausalLM } from "../models/llama/model.js";
import { BASE_ROW, type LoraLinear } from "../peft/lora/layer.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { batchStep, type StepRow } from "./batch-step.js";
import { ServeError } from "./errors.js";
import { BATCH_BUCKETS, LATENCY_BUCKETS, MetricsRegistry } from "./metrics.js";
import type { EngineEvent, FinishReason, GenRequest, ServeLimits } from "./protocol.js";
import type { AdapterLease, AdapterRegistry } from "./registry.js";

export type EventSink = (ev: EngineEvent) => void;

/**
 * Prompt tokens prefilled per step, across sequences (at least one token of one sequence is):
 * bounds how long decoding sequences wait for a step while long prompts come in.
 */
const PREFILL_TOKENS_PER_STEP = 512;

interface Seq {
  id: number;
  req: GenRequest;
  maxTokens: number;
  sink: EventSink;
  promptIds: number[];
  eos: ReadonlySet<number>;
  lease: AdapterLease | null;
  cache: KVCache | null;
  /** Prompt tokens already in the cache; the sequence decodes once all are. */
  prefilled: number;
  rng: Rng;
  tokens: number[];
  /** Characters of text already sent. */
  sent: number;
  t0: number;
  /** When it entered the batch. */
  admitted?: number;
}

/** The engine's Prometheus metrics (the registry's load/evict hooks feed two of them). */
export function createEngineMetrics() {
  const reg = new MetricsRegistry();
  return {
    registry: reg,
    promptTokens: reg.counter("lorakit_prompt_tokens_total", "Prompt tokens prefilled."),
    generationTokens: reg.counter("lorakit_generation_tokens_total", "Tokens generated."),
    finished: reg.counter("lorakit_engine_requests_total", "Generations ended, by finish reason."),
    batchSize: reg.histogram("lorakit_batch_size", "Sequences per decode step.", BATCH_BUCKETS),
    adaptersPerBatch: reg.histogram(
      "lorakit_batch_adapters",
      "Distinct adapters per decode step.",
      BATCH_BUCKETS,
    ),
    stepSeconds: reg.histogram(
      "lorakit_decode_step_seconds",
      "Time of one step of the continuous batch (decode tokens and prompt chunks).",
      LATENCY_BUCKETS,
    ),
    prefillSeconds: reg.histogram(
      "lorakit_prefill_seconds",
      "From admission to the end of a prompt's prefill.",
      LATENCY_BUCKETS,
    ),
    ttft: reg.histogram(
      "lorakit_time_to_first_token_seconds",
      "From submission to the first token.",
      LATENCY_BUCKETS,
    ),
    adapterLoads: reg.counter("lorakit_adapter_loads_total", "Adapters loaded into memory."),
    adapterLoadSeconds: reg.histogram(
      "lorakit_adapter_load_seconds",
      "Time to load an adapter.",
      LATENCY_BUCKETS,
    ),
    adapterEvictions: reg.counter("lorakit_adapter_evictions_total", "Adapters unloaded, by reason."),
    running: reg.gauge("lorakit_requests_running", "Sequences being decoded."),
    waiting: reg.gauge("lorakit_requests_waiting", "Requests waiting for a batch slot or an adapter."),
    adaptersLoaded: reg.gauge("lorakit_adapters_loaded", "Adapters in memory."),
    adapterBytes: reg.gauge("lorakit_adapter_bytes", "Bytes of adapter weights in memory."),
    kvBytes: reg.gauge("lorakit_kv_cache_bytes", "Bytes of KV cache held by running sequences."),
  };
}
export type EngineMetrics = ReturnType<typeof createEngineMetrics>;

export interface EngineOptions {
  model: LlamaForCausalLM;
  tokenizer: Tokenizer;
  registry: AdapterRegistry;
  baseId: string;
  limits: ServeLimits;
  metrics?: EngineMetrics;
  /** Prompt tokens prefilled per step across sequences (default PREFILL_TOKENS_PER_STEP). */
  prefillTokensPerStep?: number;
  /** Storage of each sequence's KV cache: f32 (default) or bf16 (half the bytes). */
  kvDtype?: KVDType;
}

export class Engine {
  private readonly waiting: Seq[] = [];
  private readonly running: Seq[] = [];
  private layers: LoraLinear[] = [];
  private layersVersion = -1;
  readonly metrics: EngineMetrics;
  private readonly cfgEos: number[];
  /** The logits of the last step, reused by the next (sampling is done before it runs). */
  private logitsBuffer: Float32Array = new Float32Array(0);

  constructor(private readonly o: EngineOptions) {
    this.metrics = o.metrics ?? createEngineMetrics();
    const m = this.metrics;
    m.running.bind(() => this.running.length);
    m.waiting.bind(() => this.waiting.length);
    m.adaptersLoaded.bind(() => o.registry.loadedCount);
    m.adapterBytes.bind(() => o.registry.loadedBytes);
    m.kvBytes.bind(() => this.running.reduce((s, q) => s + (q.cache?.bytes ?? 0), 0));
    const e = o.model.config.eosTokenId;
    this.cfgEos = e === null ? [] : typeof e === "number" ? [e] : [...e];
  }

  /** True while requests wait or run. */
  get busy(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  get counts(): { waiting: number; running: number } {
    return { waiting: this.waiting.length, running: this.running.length };
  }

  /** Tokenizes and checks a request, then queues it; problems go to `sink` as an error event. */
  submit(id: number, req: GenRequest, sink: EventSink): void {
    try {
      const { promptIds, eos, maxTokens } = this.prepare(req);
      this.waiting.push({
        id,
        req,
        maxTokens,
        sink,
        promptIds,
        eos,
        lease: null,
        cache: null,
        prefilled: 0,
        rng: new Rng(req.seed ?? (Math.random() * 2 ** 31) | 0),
        tokens: [],
        sent: 0,
        t0: performance.now(),
      });
    } catch (e) {
      sink({ kind: "error", error: ServeError.from(e).toJSON() });
    }
  }

  /** Drops a request (the client went away); it gets no further events. */
  cancel(id: number): void {
    const w = this.waiting.findIndex((s) => s.id === id);
    if (w >= 0) this.waiting.splice(w, 1);
    const r = this.running.findIndex((s) => s.id === id);
    if (r >= 0) this.release(this.running.splice(r, 1)[0]);
  }

  private prepare(req: GenRequest): { promptIds: number[]; eos: Set<number>; maxTokens: number } {
    const { tokenizer, model, limits, baseId, registry } = this.o;
    if (req.model !== baseId && !registry.has(req.model))
      throw new ServeError(404, `The model \`${req.model}\` does not exist.`, "model_not_found", "model");
    const eos = new Set(this.cfgEos);
    if (tokenizer.eosTokenId !== null) eos.add(tokenizer.eosTokenId);
    let promptIds: number[];
    const p = req.prompt;
    switch (p.kind) {
      case "text":
        promptIds = tokenizer.encode(p.text);
        break;
      case "ids":
        for (const t of p.ids)
          if (!Number.isInteger(t) || t < 0 || t >= model.config.vocabSize)
            throw new ServeError(
              400,
              `prompt token id ${t} is outside the vocabulary [0, ${model.config.vocabSize})`,
              "invalid_prompt",
              "prompt",
            );
        promptIds = [...p.ids];
        break;
      case "chat": {
        if (tokenizer.chatTemplate() === null)
          throw new ServeError(
            400,
            "this model's tokenizer_config.json has no chat_template; use /v1/completions",
            "no_chat_template",
            "messages",
          );
        const text = tokenizer.applyChatTemplate(p.messages, { addGenerationPrompt: true });
        promptIds = tokenizer.encode(text);
        // Chat turns end with the template's end-of-turn token.
        for (const t of ["<|eot_id|>", "<|im_end|>", "<|end|>"]) {
          const id = tokenizer.tokenToId(t);
          if (id !== undefined) eos.add(id);
        }
        break;
      }
      default:
        throw new ServeError(400, `unknown prompt kind ${(p satisfies never as { kind: string }).kind}`);
    }
    if (promptIds.length === 0)
      throw new ServeError(400, "the prompt encodes to no tokens", "empty_prompt", "prompt");
    if (promptIds.length > limits.maxPromptTokens)
      throw new ServeError(
        400,
        `the prompt has ${promptIds.length} tokens, more than this server's limit of ${limits.maxPromptTokens} (--max-prompt-tokens)`,
        "prompt_too_long",
        "prompt",
      );
    const cfg = model.config;
    const sw = cfg.layerTypes.includes("sliding_attention") ? cfg.slidingWindow : null;
    const ctx = Math.min(cfg.maxPositionEmbeddings, sw ?? Number.POSITIVE_INFINITY);
    const maxTokens = req.maxTokens ?? Math.min(limits.maxTokens, ctx - promptIds.length);
    if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > limits.maxTokens)
      throw new ServeError(
        400,
        `max_tokens must be an integer in [1, ${limits.maxTokens}] (--max-tokens), got ${maxTokens}`,
        "max_tokens_too_large",
        "max_tokens",
      );
    if (promptIds.length + maxTokens > ctx)
      throw new ServeError(
        400,
        `This model's maximum context length is ${ctx} tokens. However, you requested ${promptIds.length + maxTokens} tokens (${promptIds.length} in the prompt, ${maxTokens} for the completion). Please reduce the length of the prompt or max_tokens.`,
        "context_length_exceeded",
        "max_tokens",
      );
    return { promptIds, eos, maxTokens };
  }

  private loraLayers(): LoraLinear[] {
    if (this.layersVersion !== this.o.registry.version) {
      this.layers = this.o.registry.loraLayers();
      this.layersVersion = this.o.registry.version;
    }
    return this.layers;
  }

  /** One scheduling step: admit what fits, then one model call for every admitted sequence. */
  step(): void {
    this.o.registry.sweep();
    this.admit();
    this.runStep();
  }

  /** Moves waiting requests into the batch (adapter leased, cache allocated) while it has room. */
  private admit(): void {
    const { model, registry, limits, baseId } = this.o;
    const cfg = model.config;
    for (let i = 0; i < this.waiting.length && this.running.length < limits.maxBatch; ) {
      const s = this.waiting[i];
      let lease: AdapterLease | null = null;
      try {
        if (s.req.model !== baseId) {
          lease = registry.acquire(s.req.model);
          if (lease === null) {
            i++; // every loaded adapter is busy: wait for one to free up
            continue;
          }
        }
      } catch (e) {
        this.waiting.splice(i, 1);
        s.sink({ kind: "error", error: ServeError.from(e).toJSON() });
        continue;
      }
      this.waiting.splice(i, 1);
      s.lease = lease;
      try {
        s.cache = new KVCache(
          cfg.numHiddenLayers,
          1,
          s.promptIds.length + s.maxTokens,
          cfg.numKeyValueHeads,
          cfg.headDim,
          { dtype: this.o.kvDtype ?? "f32" },
        );
      } catch (e) {
        this.release(s);
        s.sink({ kind: "error", error: ServeError.from(e).toJSON() });
        continue;
      }
      s.admitted = performance.now();
      this.running.push(s);
    }
  }

  /**
   * One model call: the newest token of every decoding sequence, and the next chunk of the
   * prompts still prefilling (in admission order, PREFILL_TOKENS_PER_STEP tokens in all).
   */
  private runStep(): void {
    const batch: { s: Seq; row: StepRow; prefill: boolean }[] = [];
    let budget = this.o.prefillTokensPerStep ?? PREFILL_TOKENS_PER_STEP;
    for (const s of this.running) {
      const adapter = s.lease?.internal ?? BASE_ROW;
      const left = s.promptIds.length - s.prefilled;
      if (left === 0) {
        batch.push({
          s,
          row: { tokens: [s.tokens[s.tokens.length - 1]], cache: s.cache!, adapter },
          prefill: false,
        });
        continue;
      }
      const n = Math.min(left, budget);
      if (n === 0) continue;
      budget -= n;
      const tokens = s.promptIds.slice(s.prefilled, s.prefilled + n);
      batch.push({ s, row: { tokens, cache: s.cache!, adapter }, prefill: true });
    }
    if (batch.length === 0) return;
    const t0 = performance.now();
    let logits: Float32Array;
    try {
      logits = batchStep(
        this.o.model,
        this.loraLayers(),
        batch.map((b) => b.row),
        this.logitsBuffer,
      );
      if (logits.buffer !== this.logitsBuffer.buffer) this.logitsBuffer = logits;
    } catch (e) {
      for (const { s } of batch) this.fail(s, e);
      return;
    }
    const m = this.metrics;
    const now = performance.now();
    m.stepSeconds.observe((now - t0) / 1000);
    m.batchSize.observe(batch.length);
    m.adaptersPerBatch.observe(new Set(batch.map((b) => b.s.req.model)).size);
    const V = logits.length / batch.length;
    batch.forEach(({ s, row, prefill }, n) => {
      if (prefill) {
        s.prefilled += row.tokens.length;
        m.promptTokens.inc({}, row.tokens.length);
        if (s.prefilled < s.promptIds.length) return; // more of the prompt next step
        m.prefillSeconds.observe((now - (s.admitted ?? s.t0)) / 1000);
        m.ttft.observe((now - s.t0) / 1000);
      }
      this.accept(s, logits.subarray(n * V, (n + 1) * V));
    });
  }

  /** Samples the next token of `s` from its logits, streams it, and ends the sequence when done. */
  private accept(s: Seq, logits: Float32Array): void {
    const r = s.req;
    let token: number;
    try {
      token = nextToken(
        this.o.model,
        "the logits",
        logits,
        { maxNewTokens: 0, temperature: r.temperature, topK: r.topK, topP: r.topP },
        s.rng,
      );
    } catch (e) {
      this.fail(s, e);
      return;
    }
    s.tokens.push(token);
    this.metrics.generationTokens.inc();
    let finish: FinishReason | null = null;
    if (!r.ignoreEos && s.eos.has(token)) finish = "stop";
    else if (s.tokens.length >= s.maxTokens) finish = "length";
    const tokenEvents = r.tokenEvents !== false;
    if (!tokenEvents && r.stop.length === 0) {
      // A whole response without stop strings needs the text once, at the end.
      if (finish !== null) this.finish(s, finish, this.decode(s.tokens));
      return;
    }
    let text = this.decode(s.tokens);
    if (r.stop.length) {
      let cut = -1;
      const from = Math.max(0, s.sent - Math.max(...r.stop.map((x) => x.length)));
      for (const st of r.stop) {
        const at = text.indexOf(st, from);
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      if (cut >= 0) {
        text = text.slice(0, cut);
        finish = "stop";
      }
    }
    let end = text.length;
    if (finish === null) {
      // Hold back a possible start of a stop string and an unfinished multi-byte character.
      if (r.stop.length) end -= Math.max(...r.stop.map((x) => x.length)) - 1;
      if (text.endsWith("\uFFFD")) end = Math.min(end, text.length - 1);
    }
    const delta = end > s.sent ? text.slice(s.sent, end) : "";
    if (end > s.sent) s.sent = end;
    if (tokenEvents) s.sink({ kind: "token", token, text: delta });
    if (finish !== null) this.finish(s, finish, text);
  }

  private decode(tokens: readonly number[]): string {
    return this.o.tokenizer.decode(tokens, { skipSpecialTokens: true });
  }

  /** Ends a sequence that generated its last token: frees its slot, sends done with `text`. */
  private finish(s: Seq, finish: FinishReason, text: string): void {
    const i = this.running.indexOf(s);
    if (i >= 0) this.running.splice(i, 1);
    this.release(s);
    this.metrics.finished.inc({ finish_reason: finish });
    s.sink({ kind: "done", finishReason: finish, text, tokens: s.tokens, promptTokens: s.promptIds.length });
  }

  private fail(s: Seq, e: unknown): void {
    const i = this.running.indexOf(s);
    if (i >= 0) this.running.splice(i, 1);
    this.release(s);
    this.metrics.finished.inc({ finish_reason: "error" });
    const err =
      e instanceof ShapeError ? new ServeError(400, e.message, "invalid_request") : ServeError.from(e);
    s.sink({ kind: "error", error: err.toJSON() });
  }

  private release(s: Seq): void {
    if (s.lease) this.o.registry.release(s.lease);
    s.lease = null;
    s.cache?.dispose();
    s.cache = null;
  }
}
