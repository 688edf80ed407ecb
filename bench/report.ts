/**
 * Turns the worker results into the suite's report: the comparison rows with
 * their theory ratios, the targets with ✓/✗/?, and the text (console,
 * markdown) renderings. report.json is `SuiteReport` as is.
 */
import {
  LORA, fmtBytes, fmtInt, fmtMs, fmtRatio, formatTable, median,
} from './common.ts';
import type { Expected } from './theory.ts';
import type { BackendRow, TrainResult, W3Result } from './protocol.ts';
import type { PretrainInfo } from './pretrain.ts';
import { loadLine, type MachineInfo } from './setup.ts';
import { failed, type Failed } from './workers.ts';

export { failed, type Failed } from './workers.ts';

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
  /** null: not measured, or the rounds disagree (see `undecided`). */
  pass: boolean | null;
  /** The rounds fall on both sides of the goal: too noisy to call. */
  undecided: boolean;
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
  /** What a step must hold (bench/theory.ts stepMemory); null with checkpointing (not modelled). */
  fullMustHold: number | null;
  loraMustHold: number | null;
  /** loraMustHold / fullMustHold. */
  theory: number | null;
  error: string | null;
}

/** Per-run medians of one mode across the rounds. */
export interface Spread {
  /** Median of the per-run medians. */
  median: number | null;
  min: number | null;
  max: number | null;
  runs: number[];
}

