/**
 * `npm run bench -- quality`: what LoRA gives for what it costs. From one
 * pre-trained base (bench/pretrain.ts), fine-tunes on a held-out Brown genre
 * with full fine-tuning and with LoRA at several ranks on q,v and on every
 * linear, the same steps for all, a small learning-rate search for each (the
 * best is reported), and writes quality.md, quality.json and quality.svg
 * (validation loss against training time and against peak memory) under
 * bench/results/<timestamp>-quality/. Every run is a fresh worker process.
 *
 *   npm run bench -- quality            # w2 on cpu, under 10 minutes on an idle 2-core machine
 *   npm run bench -- quality --quick    # tiny model, a few steps, runs in this process: the harness test
 *   (options: --steps 60, --ranks 1,2,4,8,16,64, --targets qv,all, --lr-full 1e-4,2e-4,5e-4,
 *    --lr-lora 1e-3,3e-3, --eval-every 10, --eval-windows 64, --genre cr, --seed 0,
 *    --pretrain-steps 600, --pretrain-lr 2e-3, --cache bench/.cache, --out bench/results, --size, --backend)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  backendInfo, describeWorkload, fmtBytes, fmtInt, fmtMs, fmtRatio, formatTable, intOption, option, parseSize, workload,
  type SizeName,
} from './common.ts';
import { fmtTick, xyChartSvg, type XYSeries } from './chart.ts';
import { CACHE_DIR, PRETRAIN, type PretrainInfo } from './pretrain.ts';
import type { BackendRow, CurvePoint, TrainResult } from './protocol.ts';
import { loadLine, machineInfo, prepareFinetune, type MachineInfo } from './setup.ts';
import { blockLinearNames, expected } from './theory.ts';
import { attempt, failed, setWorkerPlacement } from './workers.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export type TargetSet = 'qv' | 'all';

export interface QualityOptions {
  size: SizeName;
  backend: string;
  steps: number;
  seed: number;
  genre: string;
  brownFiles?: number;
  ranks: number[];
  targetSets: TargetSet[];
  lrFull: number[];
  lrLora: number[];
  evalEvery: number;
  evalWindows: number;
  pretrainSteps: number;
  pretrainLr: number;
  cacheDir: string;
  out: string;
  quick: boolean;
}

function listOption<T>(args: readonly string[], name: string, fallback: T[], parse: (s: string) => T): T[] {
  const raw = option(args, name);
  if (raw === undefined) return fallback;
  const xs = raw.split(',').filter((s) => s.trim() !== '').map(parse);
  if (xs.length === 0) throw new Error(`bench quality: --${name} is empty`);
  return xs;
}

const positive = (name: string) => (s: string): number => {
  const n = Number(s);
  if (!(n > 0)) throw new Error(`bench quality: --${name} values must be positive numbers, got '${s}'`);
  return n;
};

export function parseQualityArgs(args: readonly string[]): QualityOptions {
  const quick = args.includes('--quick');
  const files = option(args, 'brown-files');
  const ranks = listOption(args, 'ranks', quick ? [2] : [1, 2, 4, 8, 16, 64], (s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`bench quality: --ranks values must be positive integers, got '${s}'`);
    return n;
  });
  const targetSets = listOption<TargetSet>(args, 'targets', ['qv', 'all'], (s) => {
    if (s !== 'qv' && s !== 'all') throw new Error(`bench quality: --targets values must be qv or all, got '${s}'`);
    return s;
  });
  return {
    size: parseSize(option(args, 'size') ?? (quick ? 'tiny' : 'w2')),
    backend: option(args, 'backend') ?? 'cpu',
    steps: intOption(args, 'steps', quick ? 3 : 60),
    seed: intOption(args, 'seed', 0, 0),
    genre: option(args, 'genre') ?? 'cr',
    brownFiles: files === undefined ? (quick ? 2 : undefined) : intOption(args, 'brown-files', 1),
    ranks,
    targetSets,
    lrFull: listOption(args, 'lr-full', quick ? [1e-3, 3e-3] : [1e-4, 2e-4, 5e-4], positive('lr-full')),
    lrLora: listOption(args, 'lr-lora', quick ? [3e-3, 1e-2] : [1e-3, 3e-3], positive('lr-lora')),
    evalEvery: intOption(args, 'eval-every', quick ? 1 : 10, 0),
    evalWindows: intOption(args, 'eval-windows', quick ? 8 : 64),
    pretrainSteps: intOption(args, 'pretrain-steps', quick ? 20 : PRETRAIN.steps),
    pretrainLr: Number(option(args, 'pretrain-lr') ?? PRETRAIN.lr),
    cacheDir: resolve(option(args, 'cache') ?? CACHE_DIR),
    out: resolve(option(args, 'out') ?? join(ROOT, 'bench', 'results')),
    quick,
  };
}

/** One fine-tuning setting: full, or LoRA at a rank on a target set. */
export interface RunConfig {
  /** `full`, `LoRA q,v r=8`, `LoRA all r=8`. */
  label: string;
  mode: 'full' | 'lora';
  r: number | null;
  targets: TargetSet | null;
}

