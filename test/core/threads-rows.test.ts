import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { CpuBackend } from '../../packages/core/src/backends/cpu/index.ts';
import { inArena } from '../../packages/core/src/backends/cpu/arena.ts';
import type { HalfArr } from '../../packages/core/src/backends/cpu/half.ts';
import { PARALLEL_ROWS_MIN } from '../../packages/core/src/backends/cpu/rows.ts';
import { disposeThreads, getNumThreads, parallelJobs, setNumThreads } from '../../packages/core/src/backends/cpu/threads.ts';

/** Values in +-[0.05, 1) times `scale`: never zero. */
function values(size: number, seed: number, scale = 1): number[] {
  const out = new Array<number>(size);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    out[i] = scale * (u < 0.5 ? -1 : 1) * (0.05 + 0.95 * (2 * (u % 0.5)));
  }
  return out;
}

const bits = (x: unknown): string => Buffer.from((x as Float32Array).buffer, (x as Float32Array).byteOffset, (x as Float32Array).byteLength).toString('base64');

/** Every row kernel of the backend on one input; the outputs as bit strings. */
function allKernels(be: CpuBackend, rows: number, cols: number, seed: number): Record<string, string> {
  const up = (n: number, s: number, scale = 1) => be.upload(values(n, s, scale), 'float32') as Float32Array;
  const n = rows * cols;
  const x = up(n, seed, 3);
  const dy = up(n, seed + 1);
  const w = up(cols, seed + 2);
  const b = up(cols, seed + 3);
  const targets = be.upload(Array.from({ length: rows }, (_, r) => (r % 7 === 3 ? -100 : (r * 31 + seed) % cols)), 'int32') as Int32Array;
  const out: Record<string, string> = {};
  const sm = be.softmax({ inputs: { x }, attrs: { rows, cols, log: false } });
  const lsm = be.softmax({ inputs: { x }, attrs: { rows, cols, log: true } });
  out.softmax = bits(sm);
  out.logSoftmax = bits(lsm);
  out.softmaxGrad = bits(be.softmaxGrad({ inputs: { y: sm, dy }, attrs: { rows, cols, log: false } }));
  out.logSoftmaxGrad = bits(be.softmaxGrad({ inputs: { y: lsm, dy }, attrs: { rows, cols, log: true } }));
  const one = be.upload([0.75], 'float32') as Float32Array;
  out.crossEntropy = bits(be.crossEntropy({ inputs: { logits: x, targets }, attrs: { rows, cols, ignoreIndex: -100, reduction: 'mean' } }));
  out.crossEntropyGrad = bits(be.crossEntropyGrad({
    inputs: { logits: x, targets, dy: one }, attrs: { rows, cols, ignoreIndex: -100, reduction: 'sum' },
  }));
  const ln = be.layerNorm({ inputs: { x, w, b }, attrs: { rows, cols, eps: 1e-5 } });
  out.layerNorm = [ln.y, ln.mean, ln.rstd].map(bits).join();
  const lng = be.layerNormGrad({
    inputs: { x, w, mean: ln.mean, rstd: ln.rstd, dy }, attrs: { rows, cols, need: { x: true, w: true, b: true } },
  });
  out.layerNormGrad = [lng.dx, lng.dw, lng.db].map(bits).join();
  const rms = be.rmsNorm({ inputs: { x, w }, attrs: { rows, cols, eps: 1e-6 } });
  out.rmsNorm = [rms.y, rms.rstd].map(bits).join();
  const rg = be.rmsNormGrad({ inputs: { x, w, rstd: rms.rstd, dy }, attrs: { rows, cols, need: { x: true, w: true } } });
  out.rmsNormGrad = [rg.dx, rg.dw].map(bits).join();
  out.silu = bits(be.unary({ inputs: { x }, attrs: { op: 'silu', size: n } }));
  out.siluGrad = bits(be.unaryGrad({ inputs: { x, y: null, dy }, attrs: { op: 'silu', size: n } }));
  const p = up(n, seed + 4);
  const m = up(n, seed + 5, 0.1);
  const v = be.upload(values(n, seed + 6).map((e) => e * e), 'float32') as Float32Array;
  for (const decoupled of [true, false]) {
    be.adamUpdate({
      inputs: { p, g: dy, m, v }, attrs: { size: n, hyper: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 3, decoupled } },
    });
  }
  out.adam = [p, m, v].map(bits).join();
  // Attention over [bh, t, d]: heads are the batch of its gemms, its softmax rows are split across threads.
  const t = 16 + (cols % 33);
  const [bh, d] = [Math.ceil(PARALLEL_ROWS_MIN / (t * t)) + (rows % 3), 32];
  const q = up(bh * t * d, seed + 7);
  const k = up(bh * t * d, seed + 8);
  const vv = up(bh * t * d, seed + 9);
  const at = be.attention({ inputs: { q, k, v: vv }, attrs: { bh, tq: t, tk: t, dk: d, dv: d, scale: 1 / Math.sqrt(d), causal: true } });
  out.attention = [at.out, at.lse].map(bits).join();
  const dout = up(bh * t * d, seed + 10);
  const ag = be.attentionGrad({
    inputs: { q, k, v: vv, out: at.out, lse: at.lse, dout },
    attrs: { bh, tq: t, tk: t, dk: d, dv: d, scale: 1 / Math.sqrt(d), causal: true, need: { q: true, k: true, v: true } },
  });
  out.attentionGrad = [ag.dq, ag.dk, ag.dv].map(bits).join();
  for (const op of ['add', 'sub', 'mul', 'div'] as const) {
    out[op] = bits(be.binary({ inputs: { a: x, b: dy }, attrs: { op, aShape: [rows, cols], bShape: [rows, cols], outShape: [rows, cols] } }));
    out[`${op} bias`] = bits(be.binary({ inputs: { a: x, b: w }, attrs: { op, aShape: [rows, cols], bShape: [cols], outShape: [rows, cols] } }));
  }
  out.sumRows = bits(be.reduce({ inputs: { x }, attrs: { op: 'sum', shape: [rows, cols], axes: [1] } }));
  out.sumColumns = bits(be.reduce({ inputs: { x }, attrs: { op: 'sum', shape: [rows, cols], axes: [0] } }));
  // [rows, cols] read as [h, rows, cols / h] (heads first, as attention permutes) and transposed: 4-D gathers run as row kernels.
  const h = cols % 2 === 0 ? 2 : 1;
  out.permute = bits(be.strided({ inputs: { x }, attrs: { outShape: [h, rows, cols / h, 1], strides: [cols / h, cols, 1, 1], offset: 0 } }));
  out.transpose = bits(be.strided({ inputs: { x }, attrs: { outShape: [cols, rows], strides: [1, cols], offset: 0 } }));
  assert.ok(inArena(x), 'the inputs live in the shared memory');
  return out;
}

