import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { CpuBackend } from '../../packages/core/src/backends/cpu/index.ts';
import { isHalf, toHalf, widen } from '../../packages/core/src/backends/cpu/half.ts';
import { gemmWasm, planTiles } from '../../packages/core/src/backends/cpu/wasm-gemm.ts';
import { geluWasm } from '../../packages/core/src/backends/cpu/wasm-activations.ts';
import {
  disposeThreads, failInWorker, getNumThreads, setNumThreads, workerCount,
} from '../../packages/core/src/backends/cpu/threads.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Values in +-[0.05, 1): never zero. */
function data(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    out[i] = (u < 0.5 ? -1 : 1) * (0.05 + 0.95 * (2 * (u % 0.5)));
  }
  return out;
}

const sameBits = (a: Float32Array, b: Float32Array): boolean =>
  a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

/** Runs a script in a fresh Node (tsx loaded) and returns its result. */
function node(script: string, env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000,
  });
}

describe('cpu thread pool', () => {
  const initial = getNumThreads();
  after(() => {
    setNumThreads(initial);
    disposeThreads();
  });

  test('the tile plan covers every output element exactly once', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 90 }), fc.integer({ min: 1, max: 90 }),
      fc.integer({ min: 1, max: 6 }), (batches, m, n, threads) => {
        const seen = new Uint8Array(batches * m * n);
        for (const t of planTiles(batches, m, n, threads)) {
          for (let i = t.r0; i < t.r1; i++) for (let j = t.c0; j < t.c1; j++) seen[(t.bi * m + i) * n + j]++;
        }
        assert.ok(seen.every((c) => c === 1));
      }));
  });

  test('gemm results are bit-identical for 1..4 threads (random shapes, transposes, batches; a 16-bit B gives the bits of its float32 widening)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 130 }), fc.integer({ min: 1, max: 130 }), fc.integer({ min: 1, max: 300 }),
        fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 5 }), fc.constantFrom('float32', 'bfloat16', 'float16'),
        fc.integer({ min: 2, max: 4 }), fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (m, n, k, transA, transB, batches, bType, threads, seed) => {
          const A = data(batches * m * k, seed);
          const b32 = data(batches * k * n, seed ^ 0x5bd1e995);
          const B = bType === 'float32' ? b32 : toHalf(bType, b32);
          const aOffs = Array.from({ length: batches }, (_, i) => i * m * k);
          const bOffs = Array.from({ length: batches }, (_, i) => i * k * n);
          const [sAm, sAk] = transA ? [1, m] : [k, 1];
          const [sBk, sBn] = transB ? [1, k] : [n, 1];
          const one = new Float32Array(batches * m * n);
          const many = new Float32Array(batches * m * n);
          assert.equal(gemmWasm(m, n, k, A, aOffs, sAm, sAk, B, bOffs, sBk, sBn, one, 1), true);
          setNumThreads(threads);
          assert.equal(gemmWasm(m, n, k, A, aOffs, sAm, sAk, B, bOffs, sBk, sBn, many, threads), true);
          assert.ok(sameBits(one, many), `m=${m} n=${n} k=${k} batches=${batches} threads=${threads}`);
          if (isHalf(B)) {
            const wide = new Float32Array(batches * m * n);
            gemmWasm(m, n, k, A, aOffs, sAm, sAk, widen(B), bOffs, sBk, sBn, wide, 1);
            assert.ok(sameBits(one, wide), `${bType} B vs its float32 widening, m=${m} n=${n} k=${k}`);
          }
        }),
      { numRuns: 40 },
    );
  });

  test('backend matmul, attention and gelu above the thresholds: same bits on 1 and 2..4 threads', () => {
    const be = new CpuBackend('threads-test');
    const run = () => {
      const a = data(256 * 384, 1);
      const w = data(512 * 384, 2);
      const mm = be.matmul({
        inputs: { a, b: w }, attrs: { aShape: [256, 384], bShape: [512, 384], transA: false, transB: true, outShape: [256, 512] },
      }) as Float32Array;
      const [bh, t, d] = [8, 64, 32];
      const q = data(bh * t * d, 3);
      const k = data(bh * t * d, 4);
      const v = data(bh * t * d, 5);
      const at = be.attention({ inputs: { q, k, v }, attrs: { bh, tq: t, tk: t, dk: d, dv: d, scale: 1 / Math.sqrt(d), causal: true } }).out as Float32Array;
      const g = new Float32Array(300_001);
      geluWasm(data(300_001, 6), g);
      return [mm, at, g];
    };
    setNumThreads(1);
    const ref = run();
    for (const threads of [2, 3, 4]) {
      setNumThreads(threads);
      run().forEach((x, i) => assert.ok(sameBits(x, ref[i]), `output ${i} on ${threads} threads`));
    }
  });

  test('an error inside a worker reaches the caller naming the kernel, and the pool keeps working', () => {
    setNumThreads(2);
    assert.throws(() => failInWorker('matmul'), /matmul: failed in the cpu thread pool \(worker 1: deliberate failure \(test hook\)\)/);
    const A = data(64 * 64, 7);
    const one = new Float32Array(64 * 64);
    const two = new Float32Array(64 * 64);
    gemmWasm(64, 64, 64, A, [0], 64, 1, A, [0], 64, 1, one, 1);
    gemmWasm(64, 64, 64, A, [0], 64, 1, A, [0], 64, 1, two, 2);
    assert.ok(sameBits(one, two));
  });

  test('dispose() on the backend ends the workers; the next parallel kernel starts them again', () => {
    setNumThreads(3);
    const A = data(128 * 128, 8);
    const C = new Float32Array(128 * 128);
    gemmWasm(128, 128, 128, A, [0], 128, 1, A, [0], 128, 1, C, 3);
    assert.equal(workerCount(), 2);
    new CpuBackend('disposed').dispose();
    assert.equal(workerCount(), 0);
    gemmWasm(128, 128, 128, A, [0], 128, 1, A, [0], 128, 1, C, 3);
    assert.equal(workerCount(), 2);
    setNumThreads(1);
    assert.equal(workerCount(), 0);
  });

  test('a process exits normally with the pool idle (workers unref\'d), LOWRANK_NUM_THREADS sets the count', () => {
    const r = node(`
      import { matmul, randn, getNumThreads } from '@lowrank/core';
      import { workerCount } from './packages/core/src/backends/cpu/threads.ts';
      const y = matmul(randn([256, 256]), randn([256, 256]));
      console.log(JSON.stringify({ threads: getNumThreads(), workers: workerCount(), size: y.size }));
    `, { LOWRANK_NUM_THREADS: '3' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim()), { threads: 3, workers: 2, size: 65536 });
  });

  test('a bad LOWRANK_NUM_THREADS is an error naming it', () => {
    const r = node(`
      import { getNumThreads } from '@lowrank/core';
      try { getNumThreads(); } catch (e) { console.log(e.message); }
    `, { LOWRANK_NUM_THREADS: 'many' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /LOWRANK_NUM_THREADS: expected a positive integer, got 'many'/);
  });

  test('setNumThreads rejects counts outside [1, 64]', () => {
    assert.throws(() => setNumThreads(0), /setNumThreads: expected an integer in \[1, 64\], got 0/);
    assert.throws(() => setNumThreads(2.5), /setNumThreads/);
  });
});