/** One (config, learning rate) run. */
export interface QualityRun {
  config: string;
  lr: number;
  valLossBefore: number | null;
  valLossAfter: number | null;
  trainMs: number | null;
  medianStepMs: number | null;
  peakTensorBytes: number | null;
  peakRssBytes: number | null;
  trainableParams: number | null;
  artifactBytes: number | null;
  curve: CurvePoint[];
  error: string | null;
}

/** A config at its best learning rate, with what it costs and gives against full fine-tuning. */
export interface QualityRow extends RunConfig {
  best: QualityRun | null;
  lrsTried: number[];
  /** valLossAfter - full's valLossAfter (nats; negative: LoRA is better). */
  gapToFull: number | null;
  /** (before - after) / (before - full's after): how much of full fine-tuning's gain this run gets. */
  shareOfFullGain: number | null;
  timeRatio: number | null;
  /** Matmul FLOPs of a step over full's (bench/theory.ts). */
  timeTheory: number | null;
  peakRatio: number | null;
  /** What a step must hold over full's (bench/theory.ts stepMemory). */
  peakTheory: number | null;
  rssRatio: number | null;
  paramsRatio: number | null;
}

export interface QualityVerdict {
  /** LoRA within the gap at a lower time and peak than full, for at least one run. */
  holds: boolean | null;
  /** The share of full's gain that counts as "within a small gap". */
  minShare: number;
  /** One or two plain sentences. */
  text: string;
}

export interface QualityReport {
  suite: 'quality';
  createdAt: string;
  elapsedSeconds: number;
  quick: boolean;
  machine: MachineInfo;
  backend: BackendRow;
  workload: string;
  options: Omit<QualityOptions, 'cacheDir' | 'out'>;
  data: { pretrain: string; train: string; val: string; heldOut: string };
  base: PretrainInfo & { cached: boolean };
  runs: QualityRun[];
  rows: QualityRow[];
  verdict: QualityVerdict;
}

/** Full first, then LoRA by target set and rank. */
export function runConfigs(o: Pick<QualityOptions, 'ranks' | 'targetSets'>): RunConfig[] {
  const out: RunConfig[] = [{ label: 'full', mode: 'full', r: null, targets: null }];
  for (const t of o.targetSets) {
    for (const r of o.ranks) out.push({ label: `LoRA ${t === 'qv' ? 'q,v' : 'all'} r=${r}`, mode: 'lora', r, targets: t });
  }
  return out;
}

function runOf(c: RunConfig, lr: number, r: TrainResult | { error: string }): QualityRun {
  if (failed(r)) {
    return {
      config: c.label, lr, valLossBefore: null, valLossAfter: null, trainMs: null, medianStepMs: null, peakTensorBytes: null,
      peakRssBytes: null, trainableParams: null, artifactBytes: null, curve: [], error: r.error,
    };
  }
  return {
    config: c.label, lr, valLossBefore: r.valLossBefore, valLossAfter: r.valLossAfter, trainMs: r.trainMs, medianStepMs: r.medianMs,
    peakTensorBytes: r.peakTensorBytes, peakRssBytes: r.peakRssBytes, trainableParams: r.trainableParams,
    artifactBytes: r.artifact.bytes, curve: r.curve, error: null,
  };
}