describe('cpu row kernels on the thread pool', () => {
  const initial = getNumThreads();
  after(() => {
    setNumThreads(initial);
    disposeThreads();
  });

  test('softmax, crossEntropy, layerNorm, rmsNorm, SiLU, AdamW, attention, add/sub/mul/div, sums and permutes: the same bits on 1 and 2..4 threads (random shapes)', () => {
    const be = new CpuBackend('rows-test');
    const split = ['softmax', 'logSoftmax', 'crossEntropy', 'layerNorm', 'rmsNorm', 'silu', 'adamUpdate', 'attention', 'add', 'mul', 'reduce', 'strided'];
    const before = split.map(parallelJobs);
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 400 }), fc.integer({ min: 2, max: 300 }), fc.integer({ min: 2, max: 4 }), fc.integer({ min: 1, max: 1000 }),
      (rows, extra, threads, seed) => {
        // Enough work to cross the parallel threshold, with rows and columns of any size.
        const cols = Math.ceil(PARALLEL_ROWS_MIN / rows) + extra;
        setNumThreads(1);
        const ref = allKernels(be, rows, cols, seed);
        setNumThreads(threads);
        const got = allKernels(be, rows, cols, seed);
        for (const name of Object.keys(ref)) assert.equal(got[name], ref[name], `${name}: rows=${rows} cols=${cols} threads=${threads}`);
      }), { numRuns: 12 });
    split.forEach((name, i) => assert.ok(parallelJobs(name) > before[i], `${name} ran on the pool`));
  });

  test('a 16-bit weight lives in the shared memory and the gemm reads it there: the bits of its float32 widening on 1..4 threads', () => {
    const be = new CpuBackend('half-arena-test');
    const [m, k, n] = [96, 160, 200];
    const a = be.upload(values(m * k, 11), 'float32') as Float32Array;
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const w = be.upload(values(n * k, 12), dtype);
      assert.ok(inArena(w as Uint16Array), `${dtype} storage is in the shared memory`);
      const wide = be.cast({ inputs: { x: w }, attrs: { size: n * k, to: 'float32' } }) as Float32Array;
      setNumThreads(1);
      const ref = bits(be.matmul({ inputs: { a, b: wide }, attrs: { aShape: [m, k], bShape: [n, k], transA: false, transB: true, outShape: [m, n] } }));
      for (const threads of [1, 2, 3, 4]) {
        setNumThreads(threads);
        assert.equal(bits(be.matmul({
          inputs: { a, b: w as HalfArr }, attrs: { aShape: [m, k], bShape: [n, k], transA: false, transB: true, outShape: [m, n] },
        })), ref, `${dtype} on ${threads} threads`);
      }
    }
  });
});
