/**
 * Turns the worker results into the suite's report: the comparison rows with
 * their theory ratios, the targets with ✓/✗, and the text (console, markdown)
 * renderings. report.json is `SuiteReport` as is.
 */
import {
  LORA, fmtBytes, fmtInt, fmtMs, fmtRatio, formatTable,
} from './common.ts';
import type { Expected } from './theory.ts';
import type { BackendRow, TrainResult, W3Result } from './protocol.ts';

export interface Failed {
  error: string;
}

export function failed(x: unknown): x is Failed {
  return typeof x === 'object' && x !== null && 'error' in x;
}

export type Unit = 'ms' | 'bytes' | 'count' | 'tokens/s' | 'loss' | 'per step';

export interface ComparisonRow {
  metric: string;
  unit: Unit;
  full: number | null;
  lora: number | null;
  /** lora / full */
  ratio: number | null;
  /** The ratio LoRA can give at best, from the config (see bench/theory.ts). */
  theory: number | null;
  /** What the theory counts. */
  theoryNote: string;
}

export interface TargetRow {
  name: string;
  goal: string;
  measured: string;
  pass: boolean | null;
  note: string;
}

/** Peak tensor bytes of one size, from the engine's accounting (meta: no compute). */
export interface AccountingRow {
  size: string;
  backend: string;
  /** Both modes ran with TransformerLM.gradientCheckpointingEnable(). */
  checkpointing: boolean;
  fullPeakBytes: number | null;
  loraPeakBytes: number | null;
  ratio: number | null;
  fullStateBytes: number | null;
  loraStateBytes: number | null;
  theory: number;
  error: string | null;
}

export interface TheorySummary {
  size: string;
  stepFlopsFull: number;
  stepFlopsLora: number;
  stepRatio: number;
  paramsTotal: number;
  paramsLora: number;
  stateBytesFull: number;
  stateBytesLora: number;
  memoryRatio: number;
}

export interface SuiteReport {
  suite: 'lora';
  createdAt: string;
  elapsedSeconds: number;
  machine: { cpus: number; cpuModel: string; node: string; platform: string; loadavgStart: number[]; loadavg: number[] };
  options: { size: string; backend: string; steps: number; warmup: number; reps: number; seed: number };
  backend: BackendRow;
  workload: string;
  data: string;
  lora: { r: number; alpha: number; targets: string[] };
  full: TrainResult | Failed;
  loraRun: TrainResult | Failed;
  w3: W3Result | Failed;
  accounting: AccountingRow[];
  theory: TheorySummary[];
  rows: ComparisonRow[];
  targets: TargetRow[];
}

export function summarizeTheory(size: string, e: Expected): TheorySummary {
  return {
    size, stepFlopsFull: e.flopsFull.total, stepFlopsLora: e.flopsLora.total, stepRatio: e.stepRatio,
    paramsTotal: e.paramsTotal, paramsLora: e.paramsLora, stateBytesFull: e.stateFull.total,
    stateBytesLora: e.stateLora.total, memoryRatio: e.memoryRatio,
  };
}

const ratio = (a: number | null, b: number | null): number | null =>
  a === null || b === null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? null : a / b;

