/**
 * Our W2 training step next to TensorFlow.js's (shared/peers/tfjs) and
 * PyTorch's (shared/peers/torch), run alternately in one session — ours,
 * theirs, ours, theirs — so a busy machine slows all alike; reports medians
 * and ours/theirs ratios.
 *
 *   npm run bench -- peers [--tfjs-dir ../shared/peers/tfjs] [--rounds 2] [--steps 10] [--warmup 3]
 *                          [--modes full,lora] [--backend cpu] [--cpu-steps 2] [--no-tfjs-cpu]
 *                          [--torch-dir ../shared/peers/torch] [--no-torch] [--threads N]
 *                          [--no-tfjs] [--baseline DIR] [--relaxed]
 *
 * --baseline DIR also runs the lowrank checkout in DIR (its bench/w2-worker.ts) next to ours, as
 * `lowrank-baseline`: a before/after comparison in one session. --relaxed also runs ours with
 * Node's --experimental-wasm-relaxed-simd (the gemm's fused multiply-add kernel), as `lowrank-relaxed`.
 *
 * PyTorch runs as its README says (Debian's python3-torch, OpenBLAS-OpenMP,
 * the machine's OpenBLAS overrides unset) with --threads N (default: ours).
 *
 * Both sides train the same model (vocab 65, block 64, 4 layers, 4 heads,
 * n_embd 128, tied head, batch 16) on uniform random tokens, with AdamW
 * lr 3e-4, wd 0.01. TF.js runs as `LINEAR=xnn node w2_tfjs.js wasm <mode>`
 * (its fastest form here) and, for full only and few steps, on its cpu
 * backend (~9 s a step). A TF.js folder without node_modules is copied to a
 * temp dir and `npm install`ed there (needs the npm registry).
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getNumThreads } from '@lowrank/core';
import { applyThreads, fmtMs, fmtRatio, flag, formatTable, intOption, median, option } from './common.ts';
import { runWorker } from './lora-suite.ts';
import { runWorkerOf, type WorkerOrigin } from './workers.ts';
import type { TrainMode } from './protocol.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

interface PeerRun {
  engine: string;
  backend: string;
  mode: string;
  precision: string;
  trainMode: TrainMode;
  medianMs: number;
  threads: number | null;
  trainable: number | null;
}

export interface PeerRow {
  engine: string;
  backend: string;
  mode: string;
  precision: string;
  trainMode: TrainMode;
  threads: number | null;
  runs: number;
  medianMs: number;
  /** Per-run medians, in the order they ran. */
  runMedians: number[];
  /** ours / this engine's median for the same mode (on the 'ours' rows: 1). */
  oursOverThis: number | null;
}

/** A TF.js folder with node_modules: the given one, or an npm-installed copy of it. */
export function prepareTfjs(dir: string): string {
  const abs = resolve(ROOT, dir);
  if (!existsSync(join(abs, 'w2_tfjs.js'))) throw new Error(`peers: no w2_tfjs.js in ${abs} (set --tfjs-dir)`);
  if (existsSync(join(abs, 'node_modules', '@tensorflow', 'tfjs'))) return abs;
  const copy = join(mkdtempSync(join(tmpdir(), 'lowrank-peers-')), 'tfjs');
  cpSync(abs, copy, { recursive: true });
  process.stderr.write(`peers: ${abs} has no node_modules; running npm install in ${copy} (needs the npm registry)\n`);
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: copy, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`peers: npm install in ${copy} failed (exit ${r.status})`);
  return copy;
}

function runTfjs(dir: string, backend: 'wasm' | 'cpu', mode: TrainMode, steps: number, warmup: number): Promise<PeerRun> {
  return new Promise((resolvePromise, reject) => {
    const env = { ...process.env, LINEAR: backend === 'wasm' ? 'xnn' : 'plain' };
    const child = spawn(process.execPath, ['w2_tfjs.js', backend, mode, String(steps), String(warmup)], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err = (err + d).slice(-2000); });
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) {
        reject(new Error(`tfjs-${backend} ${mode} exited with code ${code}: ${err.trim().split('\n').slice(-1)[0] ?? ''}`));
        return;
      }
      const r = JSON.parse(line.slice(7)) as { step_ms_median: number; threads: number | null; trainable: number; linear: string };
      resolvePromise({
        engine: `tfjs-${backend}`, backend, mode: backend === 'wasm' ? `wasm, LINEAR=${r.linear}` : 'cpu', precision: 'float32',
        trainMode: mode, medianMs: r.step_ms_median, threads: r.threads, trainable: r.trainable,
      });
    });
  });
}

