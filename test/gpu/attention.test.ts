import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend, type Backend } from '@lowrank/core';
import { lcg, mismatch, randArray, runOn } from './harness.ts';
import { announceModes, backendFor, modesUnderTest } from './modes.ts';

announceModes();

const cpu = new CpuBackend('cpu-attention');

/**
 * [bh, tq, tk, dk, dv, causal]: square and cached (tq < tk) causal rows, odd head sizes, and
 * more queries than keys (tq > tk: the first rows see no key; their output is 0).
 */
const CASES: [number, number, number, number, number, boolean][] = [
  [3, 9, 9, 8, 8, true],
  [2, 3, 7, 8, 12, true],
  [2, 5, 7, 12, 4, false],
  [1, 4, 6, 3, 5, true],
  [2, 6, 4, 4, 8, true],
];

for (const mode of modesUnderTest) {
  describe(`gpu attention forward (${mode})`, () => {
    test('matches cpu, the fused GL kernel included', () => {
      const be = backendFor(mode);
      const rnd = lcg(13);
      for (const [bh, tq, tk, dk, dv, causal] of CASES) {
        const scale = 1 / Math.sqrt(dk);
        const inputs = [bh * tq * dk, bh * tk * dk, bh * tk * dv].map((n) => ({ values: randArray(n, rnd), dtype: 'float32' as const }));
        const run = (b: Backend, d: unknown[]) => {
          const r = b.attention({ inputs: { q: d[0], k: d[1], v: d[2] }, attrs: { bh, tq, tk, dk, dv, scale, causal } });
          return [r.out, r.lse];
        };
        const [go, gl] = runOn(be, inputs, run, [bh * tq * dv, bh * tq]);
        const [co, cl] = runOn(cpu, inputs, run, [bh * tq * dv, bh * tq]);
        const what = `attention bh=${bh} tq=${tq} tk=${tk} dk=${dk} dv=${dv} causal=${causal}`;
        assert.equal(mismatch(go, co), null, `${what}: out`);
        assert.equal(mismatch(gl, cl), null, `${what}: lse`);
      }
      if (mode === 'headlessgl') assert.ok((be.dispatchCounts.get('attention4') ?? 0) > 0, 'the fused GL attention never ran');
    });

    test('backward (dq, dk, dv) matches cpu, P recomputed in the GL kernels', () => {
      const be = backendFor(mode);
      const rnd = lcg(17);
      const need = { q: true, k: true, v: true };
      for (const [bh, tq, tk, dk, dv, causal] of CASES) {
        const scale = 1 / Math.sqrt(dk);
        const sizes = [bh * tq * dk, bh * tk * dk, bh * tk * dv, bh * tq * dv];
        const inputs = sizes.map((n) => ({ values: randArray(n, rnd), dtype: 'float32' as const }));
        const run = (b: Backend, d: unknown[]) => {
          const attrs = { bh, tq, tk, dk, dv, scale, causal };
          const f = b.attention({ inputs: { q: d[0], k: d[1], v: d[2] }, attrs });
          const g = b.attentionGrad({ inputs: { q: d[0], k: d[1], v: d[2], out: f.out, lse: f.lse, dout: d[3] }, attrs: { ...attrs, need } });
          b.free(f.out);
          b.free(f.lse);
          return [g.dq, g.dk, g.dv];
        };
        const got = runOn(be, inputs, run, sizes.slice(0, 3));
        const want = runOn(cpu, inputs, run, sizes.slice(0, 3));
        ['dq', 'dk', 'dv'].forEach((name, i) => {
          assert.equal(mismatch(got[i], want[i]), null, `attention grad bh=${bh} tq=${tq} tk=${tk} dk=${dk} dv=${dv} causal=${causal}: ${name}`);
        });
      }
      if (mode === 'headlessgl') assert.ok((be.dispatchCounts.get('attentionDv4') ?? 0) > 0, 'the fused GL dV never ran');
      assert.equal(be.liveBuffers, 0, 'device buffers leaked');
    });
  });
}