/** The full-vs-LoRA rows, measured and expected. */
export function comparisonRows(full: TrainResult | Failed, lora: TrainResult | Failed, e: Expected): ComparisonRow[] {
  const f = failed(full) ? null : full;
  const l = failed(lora) ? null : lora;
  const row = (
    metric: string, unit: Unit, get: (r: TrainResult) => number | null, theory: number | null, theoryNote: string,
  ): ComparisonRow => {
    const a = f ? get(f) : null;
    const b = l ? get(l) : null;
    return { metric, unit, full: a, lora: b, ratio: ratio(b, a), theory, theoryNote };
  };
  const pT = e.paramsTotal;
  const pL = e.paramsLora;
  const state = (r: TrainResult): number => r.weightBytes + r.gradientBytes + r.optimizerStateBytes;
  return [
    row('step time, median', 'ms', (r) => r.medianMs, e.stepRatio, 'matmul FLOPs of a step (fwd + dX + dW where trainable)'),
    row('step CPU time, median', 'ms', (r) => r.medianCpuMs, e.stepRatio, 'same; process CPU time, steadier on a busy machine'),
    row('tokens/s', 'tokens/s', (r) => r.tokensPerSecond, 1 / e.stepRatio, 'inverse of the FLOP ratio'),
    row('trainable params', 'count', (r) => r.trainableParams, pL / pT, 'adapter params / all base params'),
    row('total params', 'count', (r) => r.totalParams, (pT + pL) / pT, 'base + adapter'),
    row('gradient bytes', 'bytes', (r) => r.gradientBytes, pL / pT, 'a float32 gradient per trainable param'),
    row('AdamW state bytes', 'bytes', (r) => r.optimizerStateBytes, pL / pT, 'two float32 moments per trainable param'),
    row('weights + grads + AdamW', 'bytes', state, e.memoryRatio, 'weights + grads + 2 moments vs weights + adapter state'),
    row('live tensor bytes after forward', 'bytes', (r) => r.liveBytesAfterForward, null, ''),
    row('peak tensor bytes', 'bytes', (r) => r.peakTensorBytes, e.memoryRatio, 'state only; activations not counted'),
    row('peak RSS', 'bytes', (r) => r.peakRssBytes, null, ''),
    row('checkpoint / adapter file', 'bytes', (r) => r.artifact.bytes, pL / pT, '4 bytes per saved param'),
    row(`loss after ${f?.lossSteps ?? l?.lossSteps ?? '?'} steps`, 'loss', (r) => r.lossLast, null, ''),
    row('kernel launches / step', 'per step', (r) => r.launchesPerStep, null, ''),
    row('readbacks / step', 'per step', (r) => r.readbacksPerStep, null, ''),
  ];
}

const mark = (pass: boolean | null): string => (pass === null ? '–' : pass ? '✓' : '✗');

/** The five targets, judged on what this run measured. */
export function targetRows(
  size: string, full: TrainResult | Failed, lora: TrainResult | Failed, w3: W3Result | Failed, accounting: AccountingRow[],
): TargetRow[] {
  const f = failed(full) ? null : full;
  const l = failed(lora) ? null : lora;
  const out: TargetRow[] = [];

  const step = ratio(l?.medianMs ?? null, f?.medianMs ?? null);
  out.push({
    name: 'LoRA/full step time (W2)', goal: '<= 0.60', measured: step === null ? 'n/a' : fmtRatio(step),
    pass: step === null || size !== 'w2' ? null : step <= 0.6,
    note: size === 'w2' ? '' : `measured on --size ${size}; the target is for w2`,
  });

  const large = accounting.find((a) => a.size === 'large' && !a.checkpointing);
  const largeCkpt = accounting.find((a) => a.size === 'large' && a.checkpointing);
  const measuredLarge = size === 'large' && f && l && f.backend !== 'meta';
  const memRatio = measuredLarge ? ratio(l.peakTensorBytes, f.peakTensorBytes) : large?.ratio ?? null;
  out.push({
    name: 'LoRA/full peak tensor bytes (large)', goal: '<= 0.35', measured: memRatio === null ? 'n/a' : fmtRatio(memRatio),
    pass: memRatio === null ? null : memRatio <= 0.35,
    note: measuredLarge ? `measured on ${f.backend}` : 'engine accounting of a large step on the meta backend (same tensors, no compute)',
  });
  if (largeCkpt?.ratio != null) {
    out.push({
      name: 'same, with gradient checkpointing', goal: '<= 0.35', measured: fmtRatio(largeCkpt.ratio),
      pass: largeCkpt.ratio <= 0.35,
      note: 'both modes recompute block activations in backward (model.gradientCheckpointingEnable()); meta accounting',
    });
  }

  if (l) {
    const limit = 4 * l.trainableParams + 4096;
    out.push({
      name: 'adapter file', goal: `<= 4 B x ${fmtInt(l.trainableParams)} trainable + 4 KiB = ${fmtInt(limit)} B`,
      measured: `${fmtInt(l.artifact.bytes)} B`, pass: l.artifact.bytes > 0 ? l.artifact.bytes <= limit : null,
      note: l.artifact.files.map((x) => `${x.name} ${fmtInt(x.bytes)} B`).join(', '),
    });
  } else {
    out.push({ name: 'adapter file', goal: '<= 4 B x trainable + 4 KiB', measured: 'n/a', pass: null, note: 'no LoRA run' });
  }

  if (f) {
    const ideal = 4 * f.totalParams;
    const r = f.artifact.bytes / ideal;
    out.push({
      name: 'full checkpoint', goal: `about 4 B x ${fmtInt(f.totalParams)} params = ${fmtInt(ideal)} B`,
      measured: `${fmtInt(f.artifact.bytes)} B (x${r.toFixed(4)})`,
      pass: f.artifact.bytes > 0 ? Math.abs(f.artifact.bytes - ideal) <= 0.01 * ideal + 4096 : null,
      note: 'weights only (no optimizer state); within 1% + 4 KiB',
    });
  } else {
    out.push({ name: 'full checkpoint', goal: 'about 4 B x params', measured: 'n/a', pass: null, note: 'no full run' });
  }

  const w = failed(w3) ? null : w3;
  const base = w?.rows.find((r) => r.name === 'base');
  const merged = w?.rows.find((r) => r.name === 'lora merged');
  const wr = ratio(merged?.medianMs ?? null, base?.medianMs ?? null);
  out.push({
    name: 'W3 merged vs base latency', goal: '<= 1.05', measured: wr === null ? 'n/a' : fmtRatio(wr),
    pass: wr === null ? null : wr <= 1.05, note: w?.loraError ?? (failed(w3) ? w3.error : ''),
  });
  return out;
}

