/**
 * W1: C = A @ B in float32 for square n x n matrices, on each requested backend.
 * `npm run bench -- matmul --backends cpu,gpu --sizes 256,512,1024 --max-time 2 --threads 1,2`
 * (--threads: cpu thread counts to run, one row each; default the pool's count).
 * The timed function ends with a readback (dataSync), so asynchronous devices
 * are timed to completion. Reports the median of Benchmark.js's samples.
 */
import Benchmark from 'benchmark';
import {
  getBackend, getNumThreads, listBackends, matmul, memory, randn, setNumThreads, type Backend, type Tensor,
} from '@lowrank/core';
import { expandGpuBackends } from './gpu-modes.ts';

export interface MatmulRow {
  backend: string;
  mode: string;
  precision: string;
  n: number;
  /** cpu threads (1 for other backends). */
  threads: number;
  medianMs: number;
  gflops: number;
  launchesPerIter: number;
  readbacksPerIter: number;
  samples: number;
}

export interface MatmulOptions {
  backends: string[];
  sizes: number[];
  /** Seconds Benchmark.js may spend per case. */
  maxTime: number;
  minSamples: number;
  /** cpu thread counts; each cpu case runs once per count. */
  threads: number[];
}

function option(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

export function parseArgs(args: readonly string[]): MatmulOptions {
  const list = (s: string | undefined, fallback: string): string[] => (s ?? fallback).split(',').map((x) => x.trim()).filter(Boolean);
  return {
    backends: list(option(args, 'backends'), 'cpu'),
    sizes: list(option(args, 'sizes'), '256,512,1024').map(Number),
    maxTime: Number(option(args, 'max-time') ?? 3),
    minSamples: Number(option(args, 'min-samples') ?? 5),
    threads: list(option(args, 'threads'), String(getNumThreads())).map(Number),
  };
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function precisionOf(b: Backend): string {
  const p = (b as Backend & { precision?: unknown }).precision;
  return typeof p === 'string' ? p : 'single';
}

/** Times one (backend, n) case. */
export function benchCase(backendName: string, n: number, opts: Pick<MatmulOptions, 'maxTime' | 'minSamples'>): MatmulRow {
  const backend = getBackend(backendName);
  const a = randn([n, n], { backend: backendName });
  const b = randn([n, n], { backend: backendName });
  const step = (): void => {
    const c: Tensor = matmul(a, b);
    c.dataSync();
    c.dispose();
  };
  // Launches and readbacks of one iteration (also warms kernel caches).
  const before = memory(backendName);
  step();
  const after = memory(backendName);
  const bench = new Benchmark(`${backendName} n=${n}`, step, { maxTime: opts.maxTime, minSamples: opts.minSamples });
  bench.run();
  if (bench.error) throw bench.error;
  a.dispose();
  b.dispose();
  const medianS = median(bench.stats.sample as number[]);
  return {
    backend: backendName,
    mode: backend.mode,
    precision: precisionOf(backend),
    n,
    threads: backend.mode === 'cpu' ? getNumThreads() : 1,
    medianMs: medianS * 1e3,
    gflops: (2 * n ** 3) / medianS / 1e9,
    launchesPerIter: after.kernelLaunches - before.kernelLaunches,
    readbacksPerIter: after.readbacks - before.readbacks,
    samples: bench.stats.sample.length,
  };
}

export function formatTable(rows: readonly MatmulRow[]): string {
  const header = ['backend', 'mode', 'precision', 'n', 'threads', 'median ms', 'GFLOP/s', 'launches/iter', 'readbacks/iter', 'samples'];
  const cells = rows.map((r) => [
    r.backend, r.mode, r.precision, String(r.n), String(r.threads), r.medianMs.toFixed(2), r.gflops.toFixed(2),
    String(r.launchesPerIter), String(r.readbacksPerIter), String(r.samples),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]): string => c.map((v, i) => (i < 3 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

export function run(args: string[]): MatmulRow[] {
  const opts = parseArgs(args);
  const backends = expandGpuBackends(opts.backends);
  const registered = listBackends();
  const rows: MatmulRow[] = [];
  console.log(`W1 matmul: C = A @ B, float32, n in ${opts.sizes.join(', ')}; median of Benchmark.js samples, readback inside the timed region`);
  for (const name of backends) {
    if (!registered.includes(name)) {
      console.log(`skipping '${name}': no such backend registered (registered: ${registered.join(', ')})`);
      continue;
    }
    if (!getBackend(name).hasStorage) {
      console.log(`skipping '${name}': it holds no values to compute`);
      continue;
    }
    const counts = getBackend(name).mode === 'cpu' ? opts.threads : [1];
    for (const n of opts.sizes) {
      for (const t of counts) {
        if (getBackend(name).mode === 'cpu') setNumThreads(t);
        rows.push(benchCase(name, n, opts));
      }
    }
  }
  console.log(formatTable(rows));
  return rows;
}
