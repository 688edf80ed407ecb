/**
 * The default suite: what does LoRA save on this machine? Trains the W2 model
 * on Brown text with full fine-tuning and with LoRA, each in a fresh worker
 * process, times W3 inference (base, LoRA unmerged, merged), sizes a `large`
 * step on the meta backend, and writes report.md, report.json and chart.svg
 * under bench/results/<timestamp>/.
 *
 *   npm run bench                      # W2 on cpu
 *   npm run bench -- lora --size medium --backend gpu --steps 10
 *   (options: --size w2|medium|large, --backend cpu|gpu, --steps 20, --warmup 3, --reps 50 (W3), --seed 0, --out bench/results)
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  LORA, backendInfo, describeWorkload, intOption, option, parseSize, workload, type SizeName,
} from './common.ts';
import { brownTokens, writeTokens } from './corpus.ts';
import { chartSvg, standardPanels } from './chart.ts';
import { RESULT_PREFIX, type TrainResult, type W3Result, type WorkerResult } from './protocol.ts';
import {
  comparisonRows, consoleText, failed, markdown, summarizeTheory, targetRows,
  type AccountingRow, type Failed, type SuiteReport,
} from './report.ts';
import { expected } from './theory.ts';
import { trainRun } from './w2-worker.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');
const WORKER = join(HERE, 'w2-worker.ts');

/** Runs bench/w2-worker.ts in a fresh Node process; its stderr is forwarded as progress. */
export function runWorker(args: readonly string[], label: string): Promise<WorkerResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderrTail = '';
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderrTail = (stderrTail + d).slice(-4000);
      pending += d;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) if (l.trim()) process.stderr.write(`    ${l}\n`);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (pending.trim()) process.stderr.write(`    ${pending}\n`);
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (code === 0 && line) {
        resolvePromise(JSON.parse(line.slice(RESULT_PREFIX.length)) as WorkerResult);
        return;
      }
      const why = stderrTail.trim().split('\n').filter((l) => l.startsWith('w2-worker:') || l.includes('Error')).slice(-1)[0];
      reject(new Error(`${label} worker exited with code ${code}${why ? `: ${why.replace(/^w2-worker:\s*/, '')}` : ''}`));
    });
  });
}

export interface SuiteOptions {
  size: SizeName;
  backend: string;
  steps: number;
  warmup: number;
  reps: number;
  w3Warmup: number;
  seed: number;
  /** Results root; a timestamped folder is made inside. */
  out: string;
  brownFiles?: number;
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
    out: resolve(option(args, 'out') ?? join(ROOT, 'bench', 'results')),
    brownFiles: files === undefined ? undefined : intOption(args, 'brown-files', 1),
  };
}

function errorOf(e: unknown): Failed {
  return { error: e instanceof Error ? e.message : String(e) };
}