function fmtValue(v: number | null, unit: Unit): string {
  if (v === null) return 'n/a';
  switch (unit) {
    case 'ms': return fmtMs(v);
    case 'bytes': return fmtBytes(v);
    case 'count': return fmtInt(v);
    case 'tokens/s': return fmtInt(v);
    case 'loss': return v.toFixed(4);
    case 'per step': return Number.isInteger(v) ? fmtInt(v) : v.toFixed(1);
  }
}

function comparisonCells(rows: readonly ComparisonRow[]): string[][] {
  return rows.map((r) => [
    r.metric + (r.unit === 'ms' ? ' (ms)' : ''), fmtValue(r.full, r.unit), fmtValue(r.lora, r.unit),
    r.ratio === null ? 'n/a' : fmtRatio(r.ratio), r.theory === null ? '' : fmtRatio(r.theory),
  ]);
}

function targetCells(rows: readonly TargetRow[]): string[][] {
  return rows.map((t) => [mark(t.pass), t.name, t.goal, t.measured, t.note]);
}

function w3Cells(w: W3Result): string[][] {
  const base = w.rows.find((r) => r.name === 'base');
  return w.rows.map((r) => [r.name, fmtMs(r.medianMs), fmtMs(r.minMs), fmtMs(r.maxMs), base ? fmtRatio(r.medianMs / base.medianMs) : '']);
}

function accountingCells(rows: readonly AccountingRow[]): string[][] {
  return rows.map((a) => [
    a.size, a.backend, fmtValue(a.fullPeakBytes, 'bytes'), fmtValue(a.fullStateBytes, 'bytes'),
    fmtValue(a.loraPeakBytes, 'bytes'), fmtValue(a.loraStateBytes, 'bytes'),
    a.ratio === null ? 'n/a' : fmtRatio(a.ratio), fmtRatio(a.theory),
    a.error ?? (a.checkpointing ? 'gradient checkpointing (both modes)' : ''),
  ]);
}

