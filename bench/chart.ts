/**
 * The bench charts as SVG, written by hand. The lora suite's chart.svg: one
 * panel per quantity (step time, peak memory, trainable params, checkpoint
 * bytes), grouped bars full vs LoRA, each panel on its own linear scale from
 * zero, every bar labelled with its value. The quality suite's: x-y panels
 * (validation loss against time, against memory), one line or point per run.
 */
import { fmtBytes, fmtInt, fmtMs, fmtRatio } from './common.ts';

export interface BarGroup {
  label: string;
  full: number | null;
  lora: number | null;
}

export interface ChartPanel {
  /** Used as the SVG group id: `panel-<id>`. */
  id: string;
  title: string;
  format: (v: number) => string;
  groups: BarGroup[];
  /** A line under the title (e.g. the ratio and its theory). */
  note?: string;
}

export const PANEL_IDS = ['step-time', 'peak-memory', 'trainable-params', 'checkpoint-bytes'] as const;

const COLORS = { full: '#4c72b0', lora: '#dd8452' } as const;
const W = 250;
const H = 330;
const TOP = 100;
const BOTTOM = 48;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function panelSvg(p: ChartPanel, x0: number): string {
  const values = p.groups.flatMap((g) => [g.full, g.lora]).filter((v): v is number => v !== null && Number.isFinite(v));
  const max = Math.max(...values, 0) || 1;
  const plotH = H - TOP - BOTTOM;
  const baseY = H - BOTTOM;
  const groupW = (W - 30) / Math.max(p.groups.length, 1);
  const barW = Math.min(48, groupW / 2 - 8);
  const out: string[] = [`<g id="panel-${esc(p.id)}" class="panel" transform="translate(${x0},0)">`];
  out.push(`<rect x="4" y="40" width="${W - 8}" height="${H - 44}" fill="#fafafa" stroke="#ddd"/>`);
  out.push(`<text x="${W / 2}" y="60" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  if (p.note) out.push(`<text x="${W / 2}" y="78" text-anchor="middle" font-size="11" fill="#555">${esc(p.note)}</text>`);
  out.push(`<line x1="15" y1="${baseY}" x2="${W - 15}" y2="${baseY}" stroke="#888"/>`);
  p.groups.forEach((g, gi) => {
    const cx = 15 + groupW * (gi + 0.5);
    (['full', 'lora'] as const).forEach((k, bi) => {
      const v = g[k];
      const x = cx + (bi === 0 ? -barW - 2 : 2);
      if (v === null || !Number.isFinite(v)) {
        out.push(`<text x="${x + barW / 2}" y="${baseY - 6}" text-anchor="middle" font-size="11" fill="#999">n/a</text>`);
        return;
      }
      const h = Math.max((v / max) * plotH, v > 0 ? 1 : 0);
      out.push(`<rect class="bar ${k}" x="${x.toFixed(1)}" y="${(baseY - h).toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[k]}"><title>${esc(`${g.label}, ${k}: ${p.format(v)}`)}</title></rect>`);
      out.push(`<text x="${(x + barW / 2).toFixed(1)}" y="${(baseY - h - 4).toFixed(1)}" text-anchor="middle" font-size="10">${esc(p.format(v))}</text>`);
    });
    out.push(`<text x="${cx.toFixed(1)}" y="${baseY + 16}" text-anchor="middle" font-size="11">${esc(g.label)}</text>`);
  });
  out.push('</g>');
  return out.join('\n');
}

/** The whole chart: a title, a legend and the panels side by side. */
export function chartSvg(title: string, subtitle: string, panels: readonly ChartPanel[]): string {
  const width = W * panels.length + 20;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H + 10}" viewBox="0 0 ${width} ${H + 10}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="18" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="10" y="33" font-size="11" fill="#555">${esc(subtitle)}</text>`,
    `<rect x="${width - 150}" y="8" width="12" height="12" fill="${COLORS.full}"/><text x="${width - 134}" y="18" font-size="12">full</text>`,
    `<rect x="${width - 90}" y="8" width="12" height="12" fill="${COLORS.lora}"/><text x="${width - 74}" y="18" font-size="12">LoRA</text>`,
    ...panels.map((p, i) => panelSvg(p, 10 + i * W)),
    '</svg>',
    '',
  ];
  return parts.join('\n');
}