/** Step times across the alternating rounds. */
export interface TimingSummary {
  full: Spread;
  lora: Spread;
  cpuFull: Spread;
  cpuLora: Spread;
  /** lora median of medians / full median of medians. */
  ratio: number | null;
  cpuRatio: number | null;
  /** lora / full of each round (the two ran back to back). */
  roundRatios: number[];
  cpuRoundRatios: number[];
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
  machine: MachineInfo;
  options: {
    size: string; backend: string; steps: number; warmup: number; reps: number; seed: number; rounds: number; lrFull: number; lrLora: number;
  };
  backend: BackendRow;
  workload: string;
  data: string;
  /** The pre-trained base both modes start from. */
  base: PretrainInfo & { cached: boolean };
  lora: { r: number; alpha: number; targets: string[] };
  /** The first successful run of each mode (sizes, files; the same in every round). */
  full: TrainResult | Failed;
  loraRun: TrainResult | Failed;
  /** Every round: full then LoRA, each in a fresh process. */
  rounds: { full: TrainResult | Failed; lora: TrainResult | Failed }[];
  timing: TimingSummary;
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

function spread(xs: readonly (number | null)[]): Spread {
  const runs = xs.filter((x): x is number => x !== null && Number.isFinite(x));
  if (runs.length === 0) return { median: null, min: null, max: null, runs };
  return { median: median(runs), min: Math.min(...runs), max: Math.max(...runs), runs };
}

/** Median of per-run medians for each mode, their spread, and the round-by-round ratios. */
export function timingSummary(rounds: readonly { full: TrainResult | Failed; lora: TrainResult | Failed }[]): TimingSummary {
  const ok = (r: TrainResult | Failed): TrainResult | null => (failed(r) ? null : r);
  const pairs = rounds.map((r) => ({ f: ok(r.full), l: ok(r.lora) }));
  const full = spread(pairs.map((p) => p.f?.medianMs ?? null));
  const lora = spread(pairs.map((p) => p.l?.medianMs ?? null));
  const cpuFull = spread(pairs.map((p) => p.f?.medianCpuMs ?? null));
  const cpuLora = spread(pairs.map((p) => p.l?.medianCpuMs ?? null));
  const per = (get: (r: TrainResult) => number | null): number[] => pairs
    .map((p) => (p.f && p.l ? ratio(get(p.l), get(p.f)) : null))
    .filter((x): x is number => x !== null);
  return {
    full, lora, cpuFull, cpuLora, ratio: ratio(lora.median, full.median), cpuRatio: ratio(cpuLora.median, cpuFull.median),
    roundRatios: per((r) => r.medianMs), cpuRoundRatios: per((r) => r.medianCpuMs),
  };
}

/** The full-vs-LoRA rows, measured (median over the rounds) and expected. */
export function comparisonRows(fulls: readonly (TrainResult | Failed)[], loras: readonly (TrainResult | Failed)[], e: Expected): ComparisonRow[] {
  const fs = fulls.filter((r): r is TrainResult => !failed(r));
  const ls = loras.filter((r): r is TrainResult => !failed(r));
  const med = (rs: TrainResult[], get: (r: TrainResult) => number | null): number | null => spread(rs.map(get)).median;
  const row = (
    metric: string, unit: Unit, get: (r: TrainResult) => number | null, theory: number | null, theoryNote: string,
  ): ComparisonRow => {
    const a = fs.length ? med(fs, get) : null;
    const b = ls.length ? med(ls, get) : null;
    return { metric, unit, full: a, lora: b, ratio: unit === 'loss' ? null : ratio(b, a), theory, theoryNote };
  };
  const pT = e.paramsTotal;
  const pL = e.paramsLora;
  const state = (r: TrainResult): number => r.weightBytes + r.gradientBytes + r.optimizerStateBytes;
  const steps = fs[0]?.lossSteps ?? ls[0]?.lossSteps ?? '?';
  const n = Math.max(fs.length, ls.length);
  return [
    row('step time, median', 'ms', (r) => r.medianMs, e.stepRatio, `median of ${n} per-run medians; theory: matmul FLOPs of a step (fwd + dX + dW where trainable)`),
    row('step CPU time, median', 'ms', (r) => r.medianCpuMs, e.stepRatio, 'same; process CPU time, steadier on a busy machine'),
    row('tokens/s', 'tokens/s', (r) => r.tokensPerSecond, 1 / e.stepRatio, 'inverse of the FLOP ratio'),
    row('trainable params', 'count', (r) => r.trainableParams, pL / pT, 'adapter params / all base params'),
    row('total params', 'count', (r) => r.totalParams, (pT + pL) / pT, 'base + adapter'),
    row('gradient bytes', 'bytes', (r) => r.gradientBytes, pL / pT, 'a float32 gradient per trainable param'),
    row('AdamW state bytes', 'bytes', (r) => r.optimizerStateBytes, pL / pT, 'two float32 moments per trainable param'),
    row('weights + grads + AdamW', 'bytes', state, e.memoryRatio, 'state only: weights + grads + 2 moments vs weights + adapter state'),
    row('live tensor bytes after forward', 'bytes', (r) => r.liveBytesAfterForward, null, ''),
    {
      metric: 'a step must hold (accounting)', unit: 'bytes', full: e.stepMemoryFull.peak, lora: e.stepMemoryLora.peak, ratio: e.peakRatio,
      theory: null, theoryNote: 'weights + AdamW moments + saved activations + backward\'s first gradients (bench/theory.ts stepMemory)',
    },
    row('peak tensor bytes', 'bytes', (r) => r.peakTensorBytes, e.peakRatio, 'theory: the accounting row above'),
    row('peak RSS', 'bytes', (r) => r.peakRssBytes, null, ''),
    row('checkpoint / adapter file', 'bytes', (r) => r.artifact.bytes, pL / pT, '4 bytes per saved param'),
    row('held-out val loss before', 'loss', (r) => r.valLossBefore, null, 'the pre-trained base, fixed windows'),
    row(`held-out val loss after ${steps} steps`, 'loss', (r) => r.valLossAfter, null, 'same windows'),
    row('kernel launches / step', 'per step', (r) => r.launchesPerStep, null, ''),
    row('readbacks / step', 'per step', (r) => r.readbacksPerStep, null, ''),
  ];
}

const mark = (t: Pick<TargetRow, 'pass' | 'undecided'>): string => (t.undecided ? '?' : t.pass === null ? '–' : t.pass ? '✓' : '✗');

/** Tolerance over a theory ratio: the fixed costs (elementwise ops, norms, optimizer) a ratio of matmuls leaves out. */
export const THEORY_SLACK = 1.05;

/** Judges per-round ratios against a goal: pass or fail only when every round agrees. */
function judge(rounds: readonly number[], goal: number): Pick<TargetRow, 'pass' | 'undecided'> {
  if (rounds.length === 0) return { pass: null, undecided: false };
  const under = rounds.filter((x) => x <= goal).length;
  if (under === rounds.length) return { pass: true, undecided: false };
  if (under === 0) return { pass: false, undecided: false };
  return { pass: null, undecided: true };
}

const range = (xs: readonly number[]): string => (xs.length > 1 ? ` (rounds ${fmtRatio(Math.min(...xs))}-${fmtRatio(Math.max(...xs))})` : '');

/** The targets, judged on what this run measured. */
export function targetRows(
  timing: TimingSummary, e: Expected, full: TrainResult | Failed, lora: TrainResult | Failed, w3: W3Result | Failed, accounting: AccountingRow[],
): TargetRow[] {
  const f = failed(full) ? null : full;
  const l = failed(lora) ? null : lora;
  const out: TargetRow[] = [];

  const stepGoal = e.stepRatio * THEORY_SLACK;
  out.push({
    name: 'LoRA/full step time', goal: `<= ${fmtRatio(stepGoal)} (FLOP theory ${fmtRatio(e.stepRatio)} x ${THEORY_SLACK})`,
    measured: timing.ratio === null ? 'n/a' : `${fmtRatio(timing.ratio)}${range(timing.roundRatios)}`,
    ...judge(timing.roundRatios, stepGoal),
    note: `median of per-run medians; CPU time ${timing.cpuRatio === null ? 'n/a' : fmtRatio(timing.cpuRatio)}${range(timing.cpuRoundRatios)}`,
  });

  const peakGoal = e.peakRatio * THEORY_SLACK;
  const peak = f && l ? ratio(l.peakTensorBytes, f.peakTensorBytes) : null;
  out.push({
    name: 'LoRA/full peak tensor bytes', goal: `<= ${fmtRatio(peakGoal)} (accounting ${fmtRatio(e.peakRatio)} x ${THEORY_SLACK})`,
    measured: peak === null ? 'n/a' : fmtRatio(peak), ...judge(peak === null ? [] : [peak], peakGoal),
    note: f && l ? `measured/accounting: full ${fmtRatio(f.peakTensorBytes / e.stepMemoryFull.peak)}, LoRA ${fmtRatio(l.peakTensorBytes / e.stepMemoryLora.peak)}` : '',
  });
  const large = accounting.find((a) => a.size === 'large' && !a.checkpointing);
  if (large && large.theory !== null && f?.size !== 'large') {
    const goal = large.theory * THEORY_SLACK;
    out.push({
      name: 'same, large (meta accounting)', goal: `<= ${fmtRatio(goal)} (accounting ${fmtRatio(large.theory)} x ${THEORY_SLACK})`,
      measured: large.ratio === null ? 'n/a' : fmtRatio(large.ratio), ...judge(large.ratio === null ? [] : [large.ratio], goal),
      note: 'the same tensors allocated on the meta backend, nothing computed',
    });
  }

  if (l) {
    const limit = 4 * l.trainableParams + 4096;
    out.push({
      name: 'adapter file', goal: `<= 4 B x ${fmtInt(l.trainableParams)} trainable + 4 KiB = ${fmtInt(limit)} B`,
      measured: `${fmtInt(l.artifact.bytes)} B`, pass: l.artifact.bytes > 0 ? l.artifact.bytes <= limit : null, undecided: false,
      note: l.artifact.files.map((x) => `${x.name} ${fmtInt(x.bytes)} B`).join(', '),
    });
  } else {
    out.push({ name: 'adapter file', goal: '<= 4 B x trainable + 4 KiB', measured: 'n/a', pass: null, undecided: false, note: 'no LoRA run' });
  }

  if (f) {
    const ideal = 4 * f.totalParams;
    const r = f.artifact.bytes / ideal;
    out.push({
      name: 'full checkpoint', goal: `about 4 B x ${fmtInt(f.totalParams)} params = ${fmtInt(ideal)} B`,
      measured: `${fmtInt(f.artifact.bytes)} B (x${r.toFixed(4)})`,
      pass: f.artifact.bytes > 0 ? Math.abs(f.artifact.bytes - ideal) <= 0.01 * ideal + 4096 : null, undecided: false,
      note: 'weights only (no optimizer state); within 1% + 4 KiB',
    });
  } else {
    out.push({ name: 'full checkpoint', goal: 'about 4 B x params', measured: 'n/a', pass: null, undecided: false, note: 'no full run' });
  }

  const w = failed(w3) ? null : w3;
  const base = w?.rows.find((r) => r.name === 'base');
  const merged = w?.rows.find((r) => r.name === 'lora merged');
  const wr = ratio(merged?.medianMs ?? null, base?.medianMs ?? null);
  out.push({
    name: 'W3 merged vs base latency', goal: '<= 1.05', measured: wr === null ? 'n/a' : fmtRatio(wr),
    pass: wr === null ? null : wr <= 1.05, undecided: false, note: w?.loraError ?? (failed(w3) ? w3.error : ''),
  });
  return out;
}

/** The line under the targets table. */
export const TARGET_LEGEND = '✓ within the goal in every round, ✗ outside it in every round, ? the rounds fall on both sides (too noisy to call: rerun on a quieter machine), ' +
  '– not measured. LoRA cannot beat the FLOP ratio of the same step (it skips dW of the frozen weights, not their forward or dX) ' +
  'nor hold less than the accounting (the tensors its backward must read); 5% covers the fixed costs those sums leave out.';

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
  return rows.map((t) => [mark(t), t.name, t.goal, t.measured, t.note]);
}

