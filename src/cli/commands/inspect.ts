// `lorakit inspect DIR`: what a PEFT adapter folder holds, from its files alone (no base
// model): the config, parameter counts, and per module the update ΔW = scale·B·A — its
// Frobenius norm, singular values and effective rank — next to the adapter's own rank r.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { defineCommand } from "citty";
import type { Tensor } from "../../core/tensor.js";
import { openSafetensors } from "../../io/node/index.js";
import type { Matrix } from "../../linalg/matrix.js";
import { lowRankSvd } from "../../linalg/svd.js";
import { parseAdaLoraConfig } from "../../peft/adalora/config.js";
import { adaLoraFileAsLora } from "../../peft/adalora/convert.js";
import type { LoraConfig } from "../../peft/config.js";
import { parseLoraConfig } from "../../peft/config.js";
import { splitAdapterTensors } from "../../peft/format.js";
import { loraScale } from "../../peft/lora/layer.js";
import { CONFIG_NAME, WEIGHTS_NAME } from "../../peft/node/io.js";
import { rankAndAlpha } from "../../peft/targets.js";
import { checkOutFile } from "../out-dir.js";
import { CliError, fmtInt, out, printJson } from "../output.js";
import { asciiBars, barChartSvg, stackSvgs } from "../plot.js";

/** Singular values below this fraction of the largest do not count in `rank_1pct`. */
const RANK_THRESHOLD = 0.01;

export interface ModuleReport {
  /** Module path in the base model (model.layers.0.self_attn.q_proj). */
  module: string;
  /** Decoder layer index, null for modules outside the layer stack (lm_head). */
  layer: number | null;
  /** Last path component (q_proj). */
  kind: string;
  in: number;
  out: number;
  /**
   * The module's rank as the adapter stores it (rows of lora_A). Methods that change ranks
   * per module (AdaLoRA, GoRA) report their final rank here.
   */
  rank: number;
  alpha: number;
  scale: number;
  /** Trainable parameters of the module's adapter: A, B and B's bias. */
  params: number;
  /** ‖ΔW‖_F = ‖σ‖₂. NaN when A or B holds a non-finite value. */
  norm: number;
  /** Singular values of ΔW, descending (min(rank, in, out) of them). */
  singular_values: number[];
  /** exp(H(p)), p = σ/Σσ (Roy & Vetterli 2007): 1 for one direction, rank for a flat spectrum; 0 for ΔW = 0. */
  effective_rank: number;
  /** How many σ exceed 1% of the largest. */
  rank_1pct: number;
}

function toMatrix(t: Tensor, scale = 1): Matrix {
  const src = t.to("f32").data as Float32Array;
  const data = new Float64Array(src.length);
  for (let i = 0; i < src.length; i++) data[i] = src[i] * scale;
  return { rows: t.shape[0], cols: t.shape[1], data };
}

/** Effective rank and the count above RANK_THRESHOLD·σ₁ of a descending spectrum. */
export function spectrumRanks(s: ArrayLike<number>): { effectiveRank: number; rank1pct: number } {
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i];
  if (!(sum > 0)) return { effectiveRank: 0, rank1pct: 0 };
  let h = 0;
  let above = 0;
  for (let i = 0; i < s.length; i++) {
    const p = s[i] / sum;
    if (p > 0) h -= p * Math.log(p);
    if (s[i] > RANK_THRESHOLD * s[0]) above++;
  }
  return { effectiveRank: Math.exp(h), rank1pct: above };
}

function analyseModule(
  path: string,
  A: Tensor,
  B: Tensor,
  bias: Tensor | undefined,
  cfg: LoraConfig,
  where: string,
): ModuleReport {
  if (A.shape.length !== 2 || B.shape.length !== 2 || B.shape[1] !== A.shape[0])
    throw new CliError(
      `${where}: ${path}: lora_A [${A.shape}] and lora_B [${B.shape}] do not form a product B·A`,
    );
  const r = A.shape[0];
  const { alpha } = rankAndAlpha(cfg, path);
  const scale = loraScale(alpha, r, cfg.useRslora);
  const left = toMatrix(B, scale);
  const right = toMatrix(A);
  const layerMatch = /(?:^|\.)layers\.(\d+)\./.exec(path);
  const base = {
    module: path,
    layer: layerMatch ? Number(layerMatch[1]) : null,
    kind: path.split(".").pop()!,
    in: A.shape[1],
    out: B.shape[0],
    rank: r,
    alpha,
    scale,
    params: A.size + B.size + (bias?.size ?? 0),
  };
  if (!left.data.every(Number.isFinite) || !right.data.every(Number.isFinite))
    return { ...base, norm: Number.NaN, singular_values: [], effective_rank: Number.NaN, rank_1pct: 0 };
  // σ of B·A from the small factors: QR of each, SVD of the r×r core.
  const { S } = lowRankSvd(left, right);
  let sq = 0;
  for (const s of S) sq += s * s;
  const { effectiveRank, rank1pct } = spectrumRanks(S);
  return {
    ...base,
    norm: Math.sqrt(sq),
    singular_values: Array.from(S),
    effective_rank: effectiveRank,
    rank_1pct: rank1pct,
  };
}