const ratioOf = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? null : a / b;

/** Each config at its best learning rate (lowest final validation loss), compared with full's best. */
export function qualityRows(configs: readonly RunConfig[], runs: readonly QualityRun[], size: SizeName, vocabSize: number): QualityRow[] {
  const w = workload(size, vocabSize);
  const all = blockLinearNames(w.config);
  const bestOf = (label: string): QualityRun | null => {
    const ok = runs.filter((r) => r.config === label && r.valLossAfter !== null);
    return ok.length === 0 ? null : ok.reduce((a, b) => ((b.valLossAfter as number) < (a.valLossAfter as number) ? b : a));
  };
  const full = bestOf('full');
  return configs.map((c) => {
    const best = bestOf(c.label);
    const e = c.mode === 'lora' && c.r !== null
      ? expected(w.config, w.batchSize, { r: c.r, targets: c.targets === 'qv' ? ['q_proj', 'v_proj'] : all })
      : null;
    const before = best?.valLossBefore ?? null;
    const fullGain = before !== null && full?.valLossAfter != null ? before - full.valLossAfter : null;
    const gain = before !== null && best?.valLossAfter != null ? before - best.valLossAfter : null;
    return {
      ...c, best, lrsTried: runs.filter((r) => r.config === c.label).map((r) => r.lr),
      gapToFull: best?.valLossAfter != null && full?.valLossAfter != null ? best.valLossAfter - full.valLossAfter : null,
      shareOfFullGain: gain !== null && fullGain !== null && fullGain > 0 ? gain / fullGain : null,
      timeRatio: ratioOf(best?.trainMs, full?.trainMs), timeTheory: e ? e.stepRatio : c.mode === 'full' ? 1 : null,
      peakRatio: ratioOf(best?.peakTensorBytes, full?.peakTensorBytes), peakTheory: e ? e.peakRatio : c.mode === 'full' ? 1 : null,
      rssRatio: ratioOf(best?.peakRssBytes, full?.peakRssBytes), paramsRatio: ratioOf(best?.trainableParams, full?.trainableParams),
    };
  });
}

/** Does the LoRA paper's shape of result (close to full, for less) show in these numbers? */
export function qualityVerdict(rows: readonly QualityRow[], minShare = 0.9): QualityVerdict {
  const full = rows.find((r) => r.mode === 'full');
  const lora = rows.filter((r) => r.mode === 'lora' && r.best?.valLossAfter != null);
  const pct = (x: number): string => `${Math.round(100 * x) || 0}%`;
  if (!full?.best?.valLossAfter || full.best.valLossBefore === null || lora.length === 0) {
    return { holds: null, minShare, text: 'Not decided: the full or every LoRA run failed.' };
  }
  const fullGain = full.best.valLossBefore - full.best.valLossAfter;
  if (!(fullGain > 0)) {
    return { holds: null, minShare, text: `Not decided: full fine-tuning did not lower the validation loss (${full.best.valLossBefore.toFixed(3)} -> ${full.best.valLossAfter.toFixed(3)}), so there is no gain to match.` };
  }
  const cheaper = (r: QualityRow): boolean => (r.timeRatio ?? Infinity) < 1 && (r.peakRatio ?? Infinity) < 1;
  const close = lora.filter((r) => (r.shareOfFullGain ?? -Infinity) >= minShare);
  const good = close.filter(cheaper);
  const best = lora.reduce((a, b) => ((b.best!.valLossAfter as number) < (a.best!.valLossAfter as number) ? b : a));
  const describe = (r: QualityRow): string =>
    `${r.label} (lr ${r.best!.lr}) reaches ${r.best!.valLossAfter!.toFixed(3)} against full's ${full.best!.valLossAfter!.toFixed(3)} ` +
    `(gap ${r.gapToFull! >= 0 ? '+' : ''}${r.gapToFull!.toFixed(3)} nats, ${pct(r.shareOfFullGain ?? 0)} of full's gain of ${fullGain.toFixed(3)}) ` +
    `in ${fmtRatio(r.timeRatio ?? NaN)}x its time and ${fmtRatio(r.peakRatio ?? NaN)}x its peak tensor memory, ` +
    `training ${pct(r.paramsRatio ?? 0)} of its parameters`;
  if (good.length > 0) {
    const cheapest = good.reduce((a, b) => ((b.peakRatio ?? Infinity) < (a.peakRatio ?? Infinity) ? b : a));
    return {
      holds: true, minShare,
      text: `Holds here: ${good.length} of ${lora.length} LoRA runs get at least ${pct(minShare)} of full fine-tuning's gain for less time and memory. ` +
        `Best: ${describe(best)}.${cheapest !== best ? ` Cheapest of those: ${describe(cheapest)}.` : ''}`,
    };
  }
  const why = close.length > 0
    ? `${close.length} LoRA run(s) get at least ${pct(minShare)} of full's gain, but none of them costs less in both time and peak memory`
    : `no LoRA run gets ${pct(minShare)} of full fine-tuning's gain in these steps`;
  return { holds: false, minShare, text: `Does not hold here: ${why}. Best LoRA: ${describe(best)}.` };
}