async function attempt<T extends WorkerResult>(kind: T['kind'], args: readonly string[], label: string): Promise<T | Failed> {
  try {
    const r = await runWorker(args, label);
    if (r.kind !== kind) return { error: `${label}: expected a ${kind} result, got ${r.kind}` };
    return r as T;
  } catch (e) {
    process.stderr.write(`    ${label} failed: ${errorOf(e).error}\n`);
    return errorOf(e);
  }
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
  const state = (r: TrainResult | null): number | null => (r ? r.weightBytes + r.gradientBytes + r.optimizerStateBytes : null);
  return {
    size, backend: 'meta', checkpointing, fullPeakBytes: f?.peakTensorBytes ?? null, loraPeakBytes: l?.peakTensorBytes ?? null,
    ratio: f && l ? l.peakTensorBytes / f.peakTensorBytes : null, fullStateBytes: state(f), loraStateBytes: state(l),
    theory: e.memoryRatio, error: failed(full) ? full.error : failed(lora) ? lora.error : null,
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

  say(`lowrank bench: LoRA vs full fine-tuning — size ${o.size}, backend ${info.backend} (mode ${info.mode}, ${info.precision}), ` +
    `${o.warmup} warm-up + ${o.steps} timed steps per mode, each mode in a fresh process`);
  say('[1/5] loading the Brown corpus (char-level)');
  const tokens = brownTokens(o.brownFiles);
  const tmp = mkdtempSync(join(tmpdir(), 'lowrank-bench-data-'));
  const data = join(tmp, 'ids.bin');
  writeTokens(data, tokens);
  say(`      ${tokens.source}, vocab ${tokens.vocabSize}`);
  const w = workload(o.size, tokens.vocabSize);
  const common = ['--size', o.size, '--backend', o.backend, '--data', data, '--seed', String(o.seed)];
  const train = [...common, '--steps', String(o.steps), '--warmup', String(o.warmup)];

  let full: TrainResult | Failed;
  let lora: TrainResult | Failed;
  let w3: W3Result | Failed;
  const accounting: AccountingRow[] = [];
  try {
    say('[2/5] full fine-tuning (every parameter trains)');
    full = await attempt<TrainResult>('train', ['--mode', 'full', ...train], 'full');
    say(`[3/5] LoRA r=${LORA.r}, alpha=${LORA.alpha} on ${LORA.targets.join(', ')} (base frozen)`);
    lora = await attempt<TrainResult>('train', ['--mode', 'lora', ...train], 'lora');
    say(`[4/5] W3 inference latency: batch 1 x ${w.config.blockSize}, base / LoRA unmerged / merged`);
    w3 = await attempt<W3Result>('w3', ['--mode', 'w3', ...common, '--reps', String(o.reps), '--warmup', String(o.w3Warmup)], 'w3');
    say('[5/5] peak tensor bytes of a step on the meta backend (accounting, no compute)');
    for (const s of [...new Set<SizeName>([o.size, 'large'])]) accounting.push(await accountingFor(s, data, o.seed));
    accounting.push(await accountingFor('large', data, o.seed, true));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }

  const e = expected(w.config, w.batchSize, { r: LORA.r, targets: LORA.targets });
  const large = workload('large', tokens.vocabSize);
  const theory = [summarizeTheory(o.size, e)];
  if (o.size !== 'large') theory.push(summarizeTheory('large', expected(large.config, large.batchSize, { r: LORA.r, targets: LORA.targets })));
  const c = cpus();
  const report: SuiteReport = {
    suite: 'lora',
    createdAt: started.toISOString(),
    elapsedSeconds: (performance.now() - t0) / 1000,
    machine: { cpus: c.length, cpuModel: c[0]?.model.trim() ?? 'unknown', node: process.version, platform: `${process.platform}-${process.arch}`, loadavgStart, loadavg: loadavg() },
    options: { size: o.size, backend: o.backend, steps: o.steps, warmup: o.warmup, reps: o.reps, seed: o.seed },
    backend: failed(full) ? info : { backend: full.backend, mode: full.mode, precision: full.precision },
    workload: describeWorkload(w),
    data: tokens.source,
    lora: { r: LORA.r, alpha: LORA.alpha, targets: [...LORA.targets] },
    full, loraRun: lora, w3, accounting, theory,
    rows: comparisonRows(full, lora, e),
    targets: targetRows(o.size, full, lora, w3, accounting),
  };

  const dir = join(o.out, stamp(started));
  mkdirSync(dir, { recursive: true });
  const f = failed(full) ? null : full;
  const l = failed(lora) ? null : lora;
  const pT = e.paramsTotal;
  const svg = chartSvg(
    `LoRA (r=${LORA.r}) vs full fine-tuning — ${o.size}`,
    `${info.backend} (${report.backend.mode}, ${report.backend.precision}), batch ${w.batchSize} x ${w.config.blockSize}, ${report.machine.cpus} CPUs, ${started.toISOString().slice(0, 16)}Z`,
    standardPanels({
      stepMs: { label: 'median step', full: f?.medianMs ?? null, lora: l?.medianMs ?? null },
      stepTheory: e.stepRatio,
      peakTensor: { label: 'tensors', full: f?.peakTensorBytes ?? null, lora: l?.peakTensorBytes ?? null },
      peakRss: { label: 'process RSS', full: f?.peakRssBytes ?? null, lora: l?.peakRssBytes ?? null },
      memoryTheory: e.memoryRatio,
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
  const { report, dir } = await runSuite(parseSuiteArgs(args));
  console.log(`\n${consoleText(report)}\n`);
  const rel = relative(process.cwd(), dir) || '.';
  console.log(`wrote ${join(rel, 'report.md')}, ${join(rel, 'report.json')}, ${join(rel, 'chart.svg')} (suite took ${report.elapsedSeconds.toFixed(0)} s)`);
  return report;
}
