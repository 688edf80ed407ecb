/**
 * chart.svg, written by hand: one panel per quantity (step time, peak memory,
 * trainable params, checkpoint bytes), grouped bars full vs LoRA, each panel
 * on its own linear scale from zero, every bar labelled with its value.
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
      note: ratioNote(c.peakTensor.full, c.peakTensor.lora, c.memoryTheory).replace('LoRA/full', 'tensors LoRA/full'),
    },
    { id: 'trainable-params', title: 'Trainable params', format: fmtInt, groups: [c.trainable], note: ratioNote(c.trainable.full, c.trainable.lora, c.paramsTheory) },
    { id: 'checkpoint-bytes', title: 'Checkpoint bytes', format: fmtBytes, groups: [c.checkpoint], note: ratioNote(c.checkpoint.full, c.checkpoint.lora, c.checkpointTheory) },
  ];
}