function stamp(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}

function runArgs(c: RunConfig, lr: number, o: QualityOptions, files: { train: string; val: string }, ckpt: string): string[] {
  const args = [
    '--mode', c.mode, '--size', o.size, '--backend', o.backend, '--data', files.train, '--eval-data', files.val,
    '--eval-windows', String(o.evalWindows), '--eval-every', String(o.evalEvery), '--init', ckpt,
    '--steps', String(o.steps), '--warmup', '0', '--seed', String(o.seed), '--lr', String(lr),
  ];
  if (c.mode === 'lora') args.push('--r', String(c.r), '--targets', c.targets === 'qv' ? 'q_proj,v_proj' : 'all');
  return args;
}

/** Runs every config at every learning rate, learning rate slot by slot, so load drifts hit all configs alike. */
export async function runQuality(o: QualityOptions): Promise<{ report: QualityReport; dir: string }> {
  const t0 = performance.now();
  const started = new Date();
  const loadStart = loadavg();
  const info = backendInfo(o.backend);
  const say = (s: string): void => { process.stderr.write(`${s}\n`); };
  if (o.quick) setWorkerPlacement('inline');
  const configs = runConfigs(o);
  const slots = Math.max(o.lrFull.length, o.lrLora.length);
  const total = configs.reduce((s, c) => s + (c.mode === 'full' ? o.lrFull : o.lrLora).length, 0);
  say(`lowrank bench quality: full vs LoRA from one pre-trained base — size ${o.size}, backend ${info.backend} (mode ${info.mode}), ` +
    `${o.steps} steps each, ${configs.length} settings, ${total} runs, ${o.quick ? 'all in this process (--quick)' : 'each in a fresh process'}`);
  say('[1/3] data and the pre-trained base');
  const setup = await prepareFinetune({
    size: o.size, backend: o.backend, seed: o.seed, genre: o.genre, brownFiles: o.brownFiles,
    pretrainSteps: o.pretrainSteps, pretrainLr: o.pretrainLr, cacheDir: o.cacheDir,
  }, say);
  const runs: QualityRun[] = [];
  try {
    say(`[2/3] fine-tuning on ${setup.split.heldOut}: learning rates full ${o.lrFull.join(', ')}, LoRA ${o.lrLora.join(', ')}`);
    let n = 0;
    for (let slot = 0; slot < slots; slot++) {
      for (const c of configs) {
        const lr = (c.mode === 'full' ? o.lrFull : o.lrLora)[slot];
        if (lr === undefined) continue;
        n++;
        const label = `${c.label} lr ${lr}`;
        const r = await attempt<TrainResult>('train', runArgs(c, lr, o, setup.files, setup.base.ckpt), label, true);
        const run = runOf(c, lr, r);
        runs.push(run);
        say(`      ${String(n).padStart(String(total).length)}/${total} ${label.padEnd(22)} ` +
          (run.error ? `FAILED: ${run.error}` : `val ${run.valLossBefore?.toFixed(4)} -> ${run.valLossAfter?.toFixed(4)}, ` +
            `${((run.trainMs ?? NaN) / 1000).toFixed(1)} s, peak ${fmtBytes(run.peakTensorBytes ?? NaN)}`));
      }
    }
  } finally {
    setup.close();
  }
  say('[3/3] report and chart');
  const rows = qualityRows(configs, runs, o.size, setup.split.vocabSize);
  const { cacheDir: _c, out: _o, ...options } = o;
  const report: QualityReport = {
    suite: 'quality', createdAt: started.toISOString(), elapsedSeconds: (performance.now() - t0) / 1000, quick: o.quick,
    machine: machineInfo(o.backend, loadStart), backend: info, workload: describeWorkload(workload(o.size, setup.split.vocabSize)), options,
    data: { pretrain: setup.split.pretrain.source, train: setup.split.train.source, val: setup.split.val.source, heldOut: setup.split.heldOut },
    base: { ...setup.base.info, cached: setup.base.cached }, runs, rows, verdict: qualityVerdict(rows),
  };
  const dir = join(o.out, `${stamp(started)}-quality`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'quality.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(dir, 'quality.md'), qualityMarkdown(report));
  writeFileSync(join(dir, 'quality.svg'), qualityChart(report));
  return { report, dir };
}

const RANK_COLORS = ['#e41a1c', '#ff7f00', '#c9a800', '#4daf4a', '#377eb8', '#984ea3', '#a65628', '#f781bf'];

function seriesStyle(row: QualityRow, ranks: readonly number[]): { color: string; dashed: boolean } {
  if (row.mode === 'full') return { color: '#111', dashed: false };
  const i = ranks.indexOf(row.r ?? -1);
  return { color: RANK_COLORS[(i < 0 ? 0 : i) % RANK_COLORS.length], dashed: row.targets === 'all' };
}

/** quality.svg: validation loss against training wall time (a line per run) and against peak tensor memory (a point per run). */
export function qualityChart(r: QualityReport): string {
  const rows = r.rows.filter((x) => x.best);
  const time: XYSeries[] = rows.map((x) => ({
    label: `${x.label} (lr ${x.best!.lr})`, ...seriesStyle(x, r.options.ranks),
    points: x.best!.curve.map((p) => ({ x: p.trainMs / 1000, y: p.valLoss })),
  }));
  const memory: XYSeries[] = rows.map((x) => ({
    label: `${x.label} (lr ${x.best!.lr})`, ...seriesStyle(x, r.options.ranks),
    points: x.best!.valLossAfter !== null && x.best!.peakTensorBytes !== null ? [{ x: x.best!.peakTensorBytes / 2 ** 20, y: x.best!.valLossAfter }] : [],
  }));
  const fmtLoss = (v: number): string => v.toFixed(3);
  return xyChartSvg(
    `Fine-tuning on ${r.data.heldOut} from a pre-trained base: full vs LoRA (${r.options.steps} steps, best lr each)`,
    [
      `${r.workload.split(';')[0]}; base pre-trained on the other 14 genres`,
      `${r.backend.backend} (${r.backend.mode}), ${r.machine.threads} thread(s), ${r.machine.cpus} CPUs, ` +
        `1-min load ${r.machine.loadavgStart[0].toFixed(1)} -> ${r.machine.loadavg[0].toFixed(1)}, ${r.createdAt.slice(0, 16)}Z; LoRA on q,v solid, on all linears dashed`,
    ],
    [
      { id: 'loss-vs-time', title: 'Validation loss vs training time', xLabel: 'training wall time (s)', yLabel: 'held-out validation loss (nats/char)', formatX: fmtTick, formatY: fmtLoss, series: time },
      { id: 'loss-vs-memory', title: 'Validation loss vs peak tensor memory', xLabel: 'peak tensor bytes (MiB)', yLabel: 'final validation loss', formatX: fmtTick, formatY: fmtLoss, series: memory, markersOnly: true, xFromZero: true },
    ],
  );
}

const na = (v: number | null | undefined, f: (x: number) => string): string => (v == null || !Number.isFinite(v) ? 'n/a' : f(v));

export const QUALITY_HEADER = [
  'run', 'best lr', 'val after', 'gap to full', 'share of full gain', 'train time (s)', 'time / full (theory)',
  'peak tensors', 'peak / full (theory)', 'peak RSS', 'trainable params', 'adapter / checkpoint',
];

export function qualityCells(r: QualityReport): string[][] {
  return r.rows.map((x) => {
    const b = x.best;
    const withTheory = (m: number | null, t: number | null): string => `${na(m, fmtRatio)} (${na(t, fmtRatio)})`;
    return [
      x.label, b ? String(b.lr) : 'n/a', na(b?.valLossAfter, (v) => v.toFixed(4)),
      x.mode === 'full' ? '' : na(x.gapToFull, (v) => `${v >= 0 ? '+' : ''}${v.toFixed(4)}`),
      x.mode === 'full' ? '' : na(x.shareOfFullGain, (v) => `${Math.round(100 * v) || 0}%`),
      na(b?.trainMs, (v) => (v / 1000).toFixed(1)), x.mode === 'full' ? '1 (1)' : withTheory(x.timeRatio, x.timeTheory),
      na(b?.peakTensorBytes, fmtBytes), x.mode === 'full' ? '1 (1)' : withTheory(x.peakRatio, x.peakTheory),
      na(b?.peakRssBytes, fmtBytes), na(b?.trainableParams, fmtInt), na(b?.artifactBytes, fmtBytes),
    ];
  });
}

/** The short table (the README's): loss, share of full's gain, cost ratios with their theory, size. */
export function summaryMarkdown(r: QualityReport): string {
  const before = r.rows.find((x) => x.best)?.best?.valLossBefore;
  const header = [
    'run (best lr)', `validation loss (${na(before, (v) => v.toFixed(3))} before)`, 'share of full\'s gain',
    'train time / full (FLOP theory)', 'peak tensors / full (accounting)', 'trainable params', 'adapter / checkpoint',
  ];
  const rows = r.rows.map((x) => {
    const b = x.best;
    const vs = (m: number | null, t: number | null): string => (x.mode === 'full' ? '1' : `${na(m, (v) => v.toFixed(2))} (${na(t, (v) => v.toFixed(2))})`);
    return [
      `${x.label} (${b ? b.lr : 'failed'})`, na(b?.valLossAfter, (v) => v.toFixed(4)),
      x.mode === 'full' ? '' : na(x.shareOfFullGain, (v) => `${Math.round(100 * v) || 0}%`),
      vs(x.timeRatio, x.timeTheory), vs(x.peakRatio, x.peakTheory), na(b?.trainableParams, fmtInt), na(b?.artifactBytes, fmtBytes),
    ];
  });
  return mdTable(header, rows);
}

function lrCells(r: QualityReport): string[][] {
  return r.runs.map((x) => [x.config, String(x.lr), na(x.valLossAfter, (v) => v.toFixed(4)), na(x.trainMs, (v) => (v / 1000).toFixed(1)), na(x.medianStepMs, fmtMs), x.error ?? '']);
}

function mdTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const align = header.map((_, i) => (i === 0 ? '---' : '---:'));
  return [header, align, ...rows].map((row) => `| ${row.map(esc).join(' | ')} |`).join('\n');
}

