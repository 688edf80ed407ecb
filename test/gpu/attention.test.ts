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

/** [B, T, H, D] values -> [B, H, T, D] (toHeadMajor) or back. */
function swap(x: number[], B: number, T: number, H: number, D: number, toHeadMajor: boolean): number[] {
  const out = new Array<number>(x.length);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let d = 0; d < D; d++) {
    const thd = ((b * T + t) * H + h) * D + d;
    const htd = ((b * H + h) * T + t) * D + d;
    if (toHeadMajor) out[htd] = x[thd];
    else out[thd] = x[htd];
  }
  return out;
}

/** [B, H, tq, tk, dk, dv, causal]: fused GL sizes (cached rows too) and head sizes the GL kernels do not serve (permuted around). */
const HEAD_CASES: [number, number, number, number, number, number, boolean][] = [
  [2, 3, 5, 5, 8, 8, true],
  [1, 2, 3, 6, 4, 12, true],
  [2, 2, 4, 4, 12, 4, false],
  [2, 2, 3, 3, 3, 5, true],
];

for (const mode of modesUnderTest) {
  describe(`gpu attention, [B, T, heads, D] layout (${mode})`, () => {
    test('forward and backward match cpu, and equal the [bh, T, D] kernels on permuted inputs', () => {
      const be = backendFor(mode);
      const rnd = lcg(29);
      const need = { q: true, k: true, v: true };
      for (const [B, H, tq, tk, dk, dv, causal] of HEAD_CASES) {
        const bh = B * H;
        const attrs = { bh, tq, tk, dk, dv, scale: 1 / Math.sqrt(dk), causal };
        const dims: [number, number][] = [[tq, dk], [tk, dk], [tk, dv], [tq, dv]];
        const values = dims.map(([t, d]) => randArray(B * t * d * H, rnd));
        const run = (heads?: number) => (b: Backend, d: unknown[]) => {
          const a = { ...attrs, heads };
          const f = b.attention({ inputs: { q: d[0], k: d[1], v: d[2] }, attrs: a });
          const g = b.attentionGrad({ inputs: { q: d[0], k: d[1], v: d[2], out: f.out, lse: f.lse, dout: d[3] }, attrs: { ...a, need } });
          return [f.out, f.lse, g.dq, g.dk, g.dv];
        };
        const sizes = [bh * tq * dv, bh * tq, bh * tq * dk, bh * tk * dk, bh * tk * dv];
        const inputs = values.map((v) => ({ values: v, dtype: 'float32' as const }));
        const strided = be.dispatchCounts.get('strided') ?? 0;
        const got = runOn(be, inputs, run(H), sizes);
        if (mode === 'headlessgl' && dk % 4 === 0 && dv % 4 === 0) {
          assert.equal(be.dispatchCounts.get('strided') ?? 0, strided, 'the GL kernels read the heads layout in place, no permute');
        }
        const want = runOn(cpu, inputs, run(H), sizes);
        const permuted = values.map((v, i) => ({ values: swap(Array.from(v), B, dims[i][0], H, dims[i][1], true), dtype: 'float32' as const }));
        const plain = runOn(cpu, permuted, run(), sizes);
        const outDims: [number, number][] = [[tq, dv], [1, 1], [tq, dk], [tk, dk], [tk, dv]];
        ['out', 'lse', 'dq', 'dk', 'dv'].forEach((name, i) => {
          const what = `attention B=${B} H=${H} tq=${tq} tk=${tk} dk=${dk} dv=${dv} causal=${causal}: ${name}`;
          assert.equal(mismatch(got[i], want[i]), null, `${what} (gpu vs cpu)`);
          const ref = i === 1 ? Array.from(plain[i]) : swap(Array.from(plain[i]), B, outDims[i][0], H, outDims[i][1], false);
          assert.equal(mismatch(want[i], Float32Array.from(ref)), null, `${what} (cpu vs permuted)`);
        });
      }
      assert.equal(be.liveBuffers, 0, 'device buffers leaked');
    });
  });
}