/** PyTorch's W2 step (torch_bench.py w2) in the environment its README prescribes. */
function runTorch(dir: string, mode: TrainMode, steps: number, warmup: number, threads: number): Promise<PeerRun> {
  return new Promise((resolvePromise, reject) => {
    const env: Record<string, string | undefined> = { ...process.env, LD_LIBRARY_PATH: '/usr/lib/x86_64-linux-gnu/openblas-openmp' };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    const args = [join(dir, 'torch_bench.py'), 'w2', '--mode', mode, '--threads', String(threads), '--steps', String(steps), '--warmup', String(warmup)];
    const child = spawn('/usr/bin/python3', args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err = (err + d).slice(-2000); });
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) {
        reject(new Error(`torch ${mode} exited with code ${code}: ${err.trim().split('\n').slice(-1)[0] ?? ''}`));
        return;
      }
      const r = JSON.parse(line.slice(7)) as { median_step_ms: number; threads: number; trainable_params: number };
      resolvePromise({
        engine: 'torch', backend: 'cpu', mode: 'eager, OpenBLAS-OpenMP', precision: 'float32',
        trainMode: mode, medianMs: r.median_step_ms, threads: r.threads, trainable: r.trainable_params,
      });
    });
  });
}

async function runOurs(
  backend: string, mode: TrainMode, steps: number, warmup: number, origin?: WorkerOrigin, engine = 'lowrank',
): Promise<PeerRun> {
  const args = ['--mode', mode, '--size', 'w2', '--backend', backend, '--vocab', '65', '--steps', String(steps), '--warmup', String(warmup)];
  const r = origin ? await runWorkerOf(origin, args, `${engine} ${mode}`) : await runWorker(args, `lowrank ${mode}`);
  if (r.kind !== 'train' || r.medianMs === null) throw new Error(`peers: the ${engine} worker returned no step time`);
  return {
    engine, backend: r.backend, mode: r.mode, precision: r.precision, trainMode: mode, medianMs: r.medianMs,
    threads: r.threads, trainable: r.trainableParams,
  };
}