function baseLine(r: QualityReport): string {
  const b = r.base;
  return `Base: ${r.workload}; pre-trained ${b.spec.steps} steps (AdamW, cosine from lr ${b.spec.lr}, seed ${b.spec.seed}) on ${r.data.pretrain}, ` +
    `training loss ${b.lossStart.toFixed(3)} -> ${b.lossEnd.toFixed(3)}, ${b.seconds.toFixed(0)} s (${b.cached ? `cached ${b.key}` : `built this run, cached as ${b.key}`}).`;
}

function methodLine(r: QualityReport): string {
  const o = r.options;
  return `Method: every run starts from the same base and trains ${o.steps} steps (batch ${r.workload.split('batch ')[1] ?? '?'}, AdamW, weight decay 0.01, 10% warm-up then cosine to 10% of the peak lr) ` +
    `on ${r.data.train}; LoRA alpha = 2r, base frozen. Validation loss is the mean over the same ${o.evalWindows} fixed windows of ${r.data.val}, ` +
    `before training, every ${o.evalEvery} steps and after (outside the timed steps). Learning rates tried: full ${o.lrFull.join(', ')}; LoRA ${o.lrLora.join(', ')}; ` +
    'the lowest final validation loss is reported (chosen on the same windows, for every setting alike). Train time sums every step\'s wall time; ' +
    'peak tensors is the engine\'s peak live bytes over training; peak RSS the worker process\'s; each run in a fresh process.';
}