export interface AdapterInspection {
  dir: string;
  config: Record<string, unknown>;
  parameters: { lora: number; other: number; total: number };
  modules: ModuleReport[];
  /** ‖ΔW‖_F over all modules together, √Σ‖ΔW_i‖². */
  total_norm: number;
}

/** Reads and analyses an adapter folder (adapter_config.json + adapter_model.safetensors). */
export function inspectAdapter(dir: string): AdapterInspection {
  const cfgPath = join(dir, CONFIG_NAME);
  const wPath = join(dir, WEIGHTS_NAME);
  if (!existsSync(cfgPath)) throw new CliError(`${dir}: no ${CONFIG_NAME} (is this a PEFT adapter folder?)`);
  if (!existsSync(wPath)) throw new CliError(`${dir}: no ${WEIGHTS_NAME}`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(cfgPath, "utf8"));
  } catch (e) {
    throw new CliError(`${cfgPath}: not valid JSON`, { cause: e });
  }
  const f = openSafetensors(wPath);
  let tensors = new Map<string, Tensor>();
  try {
    for (const n of f.names()) tensors.set(n, f.tensor(n));
  } finally {
    f.close();
  }
  let cfg: LoraConfig;
  // AdaLoRA (peft_type ADALORA) is shown as the plain LoRA adapter of its final ranks.
  if ((json as { peft_type?: unknown })?.peft_type === "ADALORA")
    ({ config: cfg, tensors } = adaLoraFileAsLora(parseAdaLoraConfig(json, cfgPath), tensors, wPath));
  else cfg = parseLoraConfig(json, cfgPath);
  const { lora, other } = splitAdapterTensors(tensors, wPath);
  const modules: ModuleReport[] = [];
  for (const [path, e] of lora) {
    if (!e.A || !e.B) throw new CliError(`${wPath}: ${path} has lora_${e.A ? "A" : "B"} but not its partner`);
    modules.push(analyseModule(path, e.A, e.B, e.bBias, cfg, wPath));
  }
  modules.sort(
    (a, b) =>
      (a.layer ?? Number.MAX_SAFE_INTEGER) - (b.layer ?? Number.MAX_SAFE_INTEGER) ||
      a.module.localeCompare(b.module),
  );
  const loraParams = modules.reduce((s, m) => s + m.params, 0);
  let otherParams = 0;
  for (const t of other.values()) otherParams += t.size;
  return {
    dir,
    config: {
      r: cfg.r,
      lora_alpha: cfg.loraAlpha,
      target_modules: cfg.targetModules,
      exclude_modules: cfg.excludeModules,
      use_rslora: cfg.useRslora,
      rank_pattern: cfg.rankPattern,
      alpha_pattern: cfg.alphaPattern,
      layers_to_transform: cfg.layersToTransform,
      lora_dropout: cfg.loraDropout,
      bias: cfg.bias,
      init_lora_weights: cfg.initLoraWeights,
      modules_to_save: cfg.modulesToSave,
      base_model_name_or_path: cfg.baseModelNameOrPath,
    },
    parameters: { lora: loraParams, other: otherParams, total: loraParams + otherParams },
    modules,
    total_norm: Math.sqrt(modules.reduce((s, m) => s + m.norm * m.norm, 0)),
  };
}

const fmtNum = (x: number, d = 4) => (Number.isFinite(x) ? x.toPrecision(d) : String(x));

function table(header: string[], rows: string[][]): string[] {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ");
  return [line(header), w.map((n) => "─".repeat(n)).join("  "), ...rows.map(line)];
}

