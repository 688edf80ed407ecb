/**
 * Kernel micro-benchmarks at W2's shapes, with Benchmark.js, per backend and
 * gpu.js mode: matmul, softmax, GELU (and on cpu its JS-loop baseline), layerNorm,
 * causal attention and one AdamW step over W2's parameters. Each timed call ends with a readback.
 *
 *   npm run bench -- kernels [--backends cpu,gpu] [--gpu-modes webasm,cpu] [--max-time 1]
 * (`gpu` means one row per gpu.js mode that starts here, as in the matmul suite.)
 */
import Benchmark from 'benchmark';
import { geluInto } from '../packages/core/src/backends/cpu/gelu.ts';
import {
  gelu, getBackend, layerNorm, listBackends, matmul, memory, ones, randn, scaledDotProductAttention, softmax, tidy, zeros,
  type Tensor,
} from '@lowrank/core';
import { AdamW, TransformerLM, w2 } from '@lowrank/nn';
import { backendInfo, fmtMs, formatTable, median, option } from './common.ts';
import { expandGpuBackends } from './gpu-modes.ts';

export interface KernelRow {
  kernel: string;
  shape: string;
  backend: string;
  mode: string;
  precision: string;
  medianMs: number;
  /** GFLOP/s for matmul and attention, GB/s (bytes read + written) for the rest. */
  rate: number;
  rateUnit: 'GFLOP/s' | 'GB/s';
  launchesPerIter: number;
  readbacksPerIter: number;
  samples: number;
}

interface KernelCase {
  kernel: string;
  shape: string;
  /** FLOPs (for GFLOP/s) or bytes moved (for GB/s) per call. */
  work: number;
  unit: KernelRow['rateUnit'];
  /** Runs on this backend only (a reference path of that backend). */
  only?: string;
  setup(backend: string): { fn: () => void; dispose: () => void };
}

const B = 16;
const T = 64;
const C = 128;
const H = 4;
const D = C / H;
const N = B * T;

function disposeAll(ts: readonly Tensor[]): void {
  for (const t of ts) t.dispose();
}

/** The cases, at the W2 training shapes (batch 16 x 64 tokens, 128 wide, 4 heads). */
export const CASES: readonly KernelCase[] = [
  {
    kernel: 'matmul', shape: `[${N}, ${C}] @ [${C}, ${4 * C}]`, work: 2 * N * C * 4 * C, unit: 'GFLOP/s',
    setup(backend) {
      const a = randn([N, C], { backend });
      const b = randn([C, 4 * C], { backend });
      return { fn: () => tidy(() => { matmul(a, b).dataSync(); }), dispose: () => disposeAll([a, b]) };
    },
  },
  {
    kernel: 'softmax', shape: `[${B}, ${H}, ${T}, ${T}] over the last axis`, work: 2 * 4 * B * H * T * T, unit: 'GB/s',
    setup(backend) {
      const x = randn([B, H, T, T], { backend });
      return { fn: () => tidy(() => { softmax(x, -1).dataSync(); }), dispose: () => disposeAll([x]) };
    },
  },
  {
    // The MLP activation at W2's hidden width: on cpu the WebAssembly SIMD kernel, split across the pool.
    kernel: 'gelu', shape: `[${N}, ${4 * C}]`, work: 2 * 4 * N * 4 * C, unit: 'GB/s',
    setup(backend) {
      const x = randn([N, 4 * C], { backend });
      return { fn: () => tidy(() => { gelu(x).dataSync(); }), dispose: () => disposeAll([x]) };
    },
  },
  {
    // What the cpu backend ran before the SIMD kernel (and runs without SIMD): the speed-up's baseline.
    kernel: 'gelu (JS loop)', shape: `[${N}, ${4 * C}]`, work: 2 * 4 * N * 4 * C, unit: 'GB/s', only: 'cpu',
    setup() {
      const x = Float32Array.from({ length: N * 4 * C }, (_, i) => Math.sin(i) * 3);
      const out = new Float32Array(x.length);
      return { fn: () => geluInto(x, out, x.length), dispose: () => {} };
    },
  },
  {
    kernel: 'layerNorm', shape: `[${N}, ${C}] (+ weight, bias)`, work: 2 * 4 * N * C, unit: 'GB/s',
    setup(backend) {
      const x = randn([N, C], { backend });
      const w = ones([C], { backend });
      const b = zeros([C], { backend });
      return { fn: () => tidy(() => { layerNorm(x, w, b, 1e-5).dataSync(); }), dispose: () => disposeAll([x, w, b]) };
    },
  },
  {
    kernel: 'attention', shape: `q, k, v [${B}, ${H}, ${T}, ${D}], causal`, work: 2 * 2 * B * H * T * T * D, unit: 'GFLOP/s',
    setup(backend) {
      const q = randn([B, H, T, D], { backend });
      const k = randn([B, H, T, D], { backend });
      const v = randn([B, H, T, D], { backend });
      return {
        fn: () => tidy(() => { scaledDotProductAttention(q, k, v, { causal: true }).dataSync(); }),
        dispose: () => disposeAll([q, k, v]),
      };
    },
  },
  {
    kernel: 'AdamW step', shape: 'every W2 parameter (812,416)', work: 4 * 7 * 812_416, unit: 'GB/s',
    setup(backend) {
      const model = new TransformerLM(w2(65), { backend });
      const params = model.parameters();
      for (const p of params) p.grad = randn(p.shape, { backend, std: 0.01 });
      const opt = new AdamW(params, { lr: 3e-4, weightDecay: 0.01 });
      const smallest = params.reduce((a, p) => (p.size < a.size ? p : a));
      return {
        fn: () => {
          opt.step();
          smallest.dataSync(); // the updates are done once a parameter reads back
        },
        dispose: () => {
          opt.zeroGrad();
          for (const p of params) {
            for (const s of Object.values(opt.getState(p) ?? {})) if (typeof s !== 'number') s.dispose();
            p.dispose();
          }
        },
      };
    },
  },
];

