// The adapter registry: model ids → adapter folders (every subfolder of the root that holds
// a PEFT adapter, plus adapters registered at run time), loaded into one shared PeftModel on
// first use under an internal name, kept in an LRU bounded by count and bytes. Only idle
// adapters (no running sequence holds them) are evicted; a sequence holds its adapter from
// admission to its last token.
import { readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Tensor } from "../core/tensor.js";
import { openSafetensors } from "../io/node/index.js";
import type { LlamaForCausalLM } from "../models/llama/model.js";
import { parseLoraConfig } from "../peft/config.js";
import { loadAdapterTensors } from "../peft/format.js";
import type { LoraLinear } from "../peft/lora/layer.js";
import { PeftModel } from "../peft/model.js";
import { CONFIG_NAME, WEIGHTS_NAME } from "../peft/node/io.js";
import { ServeError } from "./errors.js";
import { checkAdapterName, fileInside, isInside, isValidAdapterName, resolveInsideRoot } from "./paths.js";
import type { ModelEntry } from "./protocol.js";

interface Entry {
  id: string;
  /** Real path of the adapter folder. */
  dir: string;
  /** The folder as it was named (the lora_path of the request, or root/<id>): /v1/models' root. */
  shown: string;
  /** Files must stay inside the root (false for adapters the operator named on the command line). */
  confined: boolean;
  /** Name inside the PeftModel while loaded (model ids may hold dots, PEFT names may not). */
  internal: string | null;
  bytes: number;
  /** Running sequences that use it. */
  refs: number;
  lastUsed: number;
  /** Unregistered while in use: unloaded when its last sequence ends. */
  removed: boolean;
}

export interface RegistryOptions {
  baseId: string;
  root: string | null;
  maxLoaded: number;
  maxBytes: number;
  /** Idle adapters older than this are unloaded by sweep() (0 = never). */
  idleMs: number;
  onLoad?: (id: string, seconds: number) => void;
  onEvict?: (id: string, reason: "lru" | "idle" | "unload") => void;
}

/** What a sequence holds while it runs. */
export interface AdapterLease {
  readonly id: string;
  readonly internal: string;
}

export class AdapterRegistry {
  readonly pm: PeftModel<LlamaForCausalLM>;
  private readonly entries = new Map<string, Entry>();
  /** Root folders unloaded through the API: not rediscovered by scans. */
  private readonly hidden = new Set<string>();
  private nextInternal = 0;
  /** Bumped whenever the set of LoRA layers may have changed. */
  version = 0;

  constructor(
    model: LlamaForCausalLM,
    private readonly opts: RegistryOptions,
  ) {
    this.pm = new PeftModel(model);
  }

  /** Every LoRA layer of the shared model (changes as adapters load and unload). */
  loraLayers(): LoraLinear[] {
    return [...this.pm.loraLayers()].map(([, l]) => l);
  }

