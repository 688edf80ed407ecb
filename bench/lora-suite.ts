/**
 * The default suite: what does LoRA save on this machine? Fine-tunes the
 * pre-trained W2 base (bench/pretrain.ts, cached) on a held-out Brown genre
 * with full fine-tuning and with LoRA, alternating the two in fresh worker
 * processes for several rounds; times W3 inference (base, LoRA unmerged,
 * merged); sizes a `large` step on the meta backend; and writes report.md,
 * report.json and chart.svg under bench/results/<timestamp>/.
 *
 *   npm run bench                      # W2 on cpu, 3 rounds
 *   npm run bench -- lora --size medium --backend gpu --steps 10
 *   (options: --size w2|medium|large, --backend cpu|gpu, --steps 20, --warmup 3, --rounds 3, --reps 50 (W3), --seed 0,
 *    --genre cr, --lr-full 2e-4, --lr-lora 3e-3, --pretrain-steps 600, --cache bench/.cache, --out bench/results)
 *   npm run bench -- --threads 1       # the cpu backend on one thread (default: every core; also LOWRANK_NUM_THREADS)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  LORA, applyThreads, backendInfo, describeWorkload, intOption, option, parseSize, workload, type SizeName,
} from './common.ts';
import { chartSvg, standardPanels } from './chart.ts';
import { CACHE_DIR, PRETRAIN } from './pretrain.ts';
import type { TrainResult, W3Result } from './protocol.ts';
import {
  comparisonRows, consoleText, markdown, summarizeTheory, targetRows, timingSummary,
  type AccountingRow, type SuiteReport,
} from './report.ts';
import { machineInfo, prepareFinetune } from './setup.ts';
import { expected } from './theory.ts';
import { trainRun } from './w2-worker.ts';
import { attempt, errorOf, failed, type Failed } from './workers.ts';

export { runWorker } from './workers.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');

/** Fine-tuning peak learning rates of the comparison (AdamW, warm-up + cosine; LoRA's is higher, as usual). */
export const FINETUNE_LR = { full: 2e-4, lora: 3e-3 } as const;

export interface SuiteOptions {
  size: SizeName;
  backend: string;
  steps: number;
  warmup: number;
  reps: number;
  w3Warmup: number;
  seed: number;
  /** Full and LoRA runs each, alternating, each in a fresh process. */
  rounds: number;
  genre: string;
  lrFull: number;
  lrLora: number;
  pretrainSteps: number;
  cacheDir: string;
  /** Results root; a timestamped folder is made inside. */
  out: string;
  brownFiles?: number;
}

function lrArg(args: readonly string[], name: string, fallback: number): number {
  const raw = option(args, name);
  const v = raw === undefined ? fallback : Number(raw);
  if (!(v > 0)) throw new Error(`bench: --${name} must be a positive number, got '${raw}'`);
  return v;
}

export function parseSuiteArgs(args: readonly string[]): SuiteOptions {
  const files = option(args, 'brown-files');
  return {
    size: parseSize(option(args, 'size')),
    backend: option(args, 'backend') ?? 'cpu',
    steps: intOption(args, 'steps', 20),
    warmup: intOption(args, 'warmup', 3, 0),
    reps: intOption(args, 'reps', 50),
    w3Warmup: intOption(args, 'w3-warmup', 5, 0),
    seed: intOption(args, 'seed', 0, 0),
    rounds: intOption(args, 'rounds', 3),
    genre: option(args, 'genre') ?? 'cr',
    lrFull: lrArg(args, 'lr-full', FINETUNE_LR.full),
    lrLora: lrArg(args, 'lr-lora', FINETUNE_LR.lora),
    pretrainSteps: intOption(args, 'pretrain-steps', PRETRAIN.steps),
    cacheDir: resolve(option(args, 'cache') ?? CACHE_DIR),
    out: resolve(option(args, 'out') ?? join(ROOT, 'bench', 'results')),
    brownFiles: files === undefined ? undefined : intOption(args, 'brown-files', 1),
  };
}