function runLine(label: string, r: TrainResult | Failed): string {
  if (failed(r)) return `${label}: FAILED: ${r.error}`;
  return `${label}: ${r.warmup} warm-up + ${r.steps} timed steps, median ${fmtMs(r.medianMs ?? NaN)} ms ` +
    `(min ${fmtMs(r.minMs ?? NaN)}, max ${fmtMs(r.maxMs ?? NaN)}), live tensors drift ${r.liveTensorDrift}`;
}

const COMPARISON_HEADER = ['metric', 'full', `LoRA r=${LORA.r}`, 'LoRA/full', 'theory'];
const TARGET_HEADER = ['', 'target', 'goal', 'measured', 'note'];
const W3_HEADER = ['variant', 'median ms', 'min ms', 'max ms', 'vs base'];
const ACCOUNTING_HEADER = ['size', 'backend', 'full peak', 'full state', 'LoRA peak', 'LoRA state', 'LoRA/full', 'theory (state)', 'note'];

/** What the suite prints. */
/** A warning when other work shared the CPUs while the suite ran. */
export function busyWarning(r: SuiteReport): string | null {
  const load = Math.max(r.machine.loadavgStart[0] ?? 0, r.machine.loadavg[0] ?? 0);
  if (load <= r.machine.cpus) return null;
  return `machine busy: 1-minute load average reached ${load.toFixed(2)} on ${r.machine.cpus} CPUs while this ran, so wall times are noisy ` +
    '(the CPU-time row is steadier); rerun on an idle machine for numbers to quote.';
}

export function consoleText(r: SuiteReport): string {
  const busy = busyWarning(r);
  const parts = [
    ...(busy ? [`WARNING: ${busy}`, ''] : []),
    `W2 training step, full vs LoRA (r=${r.lora.r}, alpha=${r.lora.alpha}, ${r.lora.targets.join(' + ')}) — ` +
      `backend ${r.backend.backend}, mode ${r.backend.mode}, precision ${r.backend.precision}`,
    `  ${r.workload}`,
    `  ${runLine('full', r.full)}`,
    `  ${runLine('LoRA', r.loraRun)}`,
    '',
    formatTable(COMPARISON_HEADER, comparisonCells(r.rows)),
    '',
    'Peak tensor bytes from the engine accounting (meta = the same tensors allocated, nothing computed):',
    formatTable(ACCOUNTING_HEADER, accountingCells(r.accounting), [0, 1, 8]),
    '',
  ];
  if (failed(r.w3)) parts.push(`W3 inference latency: FAILED: ${r.w3.error}`, '');
  else {
    parts.push(`W3 inference latency, batch 1 x ${r.w3.tokens} tokens, noGrad, logits read back; median of ${r.w3.reps} (round-robin)` +
      (r.w3.loraError ? ` — LoRA variants missing: ${r.w3.loraError}` : ''));
    parts.push(formatTable(W3_HEADER, w3Cells(r.w3)), '');
  }
  parts.push('Targets (benchmarks, not tests):', formatTable(TARGET_HEADER, targetCells(r.targets), [0, 1, 2, 4]));
  return parts.join('\n');
}

