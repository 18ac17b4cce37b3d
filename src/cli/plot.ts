// A loss curve as a self-contained SVG (no dependencies): train loss per step, eval loss
// as markers, axes with ticks.
export interface Series {
  name: string;
  points: { x: number; y: number }[];
  color: string;
  markers?: boolean;
}

function niceTicks(min: number, max: number, n = 5): number[] {
  if (!(max > min)) return [min];
  const span = max - min;
  const step0 = span / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-12; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function lineChartSvg(
  series: Series[],
  opts: { title: string; xLabel: string; yLabel: string; width?: number; height?: number },
): string {
  const W = opts.width ?? 720;
  const H = opts.height ?? 420;
  const m = { l: 64, r: 20, t: 40, b: 50 };
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.y));
  const xs = pts.map((p) => p.x);
  const ys = pts.map((p) => p.y);
  let [x0, x1] = [Math.min(...xs, 0), Math.max(...xs, 1)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (!Number.isFinite(y0)) [y0, y1] = [0, 1];
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  if (x1 === x0) x1 = x0 + 1;
  const X = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const el: string[] = [];
  el.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  el.push(
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-family="sans-serif">${esc(opts.title)}</text>`,
  );
  for (const t of niceTicks(y0, y1)) {
    el.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${Y(t)}" y2="${Y(t)}" stroke="#e5e5e5"/>`);
    el.push(
      `<text x="${m.l - 6}" y="${Y(t) + 4}" text-anchor="end" font-size="11" font-family="sans-serif">${t}</text>`,
    );
  }
  for (const t of niceTicks(x0, x1)) {
    el.push(`<line x1="${X(t)}" x2="${X(t)}" y1="${H - m.b}" y2="${H - m.b + 4}" stroke="#333"/>`);
    el.push(
      `<text x="${X(t)}" y="${H - m.b + 18}" text-anchor="middle" font-size="11" font-family="sans-serif">${t}</text>`,
    );
  }
  el.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="#333"/>`);
  el.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="#333"/>`);
  el.push(
    `<text x="${W / 2}" y="${H - 12}" text-anchor="middle" font-size="12" font-family="sans-serif">${esc(opts.xLabel)}</text>`,
  );
  el.push(
    `<text x="16" y="${H / 2}" text-anchor="middle" font-size="12" font-family="sans-serif" transform="rotate(-90 16 ${H / 2})">${esc(opts.yLabel)}</text>`,
  );
  series.forEach((s, i) => {
    const good = s.points.filter((p) => Number.isFinite(p.y));
    if (s.markers)
      for (const p of good) el.push(`<circle cx="${X(p.x)}" cy="${Y(p.y)}" r="4" fill="${s.color}"/>`);
    else if (good.length)
      el.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${good.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(" ")}"/>`,
      );
    // The legend draws each series as the plot does: a dot for points, a stroke for a line.
    el.push(
      s.markers
        ? `<circle cx="${W - m.r - 144}" cy="${m.t + 9.5 + i * 18}" r="4" fill="${s.color}"/>`
        : `<rect x="${W - m.r - 150}" y="${m.t + 8 + i * 18}" width="12" height="3" fill="${s.color}"/>`,
    );
    el.push(
      `<text x="${W - m.r - 132}" y="${m.t + 13 + i * 18}" font-size="12" font-family="sans-serif">${esc(s.name)}</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">\n${el.join("\n")}\n</svg>\n`;
}

function esc(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}

/** A small terminal chart of values (one row of block characters per line, `rows` lines). */
export function asciiChart(values: number[], opts: { width?: number; rows?: number } = {}): string[] {
  const w = Math.min(opts.width ?? 60, values.length);
  const rows = opts.rows ?? 8;
  if (w === 0) return [];
  const buckets: number[] = [];
  for (let i = 0; i < w; i++) {
    const a = Math.floor((i * values.length) / w);
    const b = Math.max(a + 1, Math.floor(((i + 1) * values.length) / w));
    const sl = values.slice(a, b).filter(Number.isFinite);
    buckets.push(sl.reduce((x, y) => x + y, 0) / Math.max(1, sl.length));
  }
  const lo = Math.min(...buckets);
  const hi = Math.max(...buckets);
  const lines: string[] = [];
  for (let r = rows - 1; r >= 0; r--) {
    const thr = lo + ((hi - lo) * (r + 0.5)) / rows;
    const label = r === rows - 1 ? hi.toFixed(3) : r === 0 ? lo.toFixed(3) : "";
    lines.push(`${label.padStart(8)} │${buckets.map((v) => (v >= thr ? "█" : " ")).join("")}`);
  }
  lines.push(`${"".padStart(8)} └${"─".repeat(w)}`);
  return lines;
}

export interface BarSeries {
  name: string;
  color: string;
  /** One value per category (NaN or undefined: no bar). */
  values: (number | undefined)[];
}

/**
 * Grouped bars as a self-contained SVG: one group per category (e.g. a layer), one bar per
 * series (e.g. a module kind) in each group, a y axis from 0.
 */
export function barChartSvg(
  categories: string[],
  series: BarSeries[],
  opts: { title: string; xLabel: string; yLabel: string; width?: number; height?: number },
): string {
  const W = opts.width ?? Math.max(720, 80 + categories.length * Math.max(12, 4 * series.length + 6));
  const H = opts.height ?? 360;
  const m = { l: 64, r: 160, t: 40, b: 50 };
  const vals = series
    .flatMap((s) => s.values)
    .filter((v): v is number => v !== undefined && Number.isFinite(v));
  const y1 = Math.max(...vals, 0) > 0 ? Math.max(...vals) * 1.05 : 1;
  const plotW = W - m.l - m.r;
  const groupW = plotW / Math.max(1, categories.length);
  const barW = Math.max(1, (groupW * 0.8) / Math.max(1, series.length));
  const Y = (y: number) => H - m.b - (y / y1) * (H - m.t - m.b);
  const el: string[] = [];
  el.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  el.push(
    `<text x="${(m.l + W - m.r) / 2}" y="24" text-anchor="middle" font-size="16" font-family="sans-serif">${esc(opts.title)}</text>`,
  );
  for (const t of niceTicks(0, y1)) {
    el.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${Y(t)}" y2="${Y(t)}" stroke="#e5e5e5"/>`);
    el.push(
      `<text x="${m.l - 6}" y="${Y(t) + 4}" text-anchor="end" font-size="11" font-family="sans-serif">${t}</text>`,
    );
  }
  const labelEvery = Math.max(1, Math.ceil(categories.length / 32));
  categories.forEach((c, ci) => {
    const gx = m.l + ci * groupW + groupW * 0.1;
    series.forEach((s, si) => {
      const v = s.values[ci];
      if (v === undefined || !Number.isFinite(v)) return;
      const y = Y(v);
      el.push(
        `<rect x="${(gx + si * barW).toFixed(1)}" y="${y.toFixed(1)}" width="${barW.toFixed(1)}" height="${(H - m.b - y).toFixed(1)}" fill="${s.color}"><title>${esc(`${c} ${s.name}: ${v}`)}</title></rect>`,
      );
    });
    if (ci % labelEvery === 0)
      el.push(
        `<text x="${(m.l + (ci + 0.5) * groupW).toFixed(1)}" y="${H - m.b + 16}" text-anchor="middle" font-size="11" font-family="sans-serif">${esc(c)}</text>`,
      );
  });
  el.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="#333"/>`);
  el.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="#333"/>`);
  el.push(
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle" font-size="12" font-family="sans-serif">${esc(opts.xLabel)}</text>`,
  );
  el.push(
    `<text x="16" y="${H / 2}" text-anchor="middle" font-size="12" font-family="sans-serif" transform="rotate(-90 16 ${H / 2})">${esc(opts.yLabel)}</text>`,
  );
  series.forEach((s, i) => {
    el.push(`<rect x="${W - m.r + 16}" y="${m.t + 4 + i * 18}" width="12" height="12" fill="${s.color}"/>`);
    el.push(
      `<text x="${W - m.r + 34}" y="${m.t + 14 + i * 18}" font-size="12" font-family="sans-serif">${esc(s.name)}</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">\n${el.join("\n")}\n</svg>\n`;
}

/** SVG charts stacked vertically into one file. */
export function stackSvgs(svgs: string[]): string {
  let y = 0;
  let W = 0;
  const parts: string[] = [];
  for (const s of svgs) {
    const w = Number(/width="(\d+(?:\.\d+)?)"/.exec(s)?.[1] ?? 0);
    const h = Number(/height="(\d+(?:\.\d+)?)"/.exec(s)?.[1] ?? 0);
    parts.push(s.replace("<svg ", `<svg y="${y}" `).trimEnd());
    y += h;
    W = Math.max(W, w);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}">\n${parts.join("\n")}\n</svg>\n`;
}

/** Horizontal bars for a terminal: `label │████▌     value`. */
export function asciiBars(rows: { label: string; value: number; note?: string }[], width = 40): string[] {
  const finite = rows.map((r) => r.value).filter(Number.isFinite);
  const hi = Math.max(...finite, 0);
  const labelW = Math.max(0, ...rows.map((r) => r.label.length));
  const parts = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
  return rows.map((r) => {
    let bar = "";
    if (Number.isFinite(r.value) && hi > 0) {
      const eighths = Math.round((Math.max(0, r.value) / hi) * width * 8);
      bar = "█".repeat(Math.floor(eighths / 8)) + parts[eighths % 8];
    } else if (!Number.isFinite(r.value)) bar = "(non-finite)";
    return `${r.label.padStart(labelW)} │${bar.padEnd(width + 1)}${r.note ?? ""}`;
  });
}
