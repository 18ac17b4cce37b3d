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
    el.push(`<rect x="${W - m.r - 150}" y="${m.t + 8 + i * 18}" width="12" height="3" fill="${s.color}"/>`);
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