/** quality.md */
export function qualityMarkdown(r: QualityReport): string {
  const m = r.machine;
  const before = r.rows.find((x) => x.best)?.best?.valLossBefore;
  return [
    `# What LoRA gives for what it costs: fine-tuning a pre-trained base on ${r.data.heldOut}`,
    '',
    `${r.createdAt} · ${m.cpus} × ${m.cpuModel} · Node ${m.node} (${m.platform}) · backend **${r.backend.backend}**, mode **${r.backend.mode}**, ` +
      `precision ${r.backend.precision}, ${m.threads} compute thread(s) · ${loadLine(m)} · suite took ${r.elapsedSeconds.toFixed(0)} s` +
      (r.quick ? ' · **--quick: a tiny model and a few steps, to test the harness; the numbers mean nothing**' : ''),
    '',
    `- ${baseLine(r)}`,
    `- ${methodLine(r)}`,
    `- Validation loss of the base before fine-tuning: ${na(before, (v) => v.toFixed(4))}.`,
    '',
    '![validation loss against time and memory](quality.svg)',
    '',
    summaryMarkdown(r),
    '',
    '## Full fine-tuning vs LoRA, each at its best learning rate',
    '',
    mdTable(QUALITY_HEADER, qualityCells(r)),
    '',
    'Gap: final validation loss minus full fine-tuning\'s (nats per char). Share of full gain: (before - after) over full\'s (before - after). ' +
      'Ratios are LoRA over full; in brackets the theory (bench/theory.ts): matmul FLOPs of a step for time, what a step must hold ' +
      '(weights, AdamW moments, saved activations, backward\'s first gradients) for peak tensors.',
    '',
    `**Verdict** (LoRA paper's shape: within ${(100 * r.verdict.minShare).toFixed(0)}% of full fine-tuning's gain at a fraction of its cost): ${r.verdict.text}`,
    '',
    '## Every run of the learning-rate search',
    '',
    mdTable(['run', 'lr', 'val after', 'train time (s)', 'median step (ms)', 'error'], lrCells(r)),
    '',
  ].join('\n');
}

export function qualityConsole(r: QualityReport): string {
  return [
    `Fine-tuning on ${r.data.heldOut} from a pre-trained base, ${r.options.steps} steps, best lr each — backend ${r.backend.backend}, ` +
      `mode ${r.backend.mode}, ${r.machine.threads} thread(s); ${loadLine(r.machine)}`,
    `  ${baseLine(r)}`,
    '',
    formatTable(QUALITY_HEADER, qualityCells(r)),
    '',
    `Verdict: ${r.verdict.text}`,
  ].join('\n');
}

export async function run(args: string[]): Promise<QualityReport> {
  const { report, dir } = await runQuality(parseQualityArgs(args));
  console.log(`\n${qualityConsole(report)}\n`);
  const rel = relative(process.cwd(), dir) || '.';
  console.log(`wrote ${join(rel, 'quality.md')}, ${join(rel, 'quality.json')}, ${join(rel, 'quality.svg')} (suite took ${report.elapsedSeconds.toFixed(0)} s)`);
  return report;
}