export function peerRows(runs: readonly PeerRun[]): PeerRow[] {
  const groups = new Map<string, PeerRun[]>();
  for (const r of runs) {
    const key = `${r.engine}|${r.trainMode}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const rows: PeerRow[] = [];
  for (const rs of groups.values()) {
    const first = rs[0];
    const runMedians = rs.map((r) => r.medianMs);
    rows.push({
      engine: first.engine, backend: first.backend, mode: first.mode, precision: first.precision, trainMode: first.trainMode,
      threads: first.threads, runs: rs.length, medianMs: median(runMedians), runMedians, oursOverThis: null,
    });
  }
  for (const row of rows) {
    const ours = rows.find((r) => r.engine === 'lowrank' && r.trainMode === row.trainMode);
    row.oursOverThis = ours ? ours.medianMs / row.medianMs : null;
  }
  return rows.sort((a, b) => a.trainMode.localeCompare(b.trainMode) || (a.engine === 'lowrank' ? -1 : b.engine === 'lowrank' ? 1 : a.engine.localeCompare(b.engine)));
}

export async function run(args: string[]): Promise<PeerRow[]> {
  applyThreads(args);
  const tfjs = !flag(args, 'no-tfjs');
  const dir = tfjs ? prepareTfjs(option(args, 'tfjs-dir') ?? '../shared/peers/tfjs') : '(not run)';
  const baselineDir = option(args, 'baseline');
  const baseline: WorkerOrigin | null = baselineDir ? { root: resolve(process.cwd(), baselineDir) } : null;
  const relaxed: WorkerOrigin | null = flag(args, 'relaxed') ? { nodeFlags: ['--experimental-wasm-relaxed-simd'] } : null;
  const torchDir = resolve(ROOT, option(args, 'torch-dir') ?? '../shared/peers/torch');
  const torch = !flag(args, 'no-torch') && existsSync(join(torchDir, 'torch_bench.py'));
  const threads = getNumThreads();
  const rounds = intOption(args, 'rounds', 2);
  const steps = intOption(args, 'steps', 10);
  const warmup = intOption(args, 'warmup', 3, 0);
  const cpuSteps = intOption(args, 'cpu-steps', 2);
  const backend = option(args, 'backend') ?? 'cpu';
  const modes = (option(args, 'modes') ?? 'full,lora').split(',').map((m) => m.trim()).filter((m): m is TrainMode => m === 'full' || m === 'lora');
  const tfjsCpu = tfjs && !flag(args, 'no-tfjs-cpu');
  console.log(`W2 step, lowrank (${backend}) vs TensorFlow.js 4.22 from ${dir}: ${rounds} rounds, alternating ours/theirs; ` +
    `${warmup} warm-up + ${steps} timed steps per run (tfjs-cpu: full only, 1 + ${cpuSteps}); ` +
    `lowrank on ${threads} thread(s)${torch ? `, PyTorch from ${torchDir} on ${threads}` : ', no PyTorch'}`);
  const runs: PeerRun[] = [];
  const failures: string[] = [];
  const attempt = async (label: string, fn: () => Promise<PeerRun>): Promise<void> => {
    process.stderr.write(`  ${label}...\n`);
    try {
      const r = await fn();
      runs.push(r);
      process.stderr.write(`    median ${fmtMs(r.medianMs)} ms\n`);
    } catch (e) {
      failures.push(`${label}: ${(e as Error).message}`);
      process.stderr.write(`    failed: ${(e as Error).message}\n`);
    }
  };
  for (let round = 1; round <= rounds; round++) {
    for (const mode of modes) {
      await attempt(`round ${round}/${rounds}: lowrank ${mode}`, () => runOurs(backend, mode, steps, warmup));
      if (baseline) await attempt(`round ${round}/${rounds}: lowrank-baseline ${mode}`, () => runOurs(backend, mode, steps, warmup, baseline, 'lowrank-baseline'));
      if (relaxed) await attempt(`round ${round}/${rounds}: lowrank-relaxed ${mode}`, () => runOurs(backend, mode, steps, warmup, relaxed, 'lowrank-relaxed'));
      if (tfjs) await attempt(`round ${round}/${rounds}: tfjs-wasm ${mode}`, () => runTfjs(dir, 'wasm', mode, steps, warmup));
      if (torch) {
        await attempt(`round ${round}/${rounds}: lowrank ${mode} (again, next to torch)`, () => runOurs(backend, mode, steps, warmup));
        await attempt(`round ${round}/${rounds}: torch ${mode}`, () => runTorch(torchDir, mode, steps, warmup, threads));
      }
      if (tfjsCpu && mode === 'full') {
        await attempt(`round ${round}/${rounds}: lowrank ${mode} (again, next to tfjs-cpu)`, () => runOurs(backend, mode, steps, warmup));
        await attempt(`round ${round}/${rounds}: tfjs-cpu ${mode}`, () => runTfjs(dir, 'cpu', mode, cpuSteps, 1));
      }
    }
  }
  const rows = peerRows(runs);
  console.log(formatTable(
    ['engine', 'W2 mode', 'backend', 'backend mode', 'precision', 'threads', 'runs', 'median ms', 'per-run medians', 'ours/this'],
    rows.map((r) => [
      r.engine, r.trainMode, r.backend, r.mode, r.precision, r.threads === null ? '?' : String(r.threads), String(r.runs), fmtMs(r.medianMs), r.runMedians.map(fmtMs).join(' '),
      r.oursOverThis === null ? 'n/a' : fmtRatio(r.oursOverThis),
    ]),
    [0, 1, 2, 3, 4, 8],
  ));
  console.log('ours/this < 1: lowrank is faster. Each median is the median of per-run medians.');
  for (const f of failures) console.log(`failed: ${f}`);
  return rows;
}