function w3Cells(w: W3Result): string[][] {
  const base = w.rows.find((r) => r.name === 'base');
  return w.rows.map((r) => [r.name, fmtMs(r.medianMs), fmtMs(r.minMs), fmtMs(r.maxMs), base ? fmtRatio(r.medianMs / base.medianMs) : '']);
}

function accountingCells(rows: readonly AccountingRow[]): string[][] {
  return rows.map((a) => [
    a.size, a.backend, fmtValue(a.fullPeakBytes, 'bytes'), fmtValue(a.fullMustHold, 'bytes'),
    fmtValue(a.loraPeakBytes, 'bytes'), fmtValue(a.loraMustHold, 'bytes'),
    a.ratio === null ? 'n/a' : fmtRatio(a.ratio), a.theory === null ? 'n/a' : fmtRatio(a.theory),
    a.error ?? (a.checkpointing ? 'gradient checkpointing (both modes); not in the accounting' : ''),
  ]);
}

function runLine(label: string, runs: readonly (TrainResult | Failed)[], s: Spread): string {
  const bad = runs.filter(failed);
  const ok = runs.filter((r): r is TrainResult => !failed(r));
  const r = ok[0];
  if (!r) return `${label}: FAILED: ${bad[0]?.error ?? 'no run'}`;
  const drift = Math.max(...ok.map((x) => Math.abs(x.liveTensorDrift)));
  return `${label}: ${ok.length} run(s) of ${r.warmup} warm-up + ${r.steps} timed steps at lr ${r.lr}; per-run medians ` +
    `${s.runs.map((x) => fmtMs(x)).join(', ')} ms -> median ${fmtMs(s.median ?? NaN)} (spread ${spreadPct(s)}); live tensors drift ${drift}` +
    (bad.length ? `; ${bad.length} failed: ${bad[0].error}` : '');
}

