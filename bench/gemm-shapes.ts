// GFLOP/s of the float32 JS gemm vs the WebAssembly SIMD gemm, single thread.
// Run: node --import tsx bench/gemm-shapes.ts [--quick]
import { gemm } from '../packages/core/src/backends/cpu/gemm.ts';
import { gemmWasm, wasmGemmAvailable } from '../packages/core/src/backends/cpu/wasm-gemm.ts';

interface Case { label: string; batch: number; m: number; n: number; k: number; transA: boolean; transB: boolean }

const square = (n: number): Case[] => [{ label: `square ${n}`, batch: 1, m: n, n, k: n, transA: false, transB: false }];

/** A Linear [rows, fin] -> [rows, fout]: forward (NN), dX = dY W^T (NT), dW = X^T dY (TN). */
const linear = (name: string, rows: number, fin: number, fout: number): Case[] => [
  { label: `${name} fwd`, batch: 1, m: rows, n: fout, k: fin, transA: false, transB: false },
  { label: `${name} dX`, batch: 1, m: rows, n: fin, k: fout, transA: false, transB: true },
  { label: `${name} dW`, batch: 1, m: fin, n: fout, k: rows, transA: true, transB: false },
];

const CASES: Case[] = [
  ...square(256), ...square(512), ...square(1024),
  { label: 'square 512 TT', batch: 1, m: 512, n: 512, k: 512, transA: true, transB: true },
  ...linear('qkv 128->384', 1024, 128, 384),
  ...linear('fc 128->512', 1024, 128, 512),
  ...linear('proj 512->128', 1024, 512, 128),
  { label: 'lm_head x W^T', batch: 1, m: 1024, n: 65, k: 128, transA: false, transB: true },
  { label: 'lm_head dX', batch: 1, m: 1024, n: 128, k: 65, transA: false, transB: false },
  { label: 'lm_head dW', batch: 1, m: 65, n: 128, k: 1024, transA: true, transB: false },
  { label: 'x^T W^T (TT)', batch: 1, m: 1024, n: 384, k: 128, transA: true, transB: true },
  { label: 'attn q k^T', batch: 64, m: 64, n: 64, k: 32, transA: false, transB: true },
  { label: 'attn p v', batch: 64, m: 64, n: 32, k: 64, transA: false, transB: false },
];

function random(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/** Median and best milliseconds of fn over enough runs to fill ~budgetMs, after warm-up. */
function timeMs(fn: () => number, budgetMs: number): { median: number; best: number } {
  let sink = 0;
  for (let i = 0; i < 3; i++) sink += fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 5 || (performance.now() - start < budgetMs && times.length < 200)) {
    const t0 = performance.now();
    sink += fn();
    times.push(performance.now() - t0);
  }
  if (Number.isNaN(sink)) throw new Error('NaN in result');
  times.sort((a, b) => a - b);
  return { median: times[times.length >> 1], best: times[0] };
}

interface Rates { js: number; jsBest: number; wasm: number; wasmBest: number }

function run(c: Case, budgetMs: number): Rates {
  const { batch, m, n, k, transA, transB } = c;
  const A = random(batch * m * k, 1);
  const B = random(batch * k * n, 2);
  const [sAm, sAk] = transA ? [1, m] : [k, 1];
  const [sBk, sBn] = transB ? [1, k] : [n, 1];
  const aOffs = Array.from({ length: batch }, (_, i) => i * m * k);
  const bOffs = Array.from({ length: batch }, (_, i) => i * k * n);
  const C = new Float32Array(batch * m * n);
  const flops = 2 * batch * m * n * k;
  const js = timeMs(() => {
    for (let i = 0; i < batch; i++) gemm(m, n, k, A, aOffs[i], sAm, sAk, B, bOffs[i], sBk, sBn, C, i * m * n);
    return C[C.length - 1];
  }, budgetMs);
  const wasm = timeMs(() => {
    gemmWasm(m, n, k, A, aOffs, sAm, sAk, B, bOffs, sBk, sBn, C);
    return C[C.length - 1];
  }, budgetMs);
  const rate = (ms: number): number => flops / ms / 1e6;
  return { js: rate(js.median), jsBest: rate(js.best), wasm: rate(wasm.median), wasmBest: rate(wasm.best) };
}

if (!wasmGemmAvailable()) throw new Error('WebAssembly SIMD is not available in this runtime');
const budget = process.argv.includes('--quick') ? 150 : 600;
console.log(`backend cpu, float32, single thread, node ${process.version}; GFLOP/s, median (best)`);
console.log('| case | shape (batch x MxK * KxN) | trans | JS gemm | wasm gemm | speed-up (median) |');
console.log('|---|---|---|---:|---:|---:|');
for (const c of CASES) {
  const r = run(c, budget);
  const shape = `${c.batch > 1 ? `${c.batch} x ` : ''}${c.m}x${c.k} * ${c.k}x${c.n}`;
  const trans = `${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'}`;
  console.log(`| ${c.label} | ${shape} | ${trans} | ${r.js.toFixed(2)} (${r.jsBest.toFixed(2)}) | ${r.wasm.toFixed(2)} (${r.wasmBest.toFixed(2)}) | ${(r.wasm / r.js).toFixed(1)}x |`);
}