function ratioNote(full: number | null, lora: number | null, theory: number | null): string {
  if (full === null || lora === null || !full) return '';
  return `LoRA/full ${fmtRatio(lora / full)}${theory === null ? '' : ` (theory ${fmtRatio(theory)})`}`;
}

export interface ChartInput {
  stepMs: BarGroup;
  stepTheory: number | null;
  peakTensor: BarGroup;
  peakRss: BarGroup;
  memoryTheory: number | null;
  trainable: BarGroup;
  paramsTheory: number | null;
  checkpoint: BarGroup;
  checkpointTheory: number | null;
}

/** The four standard panels. */
export function standardPanels(c: ChartInput): ChartPanel[] {
  return [
    { id: 'step-time', title: 'Step time (median ms)', format: fmtMs, groups: [c.stepMs], note: ratioNote(c.stepMs.full, c.stepMs.lora, c.stepTheory) },
    {
      id: 'peak-memory', title: 'Peak memory', format: fmtBytes, groups: [c.peakTensor, c.peakRss],
      note: ratioNote(c.peakTensor.full, c.peakTensor.lora, c.memoryTheory).replace('LoRA/full', 'tensors LoRA/full').replace('theory', 'accounting'),
    },
    { id: 'trainable-params', title: 'Trainable params', format: fmtInt, groups: [c.trainable], note: ratioNote(c.trainable.full, c.trainable.lora, c.paramsTheory) },
    { id: 'checkpoint-bytes', title: 'Checkpoint bytes', format: fmtBytes, groups: [c.checkpoint], note: ratioNote(c.checkpoint.full, c.checkpoint.lora, c.checkpointTheory) },
  ];
}

/** One run on an x-y chart: a line through its points (or a single marker). */
export interface XYSeries {
  label: string;
  color: string;
  points: { x: number; y: number }[];
  /** Dashed line (e.g. all-linear LoRA against q,v). */
  dashed?: boolean;
}

export interface XYPanel {
  /** SVG group id: `panel-<id>`. */
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  formatX: (v: number) => string;
  formatY: (v: number) => string;
  series: XYSeries[];
  /** Draw markers only (a point per run), no lines. */
  markersOnly?: boolean;
  /** Start the x axis at 0 (so ratios read off the chart). */
  xFromZero?: boolean;
}

const XY = { w: 460, h: 360, left: 58, right: 16, top: 50, bottom: 46 } as const;