/** Peak tensor bytes of a full and a LoRA step of `size`, on the meta backend, in this process. */
async function accountingFor(size: SizeName, data: string, seed: number, checkpointing = false): Promise<AccountingRow> {
  const args = ['--backend', 'meta', '--size', size, '--data', data, '--seed', String(seed), ...(checkpointing ? ['--checkpointing'] : [])];
  const quiet = async (mode: 'full' | 'lora'): Promise<TrainResult | Failed> => {
    try {
      return await trainRun(mode, args, () => {});
    } catch (e) {
      return errorOf(e);
    }
  };
  const full = await quiet('full');
  const lora = await quiet('lora');
  const f = failed(full) ? null : full;
  const l = failed(lora) ? null : lora;
  const w = workload(size, f?.config.vocabSize ?? l?.config.vocabSize ?? 65);
  const e = expected(w.config, w.batchSize, { r: LORA.r, targets: LORA.targets });
  return {
    size, backend: 'meta', checkpointing, fullPeakBytes: f?.peakTensorBytes ?? null, loraPeakBytes: l?.peakTensorBytes ?? null,
    ratio: f && l ? l.peakTensorBytes / f.peakTensorBytes : null,
    // The accounting models a plain step; with checkpointing it would be a different sum, so none is shown.
    fullMustHold: checkpointing ? null : e.stepMemoryFull.peak, loraMustHold: checkpointing ? null : e.stepMemoryLora.peak,
    theory: checkpointing ? null : e.peakRatio, error: failed(full) ? full.error : failed(lora) ? lora.error : null,
  };
}

function stamp(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}

