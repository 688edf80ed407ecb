// The cpu attention kernel, causal, against a float64 reference over random shapes, including
// more queries than keys (tq > tk: the op refuses it, the kernel contract defines it), where the
// first queries see no key and their output row is zero. The row kernel used to zero those rows
// from index `last + 1 < 0`, writing into the previous row: the last row of the head before came
// out wrong (bh > 1). The gpu modes are checked against the same rule in test/gpu.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { getBackend, getNumThreads, setNumThreads } from '@lowrank/core';

/** softmax(q k^T scale) v with query i seeing keys j <= i + tk - tq; rows with no key are 0. */
function reference(q: number[], k: number[], v: number[], bh: number, tq: number, tk: number, dk: number, dv: number): number[] {
  const scale = 1 / Math.sqrt(dk);
  const out: number[] = [];
  for (let h = 0; h < bh; h++) {
    for (let i = 0; i < tq; i++) {
      const last = i + tk - tq;
      const s: number[] = [];
      for (let j = 0; j <= last; j++) {
        let d = 0;
        for (let c = 0; c < dk; c++) d += q[(h * tq + i) * dk + c] * k[(h * tk + j) * dk + c];
        s.push(d * scale);
      }
      const m = Math.max(...s);
      const e = s.map((x) => Math.exp(x - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let c = 0; c < dv; c++) {
        let a = 0;
        for (let j = 0; j <= last; j++) a += (e[j] / z) * v[(h * tk + j) * dv + c];
        out.push(a);
      }
    }
  }
  return out;
}

const shapes = fc.record({
  bh: fc.integer({ min: 1, max: 3 }), tq: fc.integer({ min: 1, max: 7 }), tk: fc.integer({ min: 1, max: 7 }),
  dk: fc.integer({ min: 1, max: 5 }), dv: fc.integer({ min: 1, max: 5 }), seed: fc.integer({ min: 0, max: 1000 }),
});

test('the cpu causal attention kernel matches a float64 reference for any tq, tk (queries before every key give 0), on 1 and 2 threads', () => {
  const threads = getNumThreads();
  try {
    fc.assert(fc.property(shapes, ({ bh, tq, tk, dk, dv, seed }) => {
      const vals = (n: number, s: number): number[] => Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + s + seed));
      const q = vals(bh * tq * dk, 1);
      const k = vals(bh * tk * dk, 2);
      const v = vals(bh * tk * dv, 3);
      const want = reference(q, k, v, bh, tq, tk, dk, dv);
      const runs = [1, 2].map((n) => {
        setNumThreads(n);
        const cpu = getBackend('cpu');
        const up = (x: number[]): unknown => cpu.upload(x, 'float32');
        const { out } = cpu.attention({
          inputs: { q: up(q), k: up(k), v: up(v) }, attrs: { bh, tq, tk, dk, dv, scale: 1 / Math.sqrt(dk), causal: true },
        });
        return Array.from(cpu.download(out, 'float32', bh * tq * dv));
      });
      runs[0].forEach((x, i) => assert.ok(Math.abs(x - want[i]) <= 1e-5, `[${bh}, ${tq}, ${tk}] index ${i}: ${x}, expected ${want[i]}`));
      assert.deepEqual(runs[1], runs[0], 'same bits on 2 threads');
    }), { numRuns: 200 });
  } finally {
    setNumThreads(threads);
  }
});