/** One row per layer: its modules' combined ‖ΔW‖_F and their ranks. */
function perLayer(modules: ModuleReport[]) {
  const groups = new Map<string, ModuleReport[]>();
  for (const m of modules) {
    const key = m.layer === null ? m.module : `layer ${m.layer}`;
    groups.get(key)?.push(m) ?? groups.set(key, [m]);
  }
  return [...groups].map(([label, ms]) => ({
    label,
    norm: Math.sqrt(ms.reduce((s, m) => s + m.norm * m.norm, 0)),
    effectiveRank: ms.reduce((s, m) => s + m.effective_rank, 0) / ms.length,
    ranks: [...new Set(ms.map((m) => m.rank))].sort((a, b) => a - b),
  }));
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

function chartSvg(insp: AdapterInspection): string {
  const cats: string[] = [];
  const catOf = (m: ModuleReport) => (m.layer === null ? m.module : String(m.layer));
  for (const m of insp.modules) if (!cats.includes(catOf(m))) cats.push(catOf(m));
  const kinds = [...new Set(insp.modules.map((m) => m.kind))];
  const seriesOf = (value: (m: ModuleReport) => number) =>
    kinds.map((k, i) => ({
      name: k,
      color: PALETTE[i % PALETTE.length],
      values: cats.map((c) => {
        const m = insp.modules.find((x) => x.kind === k && catOf(x) === c);
        return m ? value(m) : undefined;
      }),
    }));
  const common = { xLabel: "layer" };
  return stackSvgs([
    barChartSvg(
      cats,
      seriesOf((m) => m.norm),
      {
        ...common,
        title: `‖ΔW‖_F per module — ${insp.dir}`,
        yLabel: "‖ΔW‖_F",
      },
    ),
    barChartSvg(
      cats,
      seriesOf((m) => m.effective_rank),
      {
        ...common,
        title: "effective rank of ΔW, exp(H(σ/Σσ))",
        yLabel: "effective rank",
      },
    ),
    barChartSvg(
      cats,
      seriesOf((m) => m.rank),
      { ...common, title: "adapter rank r per module", yLabel: "r" },
    ),
  ]);
}

export const inspectCommand = defineCommand({
  meta: {
    name: "inspect",
    description: "Config, parameter counts and per-module ‖ΔW‖ / effective rank of a PEFT adapter folder",
  },
  args: {
    dir: {
      type: "positional",
      description: "adapter folder (adapter_config.json + adapter_model.safetensors)",
    },
    plot: { type: "string", description: "also write an SVG bar chart to this file" },
    json: { type: "boolean", description: "print one JSON object on stdout" },
  },
  run({ args }) {
    const dir = typeof args.dir === "string" && args.dir !== "" ? args.dir : undefined;
    if (!dir) throw new CliError("give the adapter folder: lorakit inspect DIR");
    if (args.plot) checkOutFile("plot", args.plot);
    const insp = inspectAdapter(dir);
    if (args.plot) writeFileSync(args.plot, chartSvg(insp));
    if (args.json) return printJson(args.plot ? { ...insp, plot: args.plot } : insp);

    const c = insp.config;
    out(`${dir}: LoRA adapter${c.base_model_name_or_path ? ` for ${c.base_model_name_or_path}` : ""}`);
    out(
      `  r ${c.r}, lora_alpha ${c.lora_alpha}, ${c.use_rslora ? "rsLoRA (scale α/√r)" : "scale α/r"}, dropout ${c.lora_dropout}, bias ${c.bias}`,
    );
    out(`  target_modules ${JSON.stringify(c.target_modules)}`);
    for (const k of ["rank_pattern", "alpha_pattern"] as const)
      if (Object.keys(c[k] as object).length) out(`  ${k} ${JSON.stringify(c[k])}`);
    if (c.layers_to_transform !== null) out(`  layers_to_transform ${JSON.stringify(c.layers_to_transform)}`);
    out(
      `  parameters: ${fmtInt(insp.parameters.lora)} in ${insp.modules.length} LoRA modules${insp.parameters.other ? ` + ${fmtInt(insp.parameters.other)} other` : ""}`,
    );
    out("");
    const rows = insp.modules.map((m) => [
      m.module,
      `${m.out}×${m.in}`,
      String(m.rank),
      fmtNum(m.scale),
      fmtInt(m.params),
      fmtNum(m.norm),
      fmtNum(m.singular_values[0] ?? 0),
      Number.isFinite(m.effective_rank) ? m.effective_rank.toFixed(2) : "NaN",
      String(m.rank_1pct),
    ]);
    for (const l of table(
      ["module", "shape", "r", "scale", "params", "‖ΔW‖_F", "σ₁", "eff.rank", "rank@1%"],
      rows,
    ))
      out(l);
    out(`  total ‖ΔW‖_F ${fmtNum(insp.total_norm)}`);
    out("");
    out("per layer: ‖ΔW‖_F (bars), mean effective rank / r");
    const layers = perLayer(insp.modules);
    for (const l of asciiBars(
      layers.map((x) => ({
        label: x.label,
        value: x.norm,
        note: `${fmtNum(x.norm)}  eff ${Number.isFinite(x.effectiveRank) ? x.effectiveRank.toFixed(2) : "NaN"} / r ${x.ranks.join(",")}`,
      })),
    ))
      out(l);
    if (args.plot) out(`wrote ${args.plot}`);
  },
});
