import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { crossEntropy, layerNorm, mean, rmsNorm, softmax, tensor, tidy } from '@lowrank/core';
import { announceModes, backendFor, modesUnderTest } from './modes.ts';

announceModes();

/** layerNorm (centered) or rmsNorm of one row in float64, eps 1e-5. */
function norm64(x: readonly number[], centered: boolean): number[] {
  const mu = centered ? x.reduce((s, v) => s + v, 0) / x.length : 0;
  const v = x.reduce((s, a) => s + (a - mu) ** 2, 0) / x.length;
  return x.map((a) => (a - mu) / Math.sqrt(v + 1e-5));
}

function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
}

for (const mode of modesUnderTest) {
  describe(`gpu numerics at the edges (${mode})`, () => {
    const be = (): string => backendFor(mode).name;

    test('softmax of equal huge logits is uniform (max-subtracted, then divided by the row sum)', () => {
      tidy(() => {
        const y = softmax(tensor([1e30, 1e30], { backend: be() })).dataSync();
        assert.deepEqual(Array.from(y), [0.5, 0.5]);
        const z = softmax(tensor([-3e38, 3e38, 3e38, 0], { backend: be() })).dataSync();
        assert.deepEqual(Array.from(z), [0, 0.5, 0.5, 0]);
      });
    });

    test('crossEntropy at |logit| 1e4 stays within 1e-6 relative of float64', () => {
      tidy(() => {
        const rows = [[1e4, 1e4 - 1, -1e4, 1e4 - 3], [-1e4, -1e4 + 2, -1e4 + 0.5, -1e4]];
        const targets = [1, 2];
        let want = 0;
        rows.forEach((r, i) => {
          const m = Math.max(...r);
          want += m - r[targets[i]] + Math.log(r.reduce((s, v) => s + Math.exp(v - m), 0));
        });
        want /= rows.length;
        const got = crossEntropy(tensor(rows, { backend: be() }), tensor(targets, { dtype: 'int32', backend: be() })).item();
        assert.ok(relErr(got, want) < 1e-6, `crossEntropy ${got} vs ${want} (rel ${relErr(got, want)})`);
      });
    });

    test('mean of 1e6 values of 0.1 is within 1e-5 relative (two-pass chunked sum)', () => {
      tidy(() => {
        const n = 1_000_000;
        const got = mean(tensor(new Float32Array(n).fill(0.1), { backend: be() })).item();
        const want = Math.fround(0.1);
        assert.ok(relErr(got, want) < 1e-5, `mean ${got} vs ${want} (rel ${relErr(got, want)})`);
      });
    });

    test('layerNorm and rmsNorm at |x| = 3e19 do not overflow to 0 (deviations scaled by their max)', () => {
      tidy(() => {
        const x = [3e19, -3e19, 1e19, -2e19];
        for (const centered of [true, false]) {
          const t = tensor([x], { backend: be() });
          const y = (centered ? layerNorm(t, null, null) : rmsNorm(t, null)).dataSync();
          const want = norm64(x.map(Math.fround), centered);
          want.forEach((w, i) => assert.ok(relErr(y[i], w) < 1e-5, `${centered ? 'layerNorm' : 'rmsNorm'}[${i}] ${y[i]} vs ${w}`));
        }
      });
    });
  });
}