/** Runs the suite and writes the report; returns the report and the folder it is in. */
export async function runSuite(o: SuiteOptions): Promise<{ report: SuiteReport; dir: string }> {
  const t0 = performance.now();
  const started = new Date();
  const loadavgStart = loadavg();
  const info = backendInfo(o.backend);
  const say = (s: string): void => { process.stderr.write(`${s}\n`); };

  say(`lowrank bench: LoRA vs full fine-tuning of a pre-trained base — size ${o.size}, backend ${info.backend} (mode ${info.mode}, ${info.precision}), ` +
    `${o.warmup} warm-up + ${o.steps} timed steps per run, ${o.rounds} rounds of full then LoRA, each run in a fresh process`);
  say('[1/5] data (Brown by genre, char-level) and the pre-trained base');
  const setup = await prepareFinetune({
    size: o.size, backend: o.backend, seed: o.seed, genre: o.genre, brownFiles: o.brownFiles,
    pretrainSteps: o.pretrainSteps, pretrainLr: PRETRAIN.lr, cacheDir: o.cacheDir,
  }, say);
  const w = workload(o.size, setup.split.vocabSize);
  const data = setup.files.train;
  const common = ['--size', o.size, '--backend', o.backend, '--data', data, '--seed', String(o.seed)];
  const train = [...common, '--steps', String(o.steps), '--warmup', String(o.warmup), '--init', setup.base.ckpt, '--eval-data', setup.files.val];

  const rounds: { full: TrainResult | Failed; lora: TrainResult | Failed }[] = [];
  let w3: W3Result | Failed;
  const accounting: AccountingRow[] = [];
  try {
    say(`[2/5] ${o.rounds} rounds: full fine-tuning (lr ${o.lrFull}, every parameter trains), then LoRA r=${LORA.r}, alpha=${LORA.alpha} ` +
      `on ${LORA.targets.join(', ')} (lr ${o.lrLora}, base frozen)`);
    for (let i = 0; i < o.rounds; i++) {
      const full = await attempt<TrainResult>('train', ['--mode', 'full', ...train, '--lr', String(o.lrFull)], `full ${i + 1}/${o.rounds}`, i > 0);
      const lora = await attempt<TrainResult>('train', ['--mode', 'lora', ...train, '--lr', String(o.lrLora)], `lora ${i + 1}/${o.rounds}`, i > 0);
      rounds.push({ full, lora });
      const ms = (r: TrainResult | Failed): string => (failed(r) ? 'failed' : `${r.medianMs?.toFixed(0)} ms`);
      say(`      round ${i + 1}/${o.rounds}: full ${ms(full)}, LoRA ${ms(lora)} (median step)`);
    }
    say(`[3/5] W3 inference latency: batch 1 x ${w.config.blockSize}, base / LoRA unmerged / merged`);
    w3 = await attempt<W3Result>('w3', ['--mode', 'w3', ...common, '--reps', String(o.reps), '--warmup', String(o.w3Warmup)], 'w3');
    say('[4/5] peak tensor bytes of a step on the meta backend (accounting, no compute)');
    for (const s of [...new Set<SizeName>([o.size, 'large'])]) accounting.push(await accountingFor(s, data, o.seed));
    accounting.push(await accountingFor('large', data, o.seed, true));
  } finally {
    setup.close();
  }
  say('[5/5] report and chart');

  const e = expected(w.config, w.batchSize, { r: LORA.r, targets: LORA.targets });
  const large = workload('large', setup.split.vocabSize);
  const theory = [summarizeTheory(o.size, e)];
  if (o.size !== 'large') theory.push(summarizeTheory('large', expected(large.config, large.batchSize, { r: LORA.r, targets: LORA.targets })));
  const fulls = rounds.map((r) => r.full);
  const loras = rounds.map((r) => r.lora);
  const firstOk = (xs: (TrainResult | Failed)[]): TrainResult | Failed => xs.find((x) => !failed(x)) ?? xs[0];
  const full = firstOk(fulls);
  const lora = firstOk(loras);
  const timing = timingSummary(rounds);
  const report: SuiteReport = {
    suite: 'lora',
    createdAt: started.toISOString(),
    elapsedSeconds: (performance.now() - t0) / 1000,
    machine: machineInfo(o.backend, loadavgStart),
    options: { size: o.size, backend: o.backend, steps: o.steps, warmup: o.warmup, reps: o.reps, seed: o.seed, rounds: o.rounds, lrFull: o.lrFull, lrLora: o.lrLora },
    backend: failed(full) ? info : { backend: full.backend, mode: full.mode, precision: full.precision, threads: full.threads },
    workload: describeWorkload(w),
    data: `fine-tune on ${setup.split.train.source}; validate on ${setup.split.val.source}`,
    base: { ...setup.base.info, cached: setup.base.cached },
    lora: { r: LORA.r, alpha: LORA.alpha, targets: [...LORA.targets] },
    full, loraRun: lora, rounds, timing, w3, accounting, theory,
    rows: comparisonRows(fulls, loras, e),
    targets: targetRows(timing, e, full, lora, w3, accounting),
  };

  const dir = join(o.out, stamp(started));
  mkdirSync(dir, { recursive: true });
  const f = failed(full) ? null : full;
  const l = failed(lora) ? null : lora;
  const pT = e.paramsTotal;
  const svg = chartSvg(
    `LoRA (r=${LORA.r}) vs full fine-tuning — ${o.size}`,
    `${info.backend} (${report.backend.mode}, ${report.backend.precision}), ${report.machine.threads} thread(s), batch ${w.batchSize} x ${w.config.blockSize}, ` +
      `${report.machine.cpus} CPUs, median of ${o.rounds} runs, ${started.toISOString().slice(0, 16)}Z`,
    standardPanels({
      stepMs: { label: 'median step', full: timing.full.median, lora: timing.lora.median },
      stepTheory: e.stepRatio,
      peakTensor: { label: 'tensors', full: f?.peakTensorBytes ?? null, lora: l?.peakTensorBytes ?? null },
      peakRss: { label: 'process RSS', full: f?.peakRssBytes ?? null, lora: l?.peakRssBytes ?? null },
      memoryTheory: e.peakRatio,
      trainable: { label: 'params', full: f?.trainableParams ?? null, lora: l?.trainableParams ?? null },
      paramsTheory: e.paramsLora / pT,
      checkpoint: { label: f && l ? 'checkpoint / adapter' : 'file', full: f?.artifact.bytes ?? null, lora: l?.artifact.bytes ?? null },
      checkpointTheory: e.paramsLora / pT,
    }),
  );
  report.elapsedSeconds = (performance.now() - t0) / 1000;
  writeFileSync(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(dir, 'report.md'), markdown(report));
  writeFileSync(join(dir, 'chart.svg'), svg);
  return { report, dir };
}

export async function run(args: string[]): Promise<SuiteReport> {
  applyThreads(args);
  const { report, dir } = await runSuite(parseSuiteArgs(args));
  console.log(`\n${consoleText(report)}\n`);
  const rel = relative(process.cwd(), dir) || '.';
  console.log(`wrote ${join(rel, 'report.md')}, ${join(rel, 'report.json')}, ${join(rel, 'chart.svg')} (suite took ${report.elapsedSeconds.toFixed(0)} s)`);
  return report;
}