/** Round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function xyPanelSvg(p: XYPanel, x0: number, y0: number): string {
  const pts = p.series.flatMap((s) => s.points).filter((q) => Number.isFinite(q.x) && Number.isFinite(q.y));
  const span = (vs: number[], padFrac: number): [number, number] => {
    let lo = Math.min(...vs);
    let hi = Math.max(...vs);
    if (!Number.isFinite(lo)) return [0, 1];
    if (hi === lo) { lo -= 0.5; hi += 0.5; }
    const pad = (hi - lo) * padFrac;
    return [lo - pad, hi + pad];
  };
  const [xlo0, xhi] = span(pts.map((q) => q.x), 0.04);
  const xlo = p.xFromZero ? Math.min(0, xlo0) : xlo0;
  const [ylo, yhi] = span(pts.map((q) => q.y), 0.06);
  const pw = XY.w - XY.left - XY.right;
  const ph = XY.h - XY.top - XY.bottom;
  const sx = (v: number): number => XY.left + ((v - xlo) / (xhi - xlo)) * pw;
  const sy = (v: number): number => XY.top + ph - ((v - ylo) / (yhi - ylo)) * ph;
  const out: string[] = [`<g id="panel-${esc(p.id)}" class="panel" transform="translate(${x0},${y0})">`];
  out.push(`<rect x="0" y="0" width="${XY.w}" height="${XY.h}" fill="#fafafa" stroke="#ddd"/>`);
  out.push(`<text x="${XY.w / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(p.title)}</text>`);
  out.push(`<rect x="${XY.left}" y="${XY.top}" width="${pw}" height="${ph}" fill="#fff" stroke="#888"/>`);
  for (const t of niceTicks(xlo, xhi)) {
    const x = sx(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${XY.top}" x2="${x}" y2="${XY.top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${x}" y="${XY.top + ph + 14}" text-anchor="middle" font-size="10">${esc(p.formatX(t))}</text>`);
  }
  for (const t of niceTicks(ylo, yhi)) {
    const y = sy(t).toFixed(1);
    out.push(`<line x1="${XY.left}" y1="${y}" x2="${XY.left + pw}" y2="${y}" stroke="#eee"/>`);
    out.push(`<text x="${XY.left - 4}" y="${(sy(t) + 3).toFixed(1)}" text-anchor="end" font-size="10">${esc(p.formatY(t))}</text>`);
  }
  out.push(`<text x="${XY.left + pw / 2}" y="${XY.h - 10}" text-anchor="middle" font-size="11">${esc(p.xLabel)}</text>`);
  out.push(`<text transform="translate(14,${XY.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="11">${esc(p.yLabel)}</text>`);
  for (const s of p.series) {
    const ok = s.points.filter((q) => Number.isFinite(q.x) && Number.isFinite(q.y));
    if (ok.length === 0) continue;
    const cls = `series${s.dashed ? ' dashed' : ''}`;
    out.push(`<g class="${cls}"><title>${esc(s.label)}</title>`);
    if (!p.markersOnly && ok.length > 1) {
      const d = ok.map((q, i) => `${i ? 'L' : 'M'}${sx(q.x).toFixed(1)},${sy(q.y).toFixed(1)}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5,3"' : ''}/>`);
    }
    const last = ok[ok.length - 1];
    const marks = p.markersOnly ? ok : [last];
    for (const q of marks) {
      out.push(`<circle class="point" cx="${sx(q.x).toFixed(1)}" cy="${sy(q.y).toFixed(1)}" r="3.5" fill="${s.dashed ? '#fff' : s.color}" stroke="${s.color}" stroke-width="1.5"><title>${esc(`${s.label}: ${p.formatX(q.x)}, ${p.formatY(q.y)}`)}</title></circle>`);
    }
    out.push('</g>');
  }
  out.push('</g>');
  return out.join('\n');
}

/** A tick label: up to 3 significant digits, no trailing zeros (0.05, 12.5, 300). */
export function fmtTick(v: number): string {
  return String(Number(v.toPrecision(3)));
}

/** x-y panels side by side, with one shared legend of the series (by label) underneath. */
export function xyChartSvg(title: string, subtitle: string | readonly string[], panels: readonly XYPanel[]): string {
  const sub = typeof subtitle === 'string' ? [subtitle] : subtitle;
  const top = 28 + 14 * sub.length;
  const legend = [...new Map(panels.flatMap((p) => p.series).map((s) => [s.label, s])).values()];
  const perRow = 4;
  const legendRows = Math.ceil(legend.length / perRow);
  const width = XY.w * panels.length + 10 * (panels.length + 1);
  const height = top + XY.h + 14 + legendRows * 18 + 10;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="18" font-size="15" font-weight="bold">${esc(title)}</text>`,
    ...sub.map((line, i) => `<text x="10" y="${34 + 14 * i}" font-size="11" fill="#555">${esc(line)}</text>`),
    ...panels.map((p, i) => xyPanelSvg(p, 10 + i * (XY.w + 10), top)),
  ];
  const colW = (width - 20) / perRow;
  legend.forEach((s, i) => {
    const x = 10 + (i % perRow) * colW;
    const y = top + XY.h + 14 + Math.floor(i / perRow) * 18;
    parts.push(`<g class="legend-item"><line x1="${x}" y1="${y + 6}" x2="${x + 22}" y2="${y + 6}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5,3"' : ''}/>` +
      `<circle cx="${x + 11}" cy="${y + 6}" r="3.5" fill="${s.dashed ? '#fff' : s.color}" stroke="${s.color}" stroke-width="1.5"/>` +
      `<text x="${x + 28}" y="${y + 10}" font-size="11">${esc(s.label)}</text></g>`);
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}