  get loadedCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.internal) n++;
    return n;
  }

  get loadedBytes(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.bytes;
    return n;
  }

  /** Adds every subfolder of the root that holds adapter_config.json (and is not known yet). */
  scan(): void {
    const root = this.opts.root;
    if (root === null) return;
    const realRoot = realpathSync(root);
    for (const d of readdirSync(realRoot, { withFileTypes: true })) {
      const name = d.name;
      if (!isValidAdapterName(name) || name === this.opts.baseId) continue;
      if (this.entries.has(name) || this.hidden.has(name)) continue;
      if (!d.isDirectory() && !d.isSymbolicLink()) continue;
      try {
        const real = realpathSync(join(realRoot, name));
        if (!isInside(realRoot, real) || !statSync(real).isDirectory()) continue;
        if (fileInside(realRoot, real, CONFIG_NAME) === null) continue;
        this.entries.set(name, this.newEntry(name, real, true, join(root, name)));
      } catch {
        // unreadable or a symlink out of the root: not served
      }
    }
  }

  list(): ModelEntry[] {
    this.scan();
    return [...this.entries.values()]
      .filter((e) => !e.removed)
      .map((e) => ({ id: e.id, parent: this.opts.baseId, root: e.shown, loaded: e.internal !== null }))
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  has(id: string): boolean {
    if (!this.entries.has(id)) this.scan();
    const e = this.entries.get(id);
    return e !== undefined && !e.removed;
  }

  /**
   * Registers an adapter at run time (vLLM's load_lora_adapter) and loads it at once, so an
   * adapter that does not fit the base is refused now with the reason. `trusted` paths (the
   * command line) may lie outside the root.
   */
  register(name: unknown, path: unknown, opts: { trusted?: boolean } = {}): void {
    const id = checkAdapterName(name);
    if (id === this.opts.baseId)
      throw new ServeError(
        400,
        `"${id}" is the base model's id; pick another lora_name`,
        "invalid_adapter_name",
        "lora_name",
      );
    if (this.entries.has(id) && !this.entries.get(id)!.removed)
      throw new ServeError(
        400,
        `The lora adapter '${id}' has already been loaded.`,
        "adapter_exists",
        "lora_name",
      );
    let dir: string;
    if (opts.trusted) {
      if (typeof path !== "string" || path === "")
        throw new ServeError(400, "lora path must be a non-empty string");
      try {
        dir = realpathSync(resolve(path));
      } catch (e) {
        throw new ServeError(404, `${path}: no such adapter folder`, "adapter_not_found", null, { cause: e });
      }
    } else dir = resolveInsideRoot(this.opts.root, path);
    const entry = this.newEntry(id, dir, !opts.trusted, String(path));
    if (fileInside(entry.confined ? this.opts.root : null, dir, CONFIG_NAME) === null)
      throw new ServeError(
        400,
        `${String(path)}: no ${CONFIG_NAME} (is this a PEFT adapter folder?)`,
        "invalid_adapter",
        "lora_path",
      );
    const old = this.entries.get(id);
    if (old) this.entries.delete(id); // a removed entry still draining: it keeps its own lease
    this.entries.set(id, entry);
    this.hidden.delete(id);
    try {
      if (this.makeRoomForOne()) this.loadEntry(entry);
      this.enforceBytes(entry);
    } catch (e) {
      this.entries.delete(id);
      if (old) this.entries.set(id, old);
      throw e;
    }
  }

  /** Forgets an adapter (vLLM's unload_lora_adapter); its weights go once no sequence uses them. */
  unregister(name: unknown): void {
    const id = checkAdapterName(name);
    const e = this.entries.get(id);
    if (!e || e.removed)
      throw new ServeError(
        404,
        `The lora adapter '${id}' cannot be found.`,
        "adapter_not_found",
        "lora_name",
      );
    e.removed = true;
    if (this.opts.root !== null && isInside(realpathSync(this.opts.root), e.dir)) this.hidden.add(id);
    if (e.refs === 0) {
      this.evict(e, "unload");
      this.entries.delete(id);
    }
  }

  /**
   * Takes a lease on adapter `id`, loading it if needed. Returns null when it cannot be
   * loaded now because every loaded adapter is in use (the caller retries later); throws a
   * 404 for an unknown id and a 400 for an adapter that does not fit the base.
   */
  acquire(id: string): AdapterLease | null {
    if (!this.has(id))
      throw new ServeError(404, `The model \`${id}\` does not exist.`, "model_not_found", "model");
    const e = this.entries.get(id)!;
    if (!e.internal) {
      if (!this.makeRoomForOne()) return null;
      this.loadEntry(e);
      if (!this.enforceBytes(e)) {
        this.evict(e, "lru");
        return null;
      }
    }
    e.refs++;
    e.lastUsed = performance.now();
    return { id, internal: e.internal! };
  }

  release(lease: AdapterLease): void {
    const e = [...this.entries.values()].find((x) => x.internal === lease.internal) ?? null;
    if (!e) return;
    e.refs--;
    e.lastUsed = performance.now();
    if (e.refs === 0 && e.removed) {
      this.evict(e, "unload");
      if (this.entries.get(e.id) === e) this.entries.delete(e.id);
    }
  }

  /** Unloads adapters idle longer than the idle limit. */
  sweep(now = performance.now()): void {
    if (this.opts.idleMs <= 0) return;
    for (const e of this.entries.values())
      if (e.internal && e.refs === 0 && now - e.lastUsed > this.opts.idleMs) this.evict(e, "idle");
  }

  private newEntry(id: string, dir: string, confined: boolean, shown: string): Entry {
    return { id, dir, shown, confined, internal: null, bytes: 0, refs: 0, lastUsed: 0, removed: false };
  }

  private idleLru(except?: Entry): Entry | null {
    let best: Entry | null = null;
    for (const e of this.entries.values())
      if (e !== except && e.internal && e.refs === 0 && (!best || e.lastUsed < best.lastUsed)) best = e;
    return best;
  }

  /** Evicts idle adapters until one more fits the count bound; false when all are busy. */
  private makeRoomForOne(): boolean {
    while (this.loadedCount >= this.opts.maxLoaded) {
      const v = this.idleLru();
      if (!v) return false;
      this.evict(v, "lru");
    }
    return true;
  }

  /** Evicts idle adapters (not `keep`) until the byte bound holds; false when it cannot. */
  private enforceBytes(keep: Entry): boolean {
    if (keep.bytes > this.opts.maxBytes)
      throw new ServeError(
        400,
        `adapter "${keep.id}" holds ${keep.bytes} bytes of weights, more than the server's limit of ${this.opts.maxBytes} (--max-adapter-bytes)`,
        "adapter_too_large",
        "model",
      );
    while (this.loadedBytes > this.opts.maxBytes) {
      const v = this.idleLru(keep);
      if (!v) return false;
      this.evict(v, "lru");
    }
    return true;
  }

  private evict(e: Entry, reason: "lru" | "idle" | "unload"): void {
    if (!e.internal) return;
    this.pm.deleteAdapter(e.internal);
    e.internal = null;
    e.bytes = 0;
    this.version++;
    this.opts.onEvict?.(e.id, reason);
  }

  private loadEntry(e: Entry): void {
    const t0 = performance.now();
    const root = e.confined ? this.opts.root : null;
    const where = `adapter "${e.id}"`;
    const cfgPath = fileInside(root, e.dir, CONFIG_NAME);
    const wPath = fileInside(root, e.dir, WEIGHTS_NAME);
    if (cfgPath === null || wPath === null)
      throw new ServeError(
        400,
        `${where}: the folder needs ${CONFIG_NAME} and ${WEIGHTS_NAME} (safetensors only)`,
        "invalid_adapter",
        "model",
      );
    const internal = `lora${this.nextInternal++}`;
    try {
      const config = parseLoraConfig(JSON.parse(readFileSync(cfgPath, "utf8")), cfgPath);
      if (config.bias !== "none")
        throw new ServeError(
          400,
          `${where} trains base-layer biases (bias="${config.bias}"); the server shares one base model between adapters, so it serves only bias="none" adapters (merge this one instead)`,
          "adapter_incompatible",
          "model",
        );
      if (config.modulesToSave?.length)
        throw new ServeError(
          400,
          `${where} has modules_to_save (${config.modulesToSave.join(", ")}); full module copies cannot share a base model, so the server refuses it`,
          "adapter_incompatible",
          "model",
        );
      config.inferenceMode = true;
      const f = openSafetensors(wPath);
      const tensors = new Map<string, Tensor>();
      try {
        for (const n of f.names()) tensors.set(n, f.tensor(n));
      } finally {
        f.close();
      }
      const report = loadAdapterTensors(this.pm, internal, config, tensors, { where });
      this.version++;
      if (report.unexpected.length) {
        this.pm.deleteAdapter(internal);
        throw new ServeError(
          400,
          `${where}: ${report.unexpected.length} tensor(s) match no module of the base model that the config targets, e.g. ${report.unexpected.slice(0, 3).join(", ")} — was it trained on another base model?`,
          "adapter_incompatible",
          "model",
        );
      }
    } catch (err) {
      if (this.pm.peftConfig.has(internal)) this.pm.deleteAdapter(internal);
      if (err instanceof ServeError) throw err;
      throw new ServeError(
        400,
        `${where} does not fit the base model: ${err instanceof Error ? err.message : String(err)}`,
        "adapter_incompatible",
        "model",
        { cause: err },
      );
    }
    let bytes = 0;
    for (const l of this.loraLayers()) {
      if (!l.hasAdapter(internal)) continue;
      bytes += (l.lora_A.get(internal)!.weight.size + l.lora_B.get(internal)!.weight.size) * 4;
    }
    e.internal = internal;
    e.bytes = bytes;
    e.lastUsed = performance.now();
    this.opts.onLoad?.(e.id, (performance.now() - t0) / 1000);
  }
}