function benchCase(c: KernelCase, backend: string, maxTime: number): KernelRow {
  const { fn, dispose } = c.setup(backend);
  try {
    const before = memory(backend);
    fn(); // also compiles and caches kernels
    const after = memory(backend);
    const bench = new Benchmark(`${c.kernel} ${backend}`, fn, { maxTime, minSamples: 5 });
    bench.run();
    if (bench.error) throw bench.error;
    const s = median(bench.stats.sample as number[]);
    return {
      kernel: c.kernel, shape: c.shape, ...backendInfo(backend), medianMs: s * 1e3,
      rate: c.work / s / 1e9, rateUnit: c.unit,
      launchesPerIter: after.kernelLaunches - before.kernelLaunches, readbacksPerIter: after.readbacks - before.readbacks,
      samples: bench.stats.sample.length,
    };
  } finally {
    dispose();
  }
}

/** Backends to run: `gpu` expands to one backend per gpu.js mode that starts here; `--gpu-modes a,b` adds `gpu:a`, `gpu:b`. */
function backendsFrom(args: readonly string[]): string[] {
  const list = (s: string | undefined): string[] => (s ?? '').split(',').map((x) => x.trim()).filter(Boolean);
  const requested = [...list(option(args, 'backends') ?? 'cpu,gpu'), ...list(option(args, 'gpu-modes')).map((m) => `gpu:${m}`)];
  const names: string[] = [];
  for (const name of requested) {
    try {
      names.push(...expandGpuBackends([name]));
    } catch (e) {
      console.log(`skipping '${name}': ${(e as Error).message}`);
    }
  }
  return names;
}

export function formatKernelTable(rows: readonly KernelRow[]): string {
  return formatTable(
    ['kernel', 'shape', 'backend', 'mode', 'precision', 'median ms', 'rate', 'launches/iter', 'readbacks/iter', 'samples'],
    rows.map((r) => [
      r.kernel, r.shape, r.backend, r.mode, r.precision, fmtMs(r.medianMs), `${r.rate.toFixed(2)} ${r.rateUnit}`,
      String(r.launchesPerIter), String(r.readbacksPerIter), String(r.samples),
    ]),
    [0, 1, 2, 3, 4],
  );
}

export function run(args: string[]): KernelRow[] {
  const maxTime = Number(option(args, 'max-time') ?? 1);
  const only = option(args, 'kernels')?.split(',').map((s) => s.trim());
  const rows: KernelRow[] = [];
  console.log('Kernel micro-benchmarks at W2 shapes (Benchmark.js median; each call ends with a readback)');
  for (const name of backendsFrom(args)) {
    if (!listBackends().includes(name)) {
      console.log(`skipping '${name}': no such backend (registered: ${listBackends().join(', ')})`);
      continue;
    }
    let b;
    try {
      b = getBackend(name);
    } catch (e) {
      console.log(`skipping '${name}': ${(e as Error).message}`);
      continue;
    }
    if (!b.hasStorage) {
      console.log(`skipping '${name}': it holds no values to compute`);
      continue;
    }
    for (const c of CASES) {
      if ((only && !only.includes(c.kernel)) || (c.only && c.only !== name)) continue;
      process.stderr.write(`  ${c.kernel} on ${name} (${b.mode})...\n`);
      rows.push(benchCase(c, name, maxTime));
    }
  }
  console.log(formatKernelTable(rows));
  return rows;
}