function mdTable(header: readonly string[], rows: readonly (readonly string[])[], right: readonly number[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const align = header.map((_, i) => (right.includes(i) ? '---:' : '---'));
  return [header, align, ...rows].map((r) => `| ${r.map(esc).join(' | ')} |`).join('\n');
}

/** report.md */
export function markdown(r: SuiteReport): string {
  const m = r.machine;
  const t = r.theory[0];
  const lines: string[] = [
    `# LoRA vs full fine-tuning on this machine`,
    '',
    `${r.createdAt} · ${m.cpus} × ${m.cpuModel} · Node ${m.node} (${m.platform}) · load average ${m.loadavgStart[0].toFixed(2)} at the start, ` +
      `${m.loadavg.map((x) => x.toFixed(2)).join(' ')} at the end · suite took ${r.elapsedSeconds.toFixed(0)} s`,
    '',
    ...(busyWarning(r) ? [`> **Warning:** ${busyWarning(r)}`, ''] : []),
    `- Backend **${r.backend.backend}**, mode **${r.backend.mode}**, precision **${r.backend.precision}**`,
    `- Model ${r.workload}`,
    `- Data: ${r.data}`,
    `- LoRA: r=${r.lora.r}, alpha=${r.lora.alpha} on ${r.lora.targets.join(', ')}, base frozen; AdamW lr 3e-4, weight decay 0.01`,
    `- Method: each mode in a fresh process; warm-up steps, then timed steps, each in \`tidy\` (upload batch, forward, backward, AdamW); ` +
      'the timed region ends by reading the loss (`item()`); median reported. Peak tensor bytes is the engine\'s `memory().peakBytes` ' +
      'over the timed steps; peak RSS is the worker\'s `maxRSS`; the files are written to a temp dir and stat\'ed.',
    `- ${runLine('full', r.full)}`,
    `- ${runLine('LoRA', r.loraRun)}`,
    '',
    '![full vs LoRA](chart.svg)',
    '',
    '## Training step: full vs LoRA',
    '',
    mdTable(COMPARISON_HEADER, comparisonCells(r.rows), [1, 2, 3, 4]),
    '',
    'The theory column is the best LoRA can do by the numbers: for time, the matmul FLOPs of a step ' +
      `(${(t.stepFlopsFull / 1e9).toFixed(2)} GFLOP full vs ${(t.stepFlopsLora / 1e9).toFixed(2)} GFLOP LoRA: forward, dX everywhere a gradient flows, ` +
      'dW only for trainable weights, plus the adapters\' own work); for memory, weights + gradients + two AdamW moments ' +
      `(${fmtBytes(t.stateBytesFull)} vs ${fmtBytes(t.stateBytesLora)}). Elementwise ops, norms, softmax, the optimizer and activations ` +
      'are not in it; they are what keeps a measured ratio above its theory.',
    '',
    '## Targets',
    '',
    mdTable(TARGET_HEADER, targetCells(r.targets), []),
    '',
    '## Peak tensor bytes by size',
    '',
    mdTable(ACCOUNTING_HEADER, accountingCells(r.accounting), [2, 3, 4, 5, 6, 7]),
    '',
    'The meta backend allocates (and counts) every tensor a real step would, without computing anything: ' +
      'it sizes a step of a model too slow to train here. Activations are about the same in both modes, so they ' +
      'decide how far the peak ratio sits above the state-only theory.',
    '',
    '## W3: inference latency',
    '',
  ];
  if (failed(r.w3)) lines.push(`FAILED: ${r.w3.error}`);
  else {
    lines.push(`Batch 1 x ${r.w3.tokens} tokens, eval, \`noGrad\`, logits read back; ${r.w3.warmup} warm-up, median of ${r.w3.reps}, variants timed round-robin.`);
    if (r.w3.mergedMaxAbsDiff !== null) lines.push(`Max |logits merged − unmerged| = ${r.w3.mergedMaxAbsDiff.toExponential(2)}.`);
    if (r.w3.loraError) lines.push(`LoRA variants missing: ${r.w3.loraError}`);
    lines.push('', mdTable(W3_HEADER, w3Cells(r.w3), [1, 2, 3, 4]));
  }
  lines.push('', '## Theory by size', '',
    mdTable(['size', 'step GFLOP full', 'step GFLOP LoRA', 'ratio', 'params', 'adapter params', 'state full', 'state LoRA', 'ratio'],
      r.theory.map((x) => [x.size, (x.stepFlopsFull / 1e9).toFixed(2), (x.stepFlopsLora / 1e9).toFixed(2), fmtRatio(x.stepRatio),
        fmtInt(x.paramsTotal), fmtInt(x.paramsLora), fmtBytes(x.stateBytesFull), fmtBytes(x.stateBytesLora), fmtRatio(x.memoryRatio)]),
      [1, 2, 3, 4, 5, 6, 7, 8]),
    '', 'The base model is freshly initialized (not pretrained): the losses show the step works, not what LoRA learns.', '');
  return lines.join('\n');
}