function spreadPct(s: Spread): string {
  return s.median && s.min !== null && s.max !== null ? `${((100 * (s.max - s.min)) / s.median).toFixed(0)}%` : 'n/a';
}

function baseLine(r: SuiteReport): string {
  const b = r.base;
  return `Base: pre-trained ${b.spec.steps} steps on ${b.spec.data} (train loss ${b.lossStart.toFixed(3)} -> ${b.lossEnd.toFixed(3)}, ` +
    `${b.seconds.toFixed(0)} s${b.cached ? `, cached as ${b.key}` : `, built this run as ${b.key}`})`;
}

const COMPARISON_HEADER = ['metric', 'full', `LoRA r=${LORA.r}`, 'LoRA/full', 'theory'];
const TARGET_HEADER = ['', 'target', 'goal', 'measured', 'note'];
const W3_HEADER = ['variant', 'median ms', 'min ms', 'max ms', 'vs base'];
const ACCOUNTING_HEADER = ['size', 'backend', 'full peak', 'full must hold', 'LoRA peak', 'LoRA must hold', 'LoRA/full', 'accounting', 'note'];

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
      `backend ${r.backend.backend}, mode ${r.backend.mode}, precision ${r.backend.precision}, ${r.machine.threads} thread(s)`,
    `  ${r.workload}`,
    `  ${loadLine(r.machine)}`,
    `  ${baseLine(r)}; ${r.data}`,
    `  ${runLine('full', r.rounds.map((x) => x.full), r.timing.full)}`,
    `  ${runLine('LoRA', r.rounds.map((x) => x.lora), r.timing.lora)}`,
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
  parts.push('Targets (benchmarks, not tests):', formatTable(TARGET_HEADER, targetCells(r.targets), [0, 1, 2, 4]), TARGET_LEGEND);
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
    `${r.createdAt} · ${m.cpus} × ${m.cpuModel} · Node ${m.node} (${m.platform}) · ${loadLine(m)} · suite took ${r.elapsedSeconds.toFixed(0)} s`,
    '',
    ...(busyWarning(r) ? [`> **Warning:** ${busyWarning(r)}`, ''] : []),
    `- Backend **${r.backend.backend}**, mode **${r.backend.mode}**, precision **${r.backend.precision}**, ${m.threads} compute thread(s)`,
    `- Model ${r.workload}`,
    `- ${baseLine(r)}`,
    `- Data: ${r.data}`,
    `- LoRA: r=${r.lora.r}, alpha=${r.lora.alpha} on ${r.lora.targets.join(', ')}, base frozen; AdamW weight decay 0.01, peak lr ${r.options.lrFull} full, ${r.options.lrLora} LoRA (10% warm-up, cosine to 10%)`,
    `- Method: ${r.options.rounds} rounds of full then LoRA, each run in a fresh process starting from the same pre-trained base; warm-up steps, ` +
      'then timed steps, each in `tidy` (upload batch, forward, backward, AdamW); the timed region ends by reading the loss (`item()`). ' +
      'Each run reports its median step; the table shows the median of those per-run medians. Peak tensor bytes is the engine\'s `memory().peakBytes` ' +
      'over the timed steps; peak RSS is the worker\'s `maxRSS`; the files are written to a temp dir and stat\'ed. Validation loss: the mean over ' +
      'fixed windows of the held-out genre, before the first and after the last step.',
    `- ${runLine('full', r.rounds.map((x) => x.full), r.timing.full)}`,
    `- ${runLine('LoRA', r.rounds.map((x) => x.lora), r.timing.lora)}`,
    '',
    '![full vs LoRA](chart.svg)',
    '',
    '## Training step: full vs LoRA',
    '',
    mdTable(COMPARISON_HEADER, comparisonCells(r.rows), [1, 2, 3, 4]),
    '',
    'The theory column is the best LoRA can do by the numbers: for time, the matmul FLOPs of a step ' +
      `(${(t.stepFlopsFull / 1e9).toFixed(2)} GFLOP full vs ${(t.stepFlopsLora / 1e9).toFixed(2)} GFLOP LoRA: forward, dX everywhere a gradient flows, ` +
      'dW only for trainable weights, plus the adapters\' own work; elementwise ops, norms and the optimizer are not in it); ' +
      `for the state rows, weights + gradients + two AdamW moments (${fmtBytes(t.stateBytesFull)} vs ${fmtBytes(t.stateBytesLora)}); ` +
      'for peak tensor bytes, what a step must hold at the start of backward: weights, AdamW moments, the activations backward reads ' +
      '(counted as an autograd that keeps only those) and the first gradients backward makes.',
    '',
    '## Targets',
    '',
    mdTable(TARGET_HEADER, targetCells(r.targets), []),
    '',
    TARGET_LEGEND,
    '',
    '## Peak tensor bytes by size',
    '',
    mdTable(ACCOUNTING_HEADER, accountingCells(r.accounting), [2, 3, 4, 5, 6, 7]),
    '',
    'The meta backend allocates (and counts) every tensor a real step would, without computing anything: ' +
      'it sizes a step of a model too slow to train here. "Must hold" is the accounting of bench/theory.ts (stepMemory); ' +
      'activations are a large part of it in both modes, which is why LoRA\'s peak saves far less than its state does.',
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
    '', 'Both modes fine-tune the same pre-trained base; how close LoRA gets to full fine-tuning at several ranks is `npm run bench -- quality`.', '');
  return lines.join('\n');
}
